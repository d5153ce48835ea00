"""Optional integrations of wiser-async with other libraries.

- `wiser_async.integrations.fastapi` (``wiser-async[fastapi]``) and
  `wiser_async.integrations.aiohttp` (``wiser-async[aiohttp]``): a web
  backend's Wiser side. The application's ``authorize(request, account)``
  decides who may act for which customer's account, and is asked before
  anything is stored or read. One `WiserOAuth` and one client per process
  (a lifespan / ``cleanup_ctx``), a client per request and account, a login
  route per account and the OAuth callback, a bounded pending-login store
  (memory, file or Redis: keyed by ``state``, taken once, atomically; the
  PKCE verifier never leaves the server), a login cookie issued at every
  login and checked at the callback (login CSRF), and library errors as
  HTTP answers with a request id (401 "log in again", 503 with
  ``Retry-After``, 404, 502...), their details in the server log only.
  Models are returned as the API's JSON (camelCase, ``client.to_wire``).
- `wiser_async.integrations.opentelemetry` (``wiser-async[otel]``): spans and counters.
"""

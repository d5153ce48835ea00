"""Optional integrations of wiser-async with other libraries.

- `wiser_async.integrations.fastapi` (``wiser-async[fastapi]``) and
  `wiser_async.integrations.aiohttp` (``wiser-async[aiohttp]``): a web
  backend's Wiser side. One `WiserOAuth` and one client per process (a
  lifespan / ``cleanup_ctx``), ``client.for_account(account)`` per request,
  a login route per account and the OAuth callback, a pending-login store
  (memory, file or Redis: keyed by ``state``, with a TTL, taken once,
  atomically; the PKCE verifier never leaves the server), a browser-session
  cookie checked at the callback (login CSRF), and library errors as HTTP
  answers (401 "log in again", 503 with ``Retry-After``, 404, 502...).
  Models are returned as the API's JSON (camelCase, ``client.to_wire``).
- `wiser_async.integrations.opentelemetry` (``wiser-async[otel]``): spans and counters.
"""

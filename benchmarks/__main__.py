"""``python -m benchmarks``: see `benchmarks`."""

import sys

from ._cli import main

try:
    status = main()
except KeyboardInterrupt:
    # The sandbox processes were stopped on the way out; no JSON is written.
    print("interrupted: no results written", file=sys.stderr)
    status = 130
raise SystemExit(status)

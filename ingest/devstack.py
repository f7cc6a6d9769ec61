"""Running a whole local hookbus (Valkey, ingest, workers, API sandboxes) for ``hookbus dev`` and ``hookbus demo``.

Each part is its own process, started as ``python -m bus <command>`` exactly as the Procfile does. Children get
SIGTERM when this process dies (Linux ``PR_SET_PDEATHSIG``), and :meth:`DevStack.stop` terminates them in reverse
order, so nothing is left running after Ctrl-C or the end of the demo.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import click
import httpx

from bus.embedded import answers_ping


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


@dataclass
class DevStack:
    """Ports and environment of a local stack. ``redis_url`` None means: start the embedded Valkey."""

    ingest_port: int
    sandbox_port: int
    redis_url: str | None
    data_dir: Path
    key_prefix: str = "hookbus"
    valkey_port: int = 6399
    log_dir: Path | None = None
    #: Secrets, downstream base URLs and other settings every child gets (the scenarios' environment).
    extra_env: dict[str, str] = field(default_factory=dict)
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ingest_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def env(self) -> dict[str, str]:
        """The environment every child gets: the parent's plus the stack's addresses and secrets."""
        env = dict(os.environ)
        env.update(self.extra_env)
        env.update(
            REDIS_URL=self.redis_url or f"redis://127.0.0.1:{self.valkey_port}/0", HOOKBUS_KEY_PREFIX=self.key_prefix
        )
        return env

    def start(self, workers: Mapping[str, int | None]) -> None:
        """Start Valkey (if needed), the sandbox, ingest and one worker per name (value: its metrics port)."""
        if self.redis_url is None:
            if answers_ping("127.0.0.1", self.valkey_port):
                click.echo(f"using the Valkey already running on 127.0.0.1:{self.valkey_port}")
            else:
                valkey_dir = self.data_dir / "valkey"
                self._spawn(
                    "valkey", ["--port", str(self.valkey_port), "--data-dir", str(valkey_dir)], module="bus.embedded"
                )
                self._wait(lambda: answers_ping("127.0.0.1", self.valkey_port), "the bundled Valkey")
                click.echo(
                    f"REDIS_URL not set: started the bundled Valkey on 127.0.0.1:{self.valkey_port} "
                    f"(data in {valkey_dir}, append-only file on)"
                )
        self._spawn("sandbox", ["sandbox", "--port", str(self.sandbox_port)])
        self._spawn("ingest", ["ingest", "--port", str(self.ingest_port)])
        for name, metrics_port in workers.items():
            args = ["worker", name] + (["--metrics-port", str(metrics_port)] if metrics_port else [])
            self._spawn(f"worker-{name}", args)
        self._wait(lambda: self._http_ok(f"{self.sandbox_url}/healthz"), "the API sandboxes")
        self._wait(lambda: self._http_ok(f"{self.ingest_url}/readyz"), "ingest")

    def _spawn(self, name: str, args: list[str], *, module: str = "bus") -> None:
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed when the child exits
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=self.env(),
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            preexec_fn=_die_with_parent,
            # Its own session: Ctrl-C reaches only this process, which then stops the children in order.
            start_new_session=True,
        )
        if out is not None:
            out.close()
        self._procs.append((name, proc))

    @staticmethod
    def _http_ok(url: str) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url, timeout=1).status_code == 200
        return False

    def _wait(self, ready: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    raise click.ClickException(f"{name} exited with status {proc.returncode} during start-up")
            if ready():
                return
            time.sleep(0.1)
        raise click.ClickException(f"{what} did not become ready within {timeout_s:.0f} s")

    def check_alive(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                raise click.ClickException(f"{name} exited unexpectedly with status {proc.returncode}")

    def stop(self) -> None:
        """Terminate every child, the embedded Valkey last (SIGTERM, then SIGKILL after 10 s)."""
        for _, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self._procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()


@contextlib.contextmanager
def running(stack: DevStack, workers: Mapping[str, int | None]) -> Iterator[DevStack]:
    """Start the stack, stop it on exit. SIGTERM is handled like Ctrl-C (KeyboardInterrupt), so it stops too."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        stack.start(workers)
        yield stack
    finally:
        try:
            stack.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)

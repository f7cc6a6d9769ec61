"""What a demo scenario is: webhooks to post, the workers and settings it needs, and how to summarize the result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx


@dataclass(frozen=True)
class Webhook:
    """One delivery: ``path`` under ingest (``/webhooks/stripe``), the exact body bytes and the signed headers."""

    label: str
    path: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class Scenario(Protocol):
    """One integration shown by ``hookbus demo`` (payments, bookings, …).

    - ``title``: a heading for the printed summary; ``workers``: the consumers it needs running.
    - ``env(sandbox_url)``: environment for every child process: the secrets its sources verify with, and its
      consumers' downstream base URLs pointing at the sandbox (``{sandbox_url}/<stand-in>``).
    - ``webhooks(env)``: the deliveries to post, signed with the secrets from ``env``.
    - ``rules()``: this scenario's part of the rules file (TOML text, see :mod:`bus.rules`); the demo joins every
      scenario's part into one file and points ``HOOKBUS_CONFIG`` at it.
    - ``summarize(sandbox)``: what the downstream stand-ins hold, as JSON-able values keyed by short names
      (these keys join the demo's summary, so they must be unique across scenarios); ``lines(summary)`` prints them.
    """

    title: str
    workers: tuple[str, ...]

    def env(self, sandbox_url: str) -> dict[str, str]: ...

    def rules(self) -> str: ...

    def webhooks(self, env: Mapping[str, str]) -> list[Webhook]: ...

    def summarize(self, sandbox: httpx.Client) -> dict[str, Any]: ...

    def lines(self, summary: Mapping[str, Any]) -> list[str]: ...

"""Ingest settings, from the environment (see :mod:`bus.config` for ``*_FILE``).

Each source reads its own settings (secrets, tolerances, body limits) in its module; see ``ingest/sources/``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import field_validator
from pydantic_settings import NoDecode

from bus.config import BusSettings, HookbusSettings


class IngestSettings(BusSettings):
    """- ``INGEST_REDIS_TIMEOUT_S``: how long one Redis command may take before the webhook gets 503."""

    ingest_redis_timeout_s: float = 2.0


def split_secrets(value: object) -> object:
    """``"a, b"`` → ``("a", "b")``: several secrets may be active at once while one is rotated."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


Secrets = Annotated[tuple[str, ...], NoDecode]


class StripeSettings(HookbusSettings):
    """- ``STRIPE_WEBHOOK_SECRET``: one or more endpoint signing secrets (``whsec_…``), comma-separated; several
      are active at once while a secret is rolled. Or ``STRIPE_WEBHOOK_SECRET_FILE``.
    - ``STRIPE_TOLERANCE_S``: how old (seconds) a signature timestamp may be; Stripe's libraries use 300.
    - ``STRIPE_MAX_BODY_BYTES``: larger bodies get 413 before any of it is verified (Stripe events are < 1 MiB).
    """

    stripe_webhook_secret: Secrets = ()
    stripe_tolerance_s: int = 300
    stripe_max_body_bytes: int = 1024 * 1024

    _split = field_validator("stripe_webhook_secret", mode="before")(split_secrets)

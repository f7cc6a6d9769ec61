"""Secrets named by the rules file: a section says ``secret_env = "FORM_CONTACT_SECRET"``; the value lives in that
environment variable, or in the file named by ``FORM_CONTACT_SECRET_FILE`` (Docker/Kubernetes secrets), exactly as
:mod:`bus.config` reads the fixed settings. Several comma-separated values are several active secrets (rotation).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from bus.errors import ConfigError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def secrets_from_env(name: str, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The comma-separated values of ``name`` (or the content of ``name_FILE``); ``()`` when neither is set.

    A value set directly wins over a ``*_FILE`` one. Raises :class:`ConfigError` for an invalid variable name or an
    unreadable file.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(f"secret_env {name!r} is not an environment variable name")
    env = os.environ if environ is None else environ
    value = env.get(name)
    if not value and env.get(f"{name}_FILE"):
        path = env[f"{name}_FILE"]
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from exc
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())

"""The rules file: conditional behaviour users change without touching code.

Which staff member's calendar a booking goes to, which booking types notify, reorder points, form and generic-source
definitions, follow-up schedules: these live in one TOML file, ``hookbus.toml`` in the working directory or the path
in ``HOOKBUS_CONFIG``. Each part of hookbus reads its own section and validates it with a pydantic model, so a
mistake is reported at start-up with the section and field that is wrong. Secrets never go in this file: a section
names the environment variable that holds a secret (``secret_env = "FORM_CONTACT_SECRET"``).

A missing file is the same as an empty one: every section then has its documented defaults.
"""

from __future__ import annotations

import os
import tomllib
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ConfigError

M = TypeVar("M", bound=BaseModel)

DEFAULT_PATH = Path("hookbus.toml")


def rules_path() -> Path:
    return Path(os.environ.get("HOOKBUS_CONFIG") or DEFAULT_PATH)


@cache
def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        if os.environ.get("HOOKBUS_CONFIG"):
            raise ConfigError(f"HOOKBUS_CONFIG={str(path)!r} does not exist")
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (https://toml.io/en/v1.0.0#spec)
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 at byte {exc.start}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from exc


def section(name: str, model: type[M]) -> M:
    """The dotted section ``name`` (e.g. ``"calendar"`` or ``"sources.forms"``) validated as ``model``.

    Raises :class:`ConfigError` naming the file, section and field for invalid content.
    """
    data: Any = _load(rules_path().resolve())
    for part in name.split("."):
        data = data.get(part, {}) if isinstance(data, dict) else {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"[{name}] {'.'.join(str(p) for p in err['loc']) or '(section)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{rules_path()}: {problems}") from exc


def reload() -> None:
    """Forget the cached file (tests, or a process that wants to re-read it)."""
    _load.cache_clear()

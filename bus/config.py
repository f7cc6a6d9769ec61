"""Settings read from the environment (12-factor), with ``NAME_FILE`` for secrets.

Every process reads its settings once at start-up through pydantic-settings. Any field may instead be given as a
file path in ``<NAME>_FILE`` (Docker and Kubernetes secrets); the file's content, stripped of the trailing newline,
is the value. A value set directly wins over a ``*_FILE`` one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

EMBEDDED_REDIS_URL = "redis://127.0.0.1:6399/0"


class FileValueSource(PydanticBaseSettingsSource):
    """Reads ``<ENV_NAME>_FILE`` paths, so secrets never need to sit in the environment itself."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        prefix = self.config.get("env_prefix", "")
        names = [field.validation_alias] if isinstance(field.validation_alias, str) else [prefix + field_name]
        for name in names:
            path = os.environ.get(f"{name.upper()}_FILE")
            if path:
                try:
                    return Path(path).read_text(encoding="utf-8").rstrip("\r\n"), field_name, False
                except OSError as exc:
                    raise ConfigError(f"{name.upper()}_FILE={path!r} cannot be read: {exc.strerror}") from exc
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class HookbusSettings(BaseSettings):
    """Base class for every hookbus settings class: environment first, then ``*_FILE``, then defaults."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, FileValueSource(settings_cls))


class BusSettings(HookbusSettings):
    """Settings every process shares.

    - ``REDIS_URL``: the Redis/Valkey server; defaults to the address of the embedded Valkey that
      ``hookbus demo`` and ``hookbus dev`` start.
    - ``HOOKBUS_KEY_PREFIX``: prefix of every key hookbus writes (several deployments can share one server).
    - ``HOOKBUS_DEDUPE_TTL_S``: how long (seconds) a provider event id is remembered for duplicate detection.
      Stripe retries for up to 3 days, so the default of 7 days covers every retry.
    """

    redis_url: str = Field(default=EMBEDDED_REDIS_URL, pattern=r"^(redis|rediss|unix|valkey|valkeys)://")
    hookbus_key_prefix: str = Field(default="hookbus", min_length=1, pattern=r"^[^\s*?\[\]]+$")
    hookbus_dedupe_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    hookbus_log_level: str = "INFO"

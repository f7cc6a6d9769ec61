"""JSON logs: one line per action, with the event id, type, group, attempt and outcome as fields.

hookbus modules only call ``logging.getLogger("hookbus....")`` and pass facts in ``extra``; :func:`configure`
installs python-json-logger's orjson formatter on the root logger. Payloads and secrets are never passed to a logger.

A line per webhook and per handled event is on the hot path, so :func:`configure` also turns off what the JSON lines
never show: the caller's file and line (``findCaller`` walks the stack on every record) and the thread and process
names (the logging HOWTO's "Optimization" section).
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

from .errors import ConfigError


class DropColorMessage(logging.Filter):
    """uvicorn adds ``color_message`` (the message with ANSI colour codes) to its records; JSON logs want neither."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict writing JSON lines to stderr; applications may replace it."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.orjson.OrjsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "filters": {"drop_color": {"()": "bus.logs.DropColorMessage"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
                "filters": ["drop_color"],
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "uvicorn.access": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
        },
    }


def configure(level: str = "INFO") -> None:
    """Install the JSON log configuration. Raises :class:`bus.errors.ConfigError` for an unknown level."""
    if level.upper() not in LEVELS:
        raise ConfigError(f"HOOKBUS_LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}")
    logging._srcfile = None  # type: ignore[attr-defined]  # no findCaller(): file, line, function are not logged
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.config.dictConfig(log_config(level))

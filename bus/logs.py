"""JSON logs: one line per action, with the event id, type, group, attempt and outcome as fields.

hookbus modules only call ``logging.getLogger("hookbus....")`` and pass facts in ``extra``; :func:`configure`
installs python-json-logger's formatter on the root logger. Payloads and secrets are never passed to a logger.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict writing JSON lines to stderr; applications may replace it."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "uvicorn.access": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
        },
    }


def configure(level: str = "INFO") -> None:
    logging.config.dictConfig(log_config(level))

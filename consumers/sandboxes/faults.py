"""Fault injection shared by the HubSpot, supplier and e-mail stand-ins: ``POST /_sandbox/faults``.

Body: ``{"status": 429, "count": 2, "retry_after": "3", "path": "/crm/"}`` — the next ``count`` (default 1) API
requests whose path starts with ``path`` (default: any) are answered ``status`` in the API's own error format, with
``Retry-After`` when given. ``count: 0`` clears the fault.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["Fault", "Faults", "route_path"]


@dataclass
class Fault:
    status: int
    remaining: int
    retry_after: str | None
    path: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after} if self.retry_after is not None else {}


class Faults:
    """The pending fault of one stand-in."""

    def __init__(self) -> None:
        self.fault: Fault | None = None

    def reset(self) -> None:
        self.fault = None

    def take(self, path: str) -> Fault | None:
        """The fault to answer this request with (counting it), or None."""
        fault = self.fault
        if fault is None or not path.startswith(fault.path):
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            self.fault = None
        return fault

    async def endpoint(self, request: Request) -> Response:
        try:
            spec: Any = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "body must be JSON"}, 400)
        if not isinstance(spec, dict):
            return JSONResponse({"error": "body must be a JSON object"}, 400)
        status, count = spec.get("status"), spec.get("count", 1)
        retry_after, path = spec.get("retry_after"), spec.get("path", "/")
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            return JSONResponse({"error": "status must be an HTTP error status (400-599)"}, 400)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return JSONResponse({"error": "count must be a non-negative integer"}, 400)
        if not isinstance(path, str) or not path.startswith("/"):
            return JSONResponse({"error": "path must be a path prefix starting with '/'"}, 400)
        if retry_after is not None:
            retry_after = str(retry_after)
        self.fault = Fault(status, count, retry_after, path) if count else None
        return JSONResponse({"status": status, "count": count, "retry_after": retry_after, "path": path})


def route_path(request: Request) -> str:
    """The request path inside the stand-in (without the ``/<name>`` prefix it is mounted under)."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path

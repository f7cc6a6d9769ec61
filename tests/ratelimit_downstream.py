"""A downstream stand-in that records when each call arrived (``GET /calls`` → monotonic seconds)."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

calls: list[float] = []


async def record(request: Request) -> JSONResponse:
    calls.append(time.monotonic())
    return JSONResponse({"ok": True})


async def listing(request: Request) -> JSONResponse:
    return JSONResponse({"calls": calls})


app = Starlette(routes=[Route("/calls", record, methods=["POST"]), Route("/calls", listing, methods=["GET"])])

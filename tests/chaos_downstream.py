"""A downstream API stand-in for the chaos test, run as its own HTTP server process.

    python -m tests.chaos_downstream --port 8123 --rate-429 0.05

- ``POST /effects`` with JSON ``{"key": idempotency key, "event_id": …}``: answers 429 with ``Retry-After: 1`` at
  random (probability ``--rate-429``); otherwise records the effect under its key, like a real API honouring an
  ``Idempotency-Key``: a repeated key returns the first result (201 then 200) and creates no second effect, but is
  counted in ``replays``.
- ``POST /audit``: the same bookkeeping in a separate table for the audit group, never throttled.
- ``GET /effects``: ``{"effects": {key: event_id}, "audit": {key: event_id}, "requests": n, "replays": n,
  "audit_replays": n, "rejected_429": n, "conflicts": n}``. ``conflicts`` counts a key reused for another event id.
- ``GET /healthz``.

State lives in memory: one process, one event loop, so no locking is needed.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_app(*, rate_429: float = 0.0, seed: int | None = None) -> Starlette:
    rng = random.Random(seed)
    tables: dict[str, dict[str, str]] = {"effects": {}, "audit": {}}
    counts = {"requests": 0, "replays": 0, "audit_replays": 0, "rejected_429": 0, "conflicts": 0}

    def record(table: str, body: Any) -> Response:
        key, event_id = body["key"], body["event_id"]
        effects = tables[table]
        first = effects.get(key)
        if first is None:
            effects[key] = event_id
            return JSONResponse({"key": key, "event_id": event_id, "replayed": False}, status_code=201)
        counts["replays" if table == "effects" else "audit_replays"] += 1
        if first != event_id:
            counts["conflicts"] += 1
        return JSONResponse({"key": key, "event_id": first, "replayed": True}, status_code=200)

    async def post_effect(request: Request) -> Response:
        body = await request.json()
        counts["requests"] += 1
        if rate_429 and rng.random() < rate_429:
            counts["rejected_429"] += 1
            return JSONResponse({"error": "rate_limited"}, status_code=429, headers={"Retry-After": "1"})
        return record("effects", body)

    async def post_audit(request: Request) -> Response:
        return record("audit", await request.json())

    async def get_effects(request: Request) -> Response:
        return JSONResponse({**tables, **counts})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/effects", post_effect, methods=["POST"]),
            Route("/effects", get_effects, methods=["GET"]),
            Route("/audit", post_audit, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate-429", type=float, default=0.05, help="probability of a 429 answer to POST /effects")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    app = create_app(rate_429=args.rate_429, seed=args.seed)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

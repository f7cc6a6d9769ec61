"""The references hookbus is measured against, served exactly like ``hookbus ingest`` (uvicorn, uvloop, httptools,
no access log):

- ``bare``: (a) a Starlette endpoint that answers 200 without reading the body: the HTTP stack's limit.
- ``naive``: (b) what a user would write by hand: verify the Stripe signature (HMAC-SHA256, constant-time compare,
  300 s tolerance), parse the body with orjson, one awaited XADD of the raw body, answer 200 with the entry id.

    python -m bench.peers bare|naive --port 8001 [--workers 1]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import time

import orjson
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

STREAM = "bench:naive:stripe"
OK = b'{"status":"accepted"}'


def bare_app() -> Starlette:
    async def webhook(request: Request) -> Response:
        return Response(OK, media_type="application/json")

    return Starlette(routes=[Route("/webhooks/stripe", webhook, methods=["POST"])])


def naive_app() -> Starlette:
    key = os.environ["STRIPE_WEBHOOK_SECRET"].encode()
    redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])

    async def webhook(request: Request) -> Response:
        body = await request.body()
        t, _, v1 = request.headers.get("stripe-signature", "").partition(",v1=")
        t = t.removeprefix("t=")
        expected = hmac.new(key, t.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not t.isdigit() or not hmac.compare_digest(expected, v1) or time.time() - int(t) > 300:
            return Response(b'{"error":"bad_signature"}', status_code=401, media_type="application/json")
        event = orjson.loads(body)
        entry_id = await redis.xadd(STREAM, {"event": body})
        return Response(
            orjson.dumps({"status": "accepted", "event_id": event["id"], "entry_id": entry_id.decode()}),
            media_type="application/json",
        )

    return Starlette(routes=[Route("/webhooks/stripe", webhook, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("app", choices=["bare", "naive"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        f"bench.peers:{args.app}_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()

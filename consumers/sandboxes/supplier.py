"""Local stand-in for a supplier's purchase-order API (see :mod:`consumers.clients.supplier` for the contract).

- ``Authorization: Bearer <key>`` required (401 problem otherwise).
- ``POST /purchase-orders`` requires ``Idempotency-Key`` (400 without; at most 255 characters). A repeat of a key with
  the same body returns the first answer with ``Idempotent-Replayed: true`` and creates nothing; the same key with a
  different body is ``422`` (IETF draft-ietf-httpapi-idempotency-key-header, section 2.7).
- The body is validated: ``reference`` (1–64 characters), ``ship_to.location_id``, 1–100 ``lines`` each with a
  non-empty ``sku`` known to the catalog (when one is configured) and an integer ``quantity`` of 1–100000;
  problems are RFC 9457 ``application/problem+json`` with an ``errors`` list (400).
- ``GET /purchase-orders/{id}``; ``POST /_sandbox/faults`` (429 with ``Retry-After`` on demand);
  ``GET /_sandbox/objects`` lists ``purchase_orders``; ``POST /_sandbox/reset``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import Faults, route_path

DEFAULT_API_KEY = "sandbox-token"
PROBLEM = "application/problem+json"


def _problem(status: int, title: str, detail: str, *, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status, media_type=PROBLEM)


@dataclass
class _State:
    api_key: str
    catalog: frozenset[str] | None
    orders: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, tuple[bytes, int, bytes]] = field(default_factory=dict)  # key → (request, status, body)
    faults: Faults = field(default_factory=Faults)

    def reset(self) -> None:
        self.orders.clear()
        self.replies.clear()
        self.faults.reset()


def _validate(body: Any, catalog: frozenset[str] | None) -> list[dict[str, str]]:
    if not isinstance(body, dict):
        return [{"pointer": "", "detail": "the body must be a JSON object"}]
    errors = []
    reference = body.get("reference")
    if not isinstance(reference, str) or not 1 <= len(reference) <= 64:
        errors.append({"pointer": "/reference", "detail": "must be a string of 1 to 64 characters"})
    ship_to = body.get("ship_to")
    if not isinstance(ship_to, dict) or not isinstance(ship_to.get("location_id"), str) or not ship_to["location_id"]:
        errors.append({"pointer": "/ship_to/location_id", "detail": "is required"})
    lines = body.get("lines")
    if not isinstance(lines, list) or not 1 <= len(lines) <= 100:
        errors.append({"pointer": "/lines", "detail": "must list 1 to 100 order lines"})
        return errors
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            errors.append({"pointer": f"/lines/{index}", "detail": "must be an object"})
            continue
        sku, quantity = line.get("sku"), line.get("quantity")
        if not isinstance(sku, str) or not sku.strip():
            errors.append({"pointer": f"/lines/{index}/sku", "detail": "is required"})
        elif catalog is not None and sku not in catalog:
            errors.append({"pointer": f"/lines/{index}/sku", "detail": f"unknown SKU {sku!r}"})
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 100_000:
            errors.append({"pointer": f"/lines/{index}/quantity", "detail": "must be an integer from 1 to 100000"})
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 1000):
        errors.append({"pointer": "/note", "detail": "must be a string of at most 1000 characters"})
    return errors


def create_app(api_key: str = DEFAULT_API_KEY, *, catalog: Iterable[str] | None = None) -> Starlette:
    """A fresh supplier stand-in accepting ``Authorization: Bearer {api_key}``; ``catalog``: the supplier SKUs it
    sells (None: any)."""
    state = _State(api_key=api_key, catalog=frozenset(catalog) if catalog is not None else None)
    expected_auth = f"Bearer {api_key}".encode()

    async def create(request: Request) -> Response:
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected_auth):
            return _problem(401, "Unauthorized", "a valid bearer API key is required")
        fault = state.faults.take(route_path(request))
        if fault is not None:
            response = _problem(fault.status, "Injected fault", f"injected HTTP {fault.status}")
            response.headers.update(fault.headers)
            return response
        key = request.headers.get("idempotency-key")
        if not key:
            return _problem(400, "Idempotency-Key required", "POST /purchase-orders requires an Idempotency-Key")
        if len(key) > 255:
            return _problem(400, "Invalid Idempotency-Key", "Idempotency-Key must be at most 255 characters")
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return _problem(400, "Malformed JSON", "the body is not valid JSON")
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        # Nothing below awaits: check-then-create is atomic on the event loop.
        if key in state.replies:
            first_request, status, reply = state.replies[key]
            if first_request != canonical:
                return _problem(
                    422, "Idempotency-Key reused", "this Idempotency-Key was used with a different request body"
                )
            return Response(reply, status, media_type="application/json", headers={"Idempotent-Replayed": "true"})
        errors = _validate(body, state.catalog)
        if errors:
            return _problem(
                400, "Invalid purchase order", "; ".join(f"{e['pointer']} {e['detail']}" for e in errors), errors=errors
            )
        order = {
            "id": f"po_{len(state.orders) + 1:06d}",
            "status": "submitted",
            "reference": body["reference"],
            "account": body.get("account"),
            "ship_to": body["ship_to"],
            "lines": body["lines"],
            "note": body.get("note"),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        state.orders.append({**order, "idempotency_key": key})
        reply = json.dumps(order).encode()
        state.replies[key] = (canonical, 201, reply)
        return Response(
            reply, 201, media_type="application/json", headers={"Location": f"/purchase-orders/{order['id']}"}
        )

    async def show(request: Request) -> Response:
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected_auth):
            return _problem(401, "Unauthorized", "a valid bearer API key is required")
        for order in state.orders:
            if order["id"] == request.path_params["order_id"]:
                return JSONResponse({k: v for k, v in order.items() if k != "idempotency_key"})
        return _problem(404, "Not Found", "no such purchase order")

    async def objects(request: Request) -> Response:
        return JSONResponse({"purchase_orders": state.orders})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"status": "reset"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/purchase-orders", create, methods=["POST"]),
            Route("/purchase-orders/{order_id}", show, methods=["GET"]),
            Route("/_sandbox/faults", state.faults.endpoint, methods=["POST"]),
            Route("/_sandbox/objects", objects, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.sandbox = state
    return app

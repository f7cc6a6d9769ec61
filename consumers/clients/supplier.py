"""Async client for a supplier's purchase-order API (the ``inventory`` consumer's reorders).

There is no single standard supplier API; hookbus speaks a small, conventional REST shape that a supplier portal or a
thin adapter in front of an EDI/e-mail ordering system can offer::

    POST {SUPPLIER_BASE_URL}/purchase-orders
    Authorization: Bearer <SUPPLIER_API_KEY>
    Idempotency-Key: <uuid>                  # the same key for every retry of one reorder
    Content-Type: application/json

    {"reference": "hookbus-MUG-11OZ-main-2", "account": "ACME-4471",
     "ship_to": {"location_id": "main"},
     "lines": [{"sku": "AC-MUG-11", "quantity": 48}],
     "note": "Reorder: MUG-11OZ at main fell to 7 (reorder point 10)"}

    201 Created  {"id": "po_000001", "status": "submitted", "reference": …, "lines": […], "created_at": …}

``Idempotency-Key`` follows the IETF draft (https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/)
and Stripe's practice (https://docs.stripe.com/api/idempotent_requests): a repeat of the key with the same body gets
the first answer again (no second order); the same key with a different body is refused (422); a repeat while the
first is still being processed gets 409 (retried). Errors are RFC 9457 problem details
(``application/problem+json``: ``type``, ``title``, ``status``, ``detail``, ``errors``) and map as in
:mod:`consumers.clients.responses`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bus.errors import PermanentError
from bus.ratelimit import Limiter

from .base import BearerClient
from .responses import json_message, raise_for_status, transport_error

__all__ = ["OrderLine", "PurchaseOrder", "SupplierClient", "SubmittedOrder"]

API = "supplier"
_message = json_message("detail", "title")


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    quantity: int

    def __post_init__(self) -> None:
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity <= 0:
            raise ValueError("an order line's quantity must be a positive integer")


@dataclass(frozen=True, slots=True)
class PurchaseOrder:
    reference: str
    lines: Sequence[OrderLine]
    location_id: str
    account: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "reference": self.reference,
            "ship_to": {"location_id": self.location_id},
            "lines": [{"sku": line.sku, "quantity": line.quantity} for line in self.lines],
        }
        if self.account:
            body["account"] = self.account
        if self.note:
            body["note"] = self.note
        return body


@dataclass(frozen=True, slots=True)
class SubmittedOrder:
    id: str
    status: str
    replayed: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


class SupplierClient(BearerClient):
    """Purchase-order client. ``base_url``: ``SUPPLIER_BASE_URL``; ``api_key``: ``SUPPLIER_API_KEY`` (never
    logged); ``transport``: for tests; ``limiter``: the shared rate limiter (API name ``supplier``)."""

    api = API

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a supplier API key is required")
        super().__init__(base_url=base_url, token=api_key, timeout_s=timeout_s, transport=transport, limiter=limiter)

    async def create_purchase_order(self, order: PurchaseOrder, *, idempotency_key: str) -> SubmittedOrder:
        """Place ``order`` once: every retry must pass the same ``idempotency_key``."""
        if not idempotency_key:
            raise ValueError("idempotency_key is required: it is what makes a retried order safe")
        try:
            response = await self._http.post(
                "/purchase-orders", json=order.to_json(), headers={"Idempotency-Key": idempotency_key}
            )
        except httpx.TransportError as exc:
            raise transport_error(API, exc) from exc
        raise_for_status(response, API, _message)
        doc = response.json()
        if not isinstance(doc, dict) or not doc.get("id"):
            raise PermanentError(f"supplier_unexpected_response: {response.status_code} without an order id")
        return SubmittedOrder(
            id=str(doc["id"]),
            status=str(doc.get("status") or "submitted"),
            replayed=response.headers.get("Idempotent-Replayed", "").lower() == "true",
            raw=doc,
        )

"""The webhook every benchmark posts: a realistic signed Stripe ``payment_intent.succeeded`` of about 1 KB.

The body is ``ingest.sources.stripe_samples``'s, with the null fields left out (as with ``expand`` off, Stripe still
sends them; they only add bytes). Every posted event needs its own id, because ingest drops a repeat of an event id
as a duplicate: the id is ``evt_`` + 24 characters, a fixed-width slot in :data:`TEMPLATE` that the load generators
fill with a run nonce and a counter. Each delivery is signed with the current time, as Stripe does (ingest rejects
signatures older than ``STRIPE_TOLERANCE_S``, 300 s).
"""

from __future__ import annotations

import secrets
import string
import time

import orjson

from ingest.sources import stripe_samples
from ingest.sources.stripe import signature_header

from .common import SECRET

PATH = "/webhooks/stripe"
ID_SLOT = "@" * 24


def _template() -> bytes:
    body = orjson.loads(stripe_samples.payment_intent_succeeded(amount=1999, currency="usd", event_id="evt_" + ID_SLOT))
    obj = body["data"]["object"]
    for key in [k for k, v in obj.items() if v is None] + ["payment_method_options", "amount_details"]:
        obj.pop(key, None)
    return orjson.dumps(body)


#: The body with :data:`ID_SLOT` where the event id's 24 characters go.
TEMPLATE = _template()
PREFIX, SUFFIX = TEMPLATE.split(ID_SLOT.encode())
SIZE = len(TEMPLATE)


def nonce(length: int = 6) -> str:
    """A random run tag, so event ids of two runs never collide."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(length))


def event_id_token(tag: str, n: int) -> str:
    """The 24 characters after ``evt_`` for the ``n``-th event of the generator tagged ``tag``."""
    return f"{tag}{n:0{24 - len(tag)}d}"


def body(token: str) -> bytes:
    return PREFIX + token.encode() + SUFFIX


def headers(payload: bytes, *, now: float | None = None) -> dict[str, str]:
    return {
        "Stripe-Signature": signature_header(payload, SECRET, int(time.time() if now is None else now)),
        "Content-Type": "application/json; charset=utf-8",
    }

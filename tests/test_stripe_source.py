"""Unit tests of the Stripe source: signature verification (cases 001-003) and normalization (cases 001, 018, 020).

No Redis, no HTTP. Signature values in the case files were computed with stripe-python 16.1.0; where it makes sense
the verdict of stripe-python's own ``WebhookSignature.verify_header`` (with its clock frozen) is checked too.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import stripe
import stripe._webhook as stripe_webhook
from starlette.datastructures import Headers

from bus.envelope import Event, from_unix
from ingest.sources import stripe_samples
from ingest.sources.base import (
    Delivery,
    PayloadError,
    SignatureError,
    Source,
    header_value,
    hmac_sha256_hex,
    matches_any,
)
from ingest.sources.stripe import StripeSource, signature_header, timestamp_of

# --- case inputs, byte for byte --------------------------------------------------------------------------------------

SECRET_001 = "whsec_hookbusTestSecret000000000001"
BODY_001 = (
    b'{\n  "id": "evt_test_hb_0001",\n  "object": "event",\n  "type": "invoice.paid",\n  "data": {\n    "object": {\n'
    b'      "id": "in_test_hb_0001",\n      "customer_name": "Zo\xc3\xab Testperson",\n      "amount_paid": 4200,\n'
    b'      "currency": "usd"\n    }\n  }\n}\n'
)
T_001 = 1767225600
HEADER_001 = "t=1767225600,v1=d6b2527ab36bbc4255945e369b64f2a3dfb03cda0a48e6cca27fbb762d0f042b"
BODY_001_RESERIALIZED = (
    b'{"id": "evt_test_hb_0001", "object": "event", "type": "invoice.paid", "data": {"object": {"id": '
    b'"in_test_hb_0001", "customer_name": "Zo\\u00eb Testperson", "amount_paid": 4200, "currency": "usd"}}}'
)
BODY_001_CRLF = BODY_001.replace(b"\n", b"\r\n")

BODY_002 = b'{"id":"evt_test_hb_0002","object":"event","type":"customer.created"}'
OLD_002 = "whsec_hookbusOldSecret0000000000000001"
NEW_002 = "whsec_hookbusNewSecret0000000000000002"
V1_NEW_002 = "cf9d3eb79f14fb397706aaa3c1fee132c1e01f8294e54e5294e4c70b07245828"
V1_OLD_002 = "800c345aadb61d3d7ca8d892bd631402c0ce651ebbadda07f1beba0f3cfe7c07"
V0_002 = "979393788938af0f1cb664b41467a09f170dd27a8193b812bc8fa156987d7934"
HEADER_002 = f"t=1767225600,v1={V1_NEW_002},v1={V1_OLD_002},v0={V0_002}"
HEADER_002_SWAPPED = f"t=1767225600,v1={V1_OLD_002},v1={V1_NEW_002},v0={V0_002}"
HEADER_002_V0_ONLY = f"t=1767225600,v0={V1_OLD_002}"
NOW_002 = 1767225610


# --- helpers ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def frozen_stripe_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Freeze the clock stripe-python's verify_header reads (``time.time()`` in ``stripe._webhook``)."""
    clock = [0.0]
    monkeypatch.setattr(stripe_webhook, "time", types.SimpleNamespace(time=lambda: clock[0]))
    yield clock


def stripe_accepts(clock: list[float], body: bytes, header: str, secret: str, now: float, tolerance: int = 300) -> bool:
    """stripe-python's verdict on one request at receiver time ``now``."""
    clock[0] = now
    try:
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance)
    except stripe.SignatureVerificationError:
        return False
    return True


def hookbus_accepts(secrets: list[str], body: bytes, header: str | None, now: float, **kwargs: Any) -> bool:
    headers = {} if header is None else {"Stripe-Signature": header}
    try:
        StripeSource(secrets, **kwargs).verify(headers, body, now)
    except SignatureError:
        return False
    return True


def envelope(event_type: str, obj: dict[str, Any], *, event_id: str = "evt_hb_test", created: int = T_001) -> bytes:
    """A minimal Stripe event body around ``obj``."""
    return orjson.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": created,
            "livemode": False,
            "type": event_type,
            "data": {"object": obj},
        }
    )


def only_event(delivery: Delivery) -> Event:
    assert len(delivery.events) == 1
    return delivery.events[0]


SOURCE = StripeSource(["whsec_unit"])


# --- base helpers ----------------------------------------------------------------------------------------------------


def test_hmac_sha256_hex_rfc4231_vector() -> None:
    # RFC 4231 test case 2.
    assert (
        hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?")
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_matches_any() -> None:
    assert matches_any("abc", ["x", "abc"])
    assert matches_any("abc", ["abc", "abc"])
    assert not matches_any("abc", [])
    assert not matches_any("abc", ["ab", "abcd", "ABC", ""])
    # Non-ASCII from a hostile header is a mismatch, not a TypeError from hmac.compare_digest.
    assert not matches_any("abc", ["ébc", "\udcff"])


def test_header_value_is_case_insensitive() -> None:
    assert header_value({"stripe-signature": "x"}, "Stripe-Signature") == "x"
    assert header_value({"STRIPE-SIGNATURE": "x"}, "Stripe-Signature") == "x"
    assert header_value({"Other": "y"}, "Stripe-Signature") is None
    assert header_value(Headers(raw=[(b"stripe-signature", b"x")]), "Stripe-Signature") == "x"


def test_stripe_source_satisfies_protocol() -> None:
    source = StripeSource([SECRET_001])
    assert isinstance(source, Source)
    assert source.name == "stripe"
    assert source.max_body_bytes == 1_048_576
    assert source.tolerance_s == 300


@pytest.mark.parametrize(
    ("secrets", "kwargs"),
    [([], {}), ([""], {}), (["  "], {}), ([SECRET_001, ""], {}), ([SECRET_001], {"tolerance_s": 0})],
)
def test_constructor_rejects_bad_configuration(secrets: list[str], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        StripeSource(secrets, **kwargs)


def test_constructor_rejects_a_bare_string() -> None:
    with pytest.raises(ValueError):
        StripeSource(SECRET_001)


def test_repr_hides_secrets() -> None:
    assert SECRET_001 not in repr(StripeSource([SECRET_001]))


# --- case 001: raw bytes ---------------------------------------------------------------------------------------------


def test_case_001_body_is_byte_exact() -> None:
    assert len(BODY_001) == 241
    assert hashlib.sha256(BODY_001).hexdigest() == "5412b340633c1a5ca55b52403d3240458b6186381ef39d415fde6afbe4bf35d6"
    assert json.dumps(json.loads(BODY_001)).encode() == BODY_001_RESERIALIZED


def test_case_001_raw_body_accepted(frozen_stripe_clock: list[float]) -> None:
    assert hookbus_accepts([SECRET_001], BODY_001, HEADER_001, 1767225660)
    assert stripe_accepts(frozen_stripe_clock, BODY_001, HEADER_001, SECRET_001, 1767225660)


def test_case_001_header_matches_stripe_python_and_ours() -> None:
    assert signature_header(BODY_001, SECRET_001, T_001) == HEADER_001
    assert stripe.WebhookSignature.generate_signature_header(BODY_001.decode(), SECRET_001, T_001) == HEADER_001


@pytest.mark.parametrize("body", [BODY_001_RESERIALIZED, BODY_001_CRLF], ids=["reserialized", "crlf"])
def test_case_001_changed_bytes_rejected(frozen_stripe_clock: list[float], body: bytes) -> None:
    with pytest.raises(SignatureError, match="no Stripe signature matches"):
        StripeSource([SECRET_001]).verify({"Stripe-Signature": HEADER_001}, body, 1767225660)
    assert not stripe_accepts(frozen_stripe_clock, body, HEADER_001, SECRET_001, 1767225660)


def test_case_001_reserialized_body_has_the_documented_signature() -> None:
    expected = "ee6e287d66d1490b68fe1bc98ec04776a2027c040e1e779c02fdcf1851890ff7"
    assert signature_header(BODY_001_RESERIALIZED, SECRET_001, T_001) == f"t={T_001},v1={expected}"


def test_case_001_parse_keeps_non_ascii_name() -> None:
    delivery = StripeSource([SECRET_001]).parse(BODY_001, received_at=1767225660)
    assert delivery.event_id == "evt_test_hb_0001"
    assert delivery.provider_type == "invoice.paid"
    event = only_event(delivery)
    assert event.id == "evt_test_hb_0001"
    assert event.source == "stripe"
    assert event.type == "payment.succeeded"
    # No PaymentIntent in this minimal invoice: the subject falls back to the invoice id.
    assert event.subject == "in_test_hb_0001"
    assert event.data["customer"] == {"name": "Zo\u00eb Testperson"}
    assert event.data["amount"] == 4200
    assert event.data["currency"] == "USD"
    assert event.data["invoice_id"] == "in_test_hb_0001"
    assert event.data["stripe_object"] == "invoice"
    assert event.data["livemode"] is False
    # The body has no `created` anywhere: the receipt time is used.
    assert event.time == "2026-01-01T00:01:00.000Z"
    assert "Zo\u00eb Testperson".encode() in event.to_json()
    assert Event.from_json(event.to_json()) == event


def test_case_001_parse_without_created_defaults_to_now() -> None:
    event = only_event(SOURCE.parse(BODY_001))
    assert event.time.endswith("Z")


# --- case 002: several v1, v0 ignored --------------------------------------------------------------------------------


def test_case_002_documented_signatures() -> None:
    assert signature_header(BODY_002, OLD_002, T_001) == f"t={T_001},v1={V1_OLD_002}"
    assert signature_header(BODY_002, NEW_002, T_001) == f"t={T_001},v1={V1_NEW_002}"
    naive = dict(kv.split("=", 1) for kv in HEADER_002.split(","))
    assert naive["v1"] == V1_OLD_002


@pytest.mark.parametrize("header", [HEADER_002, HEADER_002_SWAPPED], ids=["new-first", "old-first"])
@pytest.mark.parametrize(
    "secrets", [[OLD_002], [NEW_002], [NEW_002, OLD_002], [OLD_002, NEW_002]], ids=["old", "new", "new+old", "old+new"]
)
def test_case_002_rotation_accepted(frozen_stripe_clock: list[float], secrets: list[str], header: str) -> None:
    assert hookbus_accepts(secrets, BODY_002, header, NOW_002)
    if len(secrets) == 1:
        assert stripe_accepts(frozen_stripe_clock, BODY_002, header, secrets[0], NOW_002)


@pytest.mark.parametrize("secrets", [[OLD_002], [NEW_002], [NEW_002, OLD_002]], ids=["old", "new", "new+old"])
def test_case_002_v0_only_rejected(frozen_stripe_clock: list[float], secrets: list[str]) -> None:
    with pytest.raises(SignatureError, match="no v1"):
        StripeSource(secrets).verify({"Stripe-Signature": HEADER_002_V0_ONLY}, BODY_002, NOW_002)
    for secret in secrets:
        assert not stripe_accepts(frozen_stripe_clock, BODY_002, HEADER_002_V0_ONLY, secret, NOW_002)


def test_case_002_only_unrelated_v1_rejected() -> None:
    assert not hookbus_accepts([OLD_002], BODY_002, f"t={T_001},v1={V1_NEW_002},v0={V0_002}", NOW_002)
    assert not hookbus_accepts(["whsec_unrelated"], BODY_002, HEADER_002, NOW_002)


def test_case_002_customer_created_has_no_events() -> None:
    delivery = SOURCE.parse(BODY_002)
    assert delivery == Delivery(event_id="evt_test_hb_0002", provider_type="customer.created", events=())


# --- case 003: tolerance ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "accepted"),
    [(1767225900, True), (1767225901, False), (1767225200, True), (1767225660, True), (1767225900.5, False)],
    ids=["exactly-300s", "301s", "400s-in-future", "60s", "300.5s"],
)
def test_case_003_tolerance(frozen_stripe_clock: list[float], now: float, accepted: bool) -> None:
    assert hookbus_accepts([SECRET_001], BODY_001, HEADER_001, now) is accepted
    assert stripe_accepts(frozen_stripe_clock, BODY_001, HEADER_001, SECRET_001, now) is accepted


def test_case_003_stale_message() -> None:
    with pytest.raises(SignatureError, match="older than 300 s"):
        StripeSource([SECRET_001]).verify({"Stripe-Signature": HEADER_001}, BODY_001, 1767225901)


def test_case_003_same_request_twice_verifies_twice() -> None:
    # verify is stateless: replays inside the window are the dedupe's job (case 015), not the verifier's.
    source = StripeSource([SECRET_001])
    source.verify({"Stripe-Signature": HEADER_001}, BODY_001, 1767225660)
    source.verify({"Stripe-Signature": HEADER_001}, BODY_001, 1767225660)


def test_case_003_future_timestamp_skew_is_measurable() -> None:
    assert timestamp_of(HEADER_001) == T_001
    assert timestamp_of(HEADER_001) - 1767225200 == 400


def test_tolerance_is_configurable_in_seconds() -> None:
    assert hookbus_accepts([SECRET_001], BODY_001, HEADER_001, T_001 + 60, tolerance_s=60)
    assert not hookbus_accepts([SECRET_001], BODY_001, HEADER_001, T_001 + 61, tolerance_s=60)


# --- signatures from the official library, rejections ----------------------------------------------------------------


@pytest.mark.parametrize("body", [BODY_001, BODY_002, '{"name":"Zoë ✓"}'.encode(), b""])
def test_stripe_python_signatures_accepted(body: bytes) -> None:
    secret = "whsec_" + "k" * 32
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, 1767225000)
    assert header == signature_header(body, secret, 1767225000)
    assert hookbus_accepts([secret], body, header, 1767225000)


def test_header_lookup_accepts_starlette_headers_and_lower_case() -> None:
    source = StripeSource([SECRET_001])
    source.verify({"stripe-signature": HEADER_001}, BODY_001, 1767225660)
    source.verify(Headers(raw=[(b"stripe-signature", HEADER_001.encode())]), BODY_001, 1767225660)


def test_wrong_secret_rejected_without_leaking(frozen_stripe_clock: list[float]) -> None:
    expected = signature_header(BODY_001, "whsec_wrong", T_001).split("v1=")[1]
    with pytest.raises(SignatureError) as info:
        StripeSource(["whsec_wrong"]).verify({"Stripe-Signature": HEADER_001}, BODY_001, 1767225660)
    assert "whsec_wrong" not in str(info.value)
    assert expected not in str(info.value)
    assert not stripe_accepts(frozen_stripe_clock, BODY_001, HEADER_001, "whsec_wrong", 1767225660)


def test_tampered_body_rejected(frozen_stripe_clock: list[float]) -> None:
    tampered = BODY_001.replace(b"4200", b"4201")
    assert not hookbus_accepts([SECRET_001], tampered, HEADER_001, 1767225660)
    assert not stripe_accepts(frozen_stripe_clock, tampered, HEADER_001, SECRET_001, 1767225660)


def test_signature_for_other_timestamp_rejected() -> None:
    # The v1 of t=1767225600 presented with another t: the timestamp is part of the signed payload.
    header = HEADER_001.replace("t=1767225600", "t=1767225650")
    assert not hookbus_accepts([SECRET_001], BODY_001, header, 1767225660)


def test_missing_header_rejected() -> None:
    with pytest.raises(SignatureError, match="missing"):
        StripeSource([SECRET_001]).verify({}, BODY_001, 1767225660)
    with pytest.raises(SignatureError, match="missing"):
        StripeSource([SECRET_001]).verify({"Content-Type": "application/json"}, BODY_001, 1767225660)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "t=abc,v1=zz",
        "garbage",
        ",,,",
        "v1=" + "0" * 64,
        "t=,v1=" + "0" * 64,
        "t=-1767225600,v1=" + "0" * 64,
        "t=1767225600.5,v1=" + "0" * 64,
        "t=1767225600",
        "t=1767225600,v1=",
        "t=1767225600,v1=zz",
        "t=1767225600,v1=\u00e9\u00e9",
        "t=1767225600,t=1767225601," + HEADER_001.split(",")[1],
        "t=\u0661\u0662,v1=zz",
    ],
)
def test_garbage_headers_raise_signature_error(frozen_stripe_clock: list[float], header: str) -> None:
    with pytest.raises(SignatureError):
        StripeSource([SECRET_001]).verify({"Stripe-Signature": header}, BODY_001, 1767225660)
    # stripe-python takes the first of two t= items (hookbus refuses the ambiguity) and raises TypeError, not
    # SignatureVerificationError, on a non-ASCII v1 (hmac.compare_digest on str): compare verdicts elsewhere only.
    if "t=1767225601" not in header and header.isascii():
        assert not stripe_accepts(frozen_stripe_clock, BODY_001, header, SECRET_001, 1767225660)


def test_whitespace_around_items_is_tolerated() -> None:
    header = HEADER_001.replace(",", ", ")
    assert hookbus_accepts([SECRET_001], BODY_001, header, 1767225660)


def test_timestamp_of_rejects_garbage() -> None:
    with pytest.raises(SignatureError):
        timestamp_of("t=abc,v1=zz")


# --- parse: amounts, currencies, subjects ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "obj", "amount", "currency"),
    [
        ("invoice.paid", {"id": "in_hb_jpy", "amount_paid": 8000, "currency": "jpy"}, 8000, "JPY"),
        ("invoice.paid", {"id": "in_hb_krw", "amount_paid": 55000, "currency": "krw"}, 55000, "KRW"),
        ("invoice.paid", {"id": "in_hb_usd", "amount_paid": 4200, "currency": "usd"}, 4200, "USD"),
        ("charge.succeeded", {"id": "ch_hb_clp", "amount": 15990, "currency": "clp"}, 15990, "CLP"),
    ],
)
def test_case_018_amounts_are_exact_minor_units(
    event_type: str, obj: dict[str, Any], amount: int, currency: str
) -> None:
    event = only_event(SOURCE.parse(envelope(event_type, obj)))
    assert event.type == "payment.succeeded"
    assert type(event.data["amount"]) is int
    assert event.data["amount"] == amount
    assert event.data["currency"] == currency
    assert event.subject == obj["id"]  # no PaymentIntent in these objects
    assert event.data["payment_id"] == obj["id"]
    assert event.time == "2026-01-01T00:00:00.000Z"


def test_one_payment_three_events_same_subject() -> None:
    pi, ch, inv = "pi_hb_same", "ch_hb_same", "in_hb_same"
    bodies = {
        "payment_intent.succeeded": envelope(
            "payment_intent.succeeded",
            {
                "id": pi,
                "object": "payment_intent",
                "amount": 4200,
                "amount_received": 4200,
                "currency": "eur",
                "customer": "cus_hb",
                "receipt_email": "zoe@example.com",
                "latest_charge": ch,
                "invoice": inv,
            },
        ),
        "charge.succeeded": envelope(
            "charge.succeeded",
            {
                "id": ch,
                "object": "charge",
                "amount": 4200,
                "amount_captured": 4200,
                "currency": "eur",
                "payment_intent": pi,
                "customer": "cus_hb",
                "billing_details": {"name": "Zoë Testperson", "email": "zoe@example.com"},
                "invoice": inv,
            },
        ),
        "invoice.paid": envelope(
            "invoice.paid",
            {
                "id": inv,
                "object": "invoice",
                "amount_paid": 4200,
                "currency": "eur",
                "payment_intent": pi,
                "charge": ch,
                "customer": "cus_hb",
                "customer_name": "Zoë Testperson",
                "customer_email": "zoe@example.com",
            },
        ),
        # API 2025-03-31+: the invoice has no payment_intent field; it sits under payments.
        "invoice.paid (new API)": envelope(
            "invoice.paid",
            {
                "id": inv,
                "object": "invoice",
                "amount_paid": 4200,
                "currency": "eur",
                "payments": {
                    "object": "list",
                    "data": [{"id": "inpay_hb", "payment": {"type": "payment_intent", "payment_intent": pi}}],
                },
            },
        ),
    }
    events = {name: only_event(SOURCE.parse(body)) for name, body in bodies.items()}
    assert {event.subject for event in events.values()} == {pi}
    assert {event.data["payment_id"] for event in events.values()} == {pi}
    assert {event.type for event in events.values()} == {"payment.succeeded"}
    assert {event.data["amount"] for event in events.values()} == {4200}
    assert {event.data["currency"] for event in events.values()} == {"EUR"}
    assert events["payment_intent.succeeded"].data["customer"] == {"id": "cus_hb", "email": "zoe@example.com"}
    assert events["charge.succeeded"].data["customer"] == {
        "id": "cus_hb",
        "name": "Zoë Testperson",
        "email": "zoe@example.com",
    }
    assert events["invoice.paid"].data["customer"] == events["charge.succeeded"].data["customer"]
    assert events["payment_intent.succeeded"].data["charge_id"] == ch
    assert events["invoice.paid"].data["charge_id"] == ch
    assert events["charge.succeeded"].data["invoice_id"] == inv
    assert [events[name].data["stripe_object"] for name in bodies] == ["payment_intent", "charge", "invoice", "invoice"]


def test_amount_sources() -> None:
    partial_capture = {"id": "ch_hb", "amount": 5000, "amount_captured": 3000, "currency": "usd"}
    assert only_event(SOURCE.parse(envelope("charge.succeeded", partial_capture))).data["amount"] == 3000
    uncaptured = {"id": "ch_hb", "amount": 5000, "amount_captured": 0, "currency": "usd"}
    assert only_event(SOURCE.parse(envelope("charge.succeeded", uncaptured))).data["amount"] == 5000
    pi = {"id": "pi_hb", "amount": 5000, "amount_received": 4000, "currency": "usd"}
    assert only_event(SOURCE.parse(envelope("payment_intent.succeeded", pi))).data["amount"] == 4000
    pi_no_received = {"id": "pi_hb", "amount": 5000, "currency": "usd"}
    assert only_event(SOURCE.parse(envelope("payment_intent.succeeded", pi_no_received))).data["amount"] == 5000


def test_expanded_customer_and_payment_intent() -> None:
    obj = {
        "id": "in_hb",
        "amount_paid": 100,
        "currency": "usd",
        "payment_intent": {"id": "pi_hb_expanded", "object": "payment_intent"},
        "customer": {"id": "cus_hb", "object": "customer", "name": "Ana", "email": "ana@example.com"},
    }
    event = only_event(SOURCE.parse(envelope("invoice.paid", obj)))
    assert event.subject == "pi_hb_expanded"
    assert event.data["customer"] == {"id": "cus_hb", "name": "Ana", "email": "ana@example.com"}


def test_time_and_livemode() -> None:
    body = orjson.dumps(
        {
            "id": "evt_hb",
            "type": "charge.succeeded",
            "livemode": True,
            "data": {"object": {"id": "ch_hb", "amount": 1, "currency": "usd", "created": 1767225700}},
        }
    )
    event = only_event(SOURCE.parse(body))
    assert event.time == "2026-01-01T00:01:40.000Z"  # the object's created when the event has none
    assert event.data["livemode"] is True


# --- case 020: cumulative refunds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_id", "created", "amount_refunded", "refunded"),
    [("evt_R1", 1767225700, 1000, False), ("evt_R2", 1767225800, 1500, False), ("evt_R3", 1767225900, 5000, True)],
)
def test_case_020_refund_keeps_cumulative_amount(
    event_id: str, created: int, amount_refunded: int, refunded: bool
) -> None:
    obj = {
        "id": "ch_hb_0001",
        "object": "charge",
        "amount": 5000,
        "amount_refunded": amount_refunded,
        "refunded": refunded,
        "currency": "usd",
        "payment_intent": "pi_hb_0001",
        "customer": "cus_hb",
    }
    delivery = SOURCE.parse(envelope("charge.refunded", obj, event_id=event_id, created=created))
    assert delivery.event_id == event_id
    event = only_event(delivery)
    assert event.type == "payment.refunded"
    assert event.subject == "ch_hb_0001"
    assert event.data == {
        "payment_id": "pi_hb_0001",
        "charge_id": "ch_hb_0001",
        "amount": 5000,
        "amount_refunded": amount_refunded,
        "refunded": refunded,
        "currency": "USD",
        "customer": {"id": "cus_hb"},
        "livemode": False,
    }
    assert event.time == from_unix(created)


def test_refund_without_payment_intent_uses_charge_id() -> None:
    obj = {"id": "ch_hb", "amount": 5000, "amount_refunded": 5000, "currency": "usd"}
    event = only_event(SOURCE.parse(envelope("charge.refunded", obj)))
    assert event.data["payment_id"] == "ch_hb"
    assert event.data["refunded"] is True  # derived when Stripe's flag is absent


# --- unknown types, malformed bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_type",
    ["customer.created", "invoice.created", "payment_intent.payment_failed", "charge.refund.updated", "x.y"],
)
def test_unknown_types_have_no_events(event_type: str) -> None:
    delivery = SOURCE.parse(envelope(event_type, {"id": "obj_hb", "amount": "not validated"}))
    assert delivery == Delivery(event_id="evt_hb_test", provider_type=event_type, events=())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'"evt"', "not a JSON object"),
        (b'{"id":"evt_hb","data":{"object":{}}}', "'type'"),
        (b'{"type":"invoice.paid","data":{"object":{}}}', "'id'"),
        (b'{"id":"","type":"invoice.paid"}', "'id'"),
        (b'{"id":"evt_hb","type":7}', "'type'"),
        (b'{"id":"evt_hb","type":"invoice.paid"}', "data.object"),
        (b'{"id":"evt_hb","type":"invoice.paid","data":{"object":[]}}', "data.object"),
    ],
)
def test_malformed_envelopes(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(message)):
        SOURCE.parse(body)


@pytest.mark.parametrize(
    ("event_type", "obj", "message"),
    [
        ("invoice.paid", {"id": "in_hb", "amount_paid": 42.0, "currency": "usd"}, "amount_paid"),
        ("invoice.paid", {"id": "in_hb", "amount_paid": "4200", "currency": "usd"}, "amount_paid"),
        ("invoice.paid", {"id": "in_hb", "amount_paid": True, "currency": "usd"}, "amount_paid"),
        ("invoice.paid", {"id": "in_hb", "amount_paid": -1, "currency": "usd"}, "negative"),
        ("invoice.paid", {"id": "in_hb", "currency": "usd"}, "amount_paid"),
        ("charge.succeeded", {"id": "ch_hb", "amount": 10.5, "currency": "usd"}, "amount"),
        ("payment_intent.succeeded", {"id": "pi_hb", "amount_received": 1.0, "currency": "usd"}, "amount_received"),
        ("charge.refunded", {"id": "ch_hb", "amount": 1, "amount_refunded": 0.5, "currency": "usd"}, "amount_refunded"),
        ("invoice.paid", {"id": "in_hb", "amount_paid": 1, "currency": "us"}, "currency"),
        ("invoice.paid", {"id": "in_hb", "amount_paid": 1, "currency": 840}, "currency"),
        ("invoice.paid", {"id": "in_hb", "amount_paid": 1}, "currency"),
        ("invoice.paid", {"id": "in_hb", "amount_paid": 1, "currency": "usdx"}, "currency"),
        ("invoice.paid", {"amount_paid": 1, "currency": "usd"}, "'id'"),
        ("invoice.paid", {"id": "in_hb", "amount_paid": 1, "currency": "usd", "customer_name": 5}, "name"),
        (
            "charge.refunded",
            {"id": "ch_hb", "amount": 1, "amount_refunded": 1, "currency": "usd", "refunded": "yes"},
            "refunded",
        ),
    ],
)
def test_malformed_objects(event_type: str, obj: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(message)):
        SOURCE.parse(envelope(event_type, obj))


def test_non_boolean_livemode_rejected() -> None:
    body = b'{"id":"evt_hb","type":"invoice.paid","livemode":"no","data":{"object":'
    body += b'{"id":"in_hb","amount_paid":1,"currency":"usd"}}}'
    with pytest.raises(PayloadError, match="livemode"):
        SOURCE.parse(body)


def test_float_created_rejected() -> None:
    body = b'{"id":"evt_hb","type":"invoice.paid","created":1767225600.5,"data":{"object":'
    body += b'{"id":"in_hb","amount_paid":1,"currency":"usd"}}}'
    with pytest.raises(PayloadError, match="created"):
        SOURCE.parse(body)


# --- samples ---------------------------------------------------------------------------------------------------------

SAMPLE_KWARGS: dict[str, dict[str, Any]] = {
    "payment_intent.succeeded": {"amount": 8000, "currency": "jpy"},
    "charge.succeeded": {"amount": 4200, "currency": "usd"},
    "invoice.paid": {"amount": 55000, "currency": "krw"},
    "charge.refunded": {"amount": 5000, "amount_refunded": 1500, "currency": "usd"},
    "customer.created": {},
}


def test_samples_cover_supported_types() -> None:
    assert set(stripe_samples.SUPPORTED_TYPES) == set(SAMPLE_KWARGS)


@pytest.mark.parametrize("event_type", sorted(SAMPLE_KWARGS))
def test_samples_round_trip_verify_and_parse(frozen_stripe_clock: list[float], event_type: str) -> None:
    secret = "whsec_sampleSecret"
    body = stripe_samples.sample(event_type, created=T_001, **SAMPLE_KWARGS[event_type])
    header = signature_header(body, secret, T_001)
    StripeSource(["whsec_old", secret]).verify({"Stripe-Signature": header}, body, T_001 + 5)
    assert stripe_accepts(frozen_stripe_clock, body, header, secret, T_001 + 5)

    doc = orjson.loads(body)
    assert orjson.dumps(doc) == body  # compact orjson
    assert re.fullmatch(r"evt_[A-Za-z0-9]{24}", doc["id"])
    assert doc["object"] == "event"
    assert doc["api_version"] == "2024-06-20"
    assert doc["livemode"] is False
    assert doc["type"] == event_type
    assert doc["created"] == T_001

    delivery = SOURCE.parse(body)
    assert delivery.event_id == doc["id"]
    assert delivery.provider_type == event_type
    if event_type == "customer.created":
        assert delivery.events == ()
        assert doc["data"]["object"]["name"] == "Zoë Testperson"
        return
    event = only_event(delivery)
    kwargs = SAMPLE_KWARGS[event_type]
    assert event.time == "2026-01-01T00:00:00.000Z"
    assert event.data["amount"] == kwargs["amount"]
    assert event.data["currency"] == kwargs["currency"].upper()
    assert re.fullmatch(r"pi_[A-Za-z0-9]{24}", event.data["payment_id"])
    if event_type == "charge.refunded":
        assert event.data["amount_refunded"] == 1500
        assert event.data["refunded"] is False
        assert re.fullmatch(r"ch_[A-Za-z0-9]{24}", event.subject or "")
    else:
        assert event.subject == event.data["payment_id"]
    if event_type != "payment_intent.succeeded":
        assert event.data["customer"]["name"] == "Zoë Testperson"
        assert "Zoë Testperson".encode() in body


def test_samples_share_ids_for_one_payment() -> None:
    ids = {"payment_intent_id": "pi_hb_sample", "event_id": None}
    bodies = [
        stripe_samples.payment_intent_succeeded(amount=4200, currency="usd", charge_id="ch_hb_sample", **ids),
        stripe_samples.charge_succeeded(amount=4200, currency="usd", charge_id="ch_hb_sample", **ids),
        stripe_samples.invoice_paid(amount=4200, currency="usd", charge_id="ch_hb_sample", **ids),
    ]
    events = [only_event(SOURCE.parse(body)) for body in bodies]
    assert {event.subject for event in events} == {"pi_hb_sample"}
    assert {event.data["charge_id"] for event in events} == {"ch_hb_sample"}
    assert len({event.id for event in events}) == 3


def test_sample_given_ids_are_kept() -> None:
    body = stripe_samples.charge_refunded(
        charge_id="ch_hb_0001",
        payment_intent_id="pi_hb_0001",
        amount=5000,
        amount_refunded=5000,
        currency="usd",
        event_id="evt_R3",
        created=1767225900,
    )
    event = only_event(SOURCE.parse(body))
    assert (event.id, event.subject, event.data["payment_id"]) == ("evt_R3", "ch_hb_0001", "pi_hb_0001")
    assert event.data["refunded"] is True


def test_sample_unknown_type() -> None:
    with pytest.raises(ValueError, match="invoice.paid"):
        stripe_samples.sample("charge.dispute.created")

"""Web form source: cases 039 (form-encoded vs JSON, repeated keys, honeypot), 036 (size limit before auth) and
040 (e-mail normalization), HMAC and Standard Webhooks authentication, over HTTP on a real Valkey."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import standardwebhooks
from prometheus_client import REGISTRY

from bus import rules
from bus.errors import ConfigError
from ingest.sources import forms
from ingest.sources.base import PayloadError
from ingest.sources.forms import FormConfig, FormSource, hmac_signature, normalize_email, normalize_phone

from .leads_support import ingest_with
from .support import ingest_client

pytestmark = pytest.mark.anyio

SECRET = "form-contact-secret-0001"
SW_SECRET = "whsec_aG9va2J1cy1zdGFuZGFyZC13ZWJob29rcy1rZXkhISE="
STREAM = "hookbus:stream:lead.created"
ROUTE = "/webhooks/forms/contact"
NOW = 1767225600

# Case 039, byte for byte.
BODY_A = b"services=cleaning&services=windows&name=Pat+Example&email=PAT%40Example.com&phone=%2B15555550100&website="
BODY_B = (
    b'{"services":["cleaning","windows"],"name":"Pat Example","email":"PAT@Example.com","phone":"+15555550100",'
    b'"website":""}'
)
BODY_D = BODY_A.replace(b"website=", b"website=http%3A%2F%2Fspam.example")
BODY_E = BODY_A.replace(b"services=cleaning&services=windows", b"services[]=cleaning&services[]=windows")
FORM = "application/x-www-form-urlencoded; charset=UTF-8"
#: Case 039's normalized event (its "type" is hookbus's lead.created; services are in "fields").
CASE_039 = {
    "services": ["cleaning", "windows"],
    "name": "Pat Example",
    "email": "PAT@Example.com",
    "email_key": "pat@example.com",
    "phone": "+15555550100",
}


def config(**overrides: object) -> FormConfig:
    return FormConfig.model_validate({"secret_env": "FORM_CONTACT_SECRET", "honeypot": "website"} | overrides)


def contact_form(**overrides: object) -> FormSource:
    return FormSource("contact", config(**overrides), (SECRET,), clock=lambda: NOW)


def signed(body: bytes, content_type: str, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": content_type, "X-Hookbus-Signature": hmac_signature(secret, body)}


async def stored(redis) -> list[dict]:  # type: ignore[no-untyped-def]
    return [orjson.loads(fields[b"event"]) for _, fields in await redis.xrange(STREAM)]


def projection(data: dict) -> dict:  # type: ignore[type-arg]
    return {
        "services": data["fields"]["services"],
        "name": data["name"],
        "email": data["email"],
        "email_key": data["email_key"],
        "phone": data["phone"],
    }


def spam_count() -> float:
    return REGISTRY.get_sample_value("hookbus_form_spam_total", {"form": "contact"}) or 0.0


async def test_case_039_form_json_and_brackets_give_one_event(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_with(redis, [contact_form()])
    async with ingest_client(app) as client:
        a = await client.post(ROUTE, content=BODY_A, headers=signed(BODY_A, FORM))
        b = await client.post(ROUTE, content=BODY_B, headers=signed(BODY_B, "application/json"))
        e = await client.post(ROUTE, content=BODY_E, headers=signed(BODY_E, FORM))
    assert [r.status_code for r in (a, b, e)] == [200, 200, 200]
    # Same normalized lead within the dedupe window: one event (a double submit, or form and JSON of one lead).
    assert [r.json()["status"] for r in (a, b, e)] == ["accepted", "duplicate", "duplicate"]
    assert a.json()["event_id"] == b.json()["event_id"] == e.json()["event_id"]
    (event,) = await stored(redis)
    assert event["type"] == "lead.created" and event["source"] == "forms/contact"
    assert projection(event["data"]) == CASE_039
    assert event["subject"] == "pat@example.com"
    assert "website" not in event["data"]["fields"]  # the honeypot is never passed on
    ttl = await redis.ttl(f"hookbus:dedupe:forms/contact:{a.json()['event_id']}")
    assert 590 <= ttl <= 600


@pytest.mark.parametrize(("body", "content_type"), [(BODY_A, FORM), (BODY_B, "application/json"), (BODY_E, FORM)])
def test_case_039_each_variant_normalizes_identically(body: bytes, content_type: str) -> None:
    delivery = contact_form().parse_request({"content-type": content_type}, body)
    (event,) = delivery.events
    assert projection(dict(event.data)) == CASE_039
    assert event.data["email_normalized"] == "PAT@example.com"
    assert delivery.dedupe_ttl_s == 600


async def test_case_039_text_plain_is_415_and_honeypot_is_silent(redis) -> None:  # type: ignore[no-untyped-def]
    before = spam_count()
    app = ingest_with(redis, [contact_form()])
    async with ingest_client(app) as client:
        c = await client.post(ROUTE, content=BODY_B, headers=signed(BODY_B, "text/plain"))
        d = await client.post(ROUTE, content=BODY_D, headers=signed(BODY_D, FORM))
        multipart = await client.post(
            ROUTE, content=b"--x--", headers=signed(b"--x--", "multipart/form-data; boundary=x")
        )
    assert (c.status_code, c.json()["error"]) == (415, "unsupported_media_type")
    assert multipart.status_code == 415
    assert (d.status_code, d.json()["status"]) == (200, "ignored")  # bots are not told
    assert spam_count() == before + 1
    assert await redis.xlen(STREAM) == 0


async def test_bad_signatures_are_401_and_publish_nothing(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_with(redis, [contact_form()])
    async with ingest_client(app) as client:
        wrong = await client.post(ROUTE, content=BODY_A, headers=signed(BODY_A, FORM, secret="another-secret"))
        missing = await client.post(ROUTE, content=BODY_A, headers={"Content-Type": FORM})
        tampered = await client.post(ROUTE, content=BODY_A + b"&x=1", headers=signed(BODY_A, FORM))
        unknown = await client.post("/webhooks/forms/other", content=BODY_A, headers=signed(BODY_A, FORM))
    assert [r.status_code for r in (wrong, missing, tampered)] == [401, 401, 401]
    assert unknown.status_code == 404
    assert await redis.xlen(STREAM) == 0
    assert await redis.keys("hookbus:dedupe:*") == []


@pytest.mark.parametrize(
    "header",
    [
        "sha256=" + hmac.new(SECRET.encode(), BODY_A, hashlib.sha256).hexdigest(),
        hmac.new(SECRET.encode(), BODY_A, hashlib.sha256).hexdigest().upper(),
        "sha256=" + base64.b64encode(hmac.new(SECRET.encode(), BODY_A, hashlib.sha256).digest()).decode(),
        base64.b64encode(hmac.new(SECRET.encode(), BODY_A, hashlib.sha256).digest()).decode(),
    ],
)
def test_hmac_header_forms(header: str) -> None:
    """GitHub-style hex and Typeform-style base64, with or without ``sha256=``."""
    contact_form().verify({"x-hookbus-signature": header}, BODY_A, NOW)


def test_hmac_rotation() -> None:
    source = FormSource("contact", config(), ("new-secret", SECRET))
    source.verify({"X-Hookbus-Signature": hmac_signature(SECRET, BODY_A)}, BODY_A, NOW)
    source.verify({"X-Hookbus-Signature": hmac_signature("new-secret", BODY_A)}, BODY_A, NOW)


async def test_standard_webhooks_form(redis) -> None:  # type: ignore[no-untyped-def]
    source = FormSource("contact", config(signature="standard-webhooks"), (SW_SECRET,))
    app = ingest_with(redis, [source], clock=lambda: NOW + 1)
    # Signed by the reference library, as a sender speaking Standard Webhooks would.
    library = standardwebhooks.Webhook(SW_SECRET)
    signature = library.sign("msg_form_1", datetime.fromtimestamp(NOW, UTC), BODY_B.decode())
    hdrs = {
        "Content-Type": "application/json",
        "webhook-id": "msg_form_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": signature,
    }
    async with ingest_client(app) as client:
        ok = await client.post(ROUTE, content=BODY_B, headers=hdrs)
        forged = await client.post(ROUTE, content=BODY_B, headers=hdrs | {"webhook-signature": "v1," + "A" * 43 + "="})
        hmac_only = await client.post(ROUTE, content=BODY_B, headers=signed(BODY_B, "application/json"))
    assert (ok.status_code, ok.json()["event_id"]) == (200, "msg_form_1")
    assert forged.status_code == 401 and hmac_only.status_code == 401
    (event,) = await stored(redis)
    assert event["id"] == "msg_form_1" and event["time"] == "2026-01-01T00:00:00.000Z"
    assert projection(event["data"]) == CASE_039


# --- case 036: size limit before authentication ----------------------------------------------------------------------

LIMIT = 256 * 1024


async def chunks(total: int, pulled: list[int], size: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        pulled.append(piece)
        sent += piece
        yield b"a" * piece


def exactly(size: int) -> bytes:
    """A valid form body of exactly ``size`` bytes."""
    head = b"name=Pat+Example&email=pat%40example.com&message="
    return head + b"x" * (size - len(head))


async def test_case_036_form_limit(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_with(redis, [contact_form(max_body_bytes=LIMIT)])
    thirty_mib = 30 * 1024 * 1024
    async with ingest_client(app) as client:
        declared: list[int] = []
        one = await client.post(
            ROUTE,
            content=chunks(thirty_mib, declared),
            headers={"Content-Type": FORM, "Content-Length": str(thirty_mib)},
        )
        streamed: list[int] = []
        two = await client.post(ROUTE, content=chunks(thirty_mib, streamed), headers={"Content-Type": FORM})
        body3, body4 = exactly(LIMIT), exactly(LIMIT + 1)
        three = await client.post(ROUTE, content=body3, headers=signed(body3, FORM))
        four = await client.post(ROUTE, content=body4, headers=signed(body4, FORM))
    assert (one.status_code, one.json()["error"]) == (413, "body_too_large")
    assert sum(declared) <= 64 * 1024  # refused from the header: at most the first chunk was pulled
    assert two.status_code == 413
    assert sum(streamed) <= LIMIT + 64 * 1024  # cut off as soon as more than the limit had arrived
    assert len(body3) == 262144 and (three.status_code, three.json()["status"]) == (200, "accepted")
    assert len(body4) == 262145 and four.status_code == 413
    assert await redis.xlen(STREAM) == 1


def test_default_form_limit_is_256_kib() -> None:
    assert contact_form().max_body_bytes == 262144


# --- normalization ---------------------------------------------------------------------------------------------------


def test_case_040_email_keys() -> None:
    assert normalize_email("PAT@Example.com") == ("PAT@Example.com", "PAT@example.com", "pat@example.com")
    assert normalize_email(" pat@example.com ") == ("pat@example.com", "pat@example.com", "pat@example.com")
    assert normalize_email("pat+quote@example.com")[2] == "pat+quote@example.com"  # type: ignore[index]
    assert normalize_email("p.a.t@gmail.com")[2] == "p.a.t@gmail.com"  # type: ignore[index]
    # Provider folding only where configured.
    assert normalize_email("Pat@GoogleMail.com")[2] == "pat@googlemail.com"  # type: ignore[index]
    aliases = {"googlemail.com": "gmail.com"}
    assert normalize_email("Pat@GoogleMail.com", aliases) == (
        "Pat@GoogleMail.com",
        "Pat@googlemail.com",
        "pat@gmail.com",
    )
    for bad in ("", "pat", "pat@", "@example.com", "pat@example", "pat@@example.com", "pat example@x.com"):
        assert normalize_email(bad) is None


def test_phone_numbers() -> None:
    assert normalize_phone("+15555550100") == "+15555550100"
    assert normalize_phone("(415) 555-0100", "US") == "+14155550100"
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"
    assert normalize_phone("020 7946 0958") is None  # national format without a default region
    assert normalize_phone("call me") is None
    assert normalize_phone("12") is None


def test_utm_referrer_fields_and_invalid_email() -> None:
    body = (
        b"email=not-an-address&phone=(415)+555-0100&first_name=Pat&last_name=Example&utm_source=google"
        b"&page_url=https%3A%2F%2Fshop.example%2Fquote%3Futm_medium%3Dcpc%26utm_campaign%3Dspring"
        b"&referrer=https%3A%2F%2Fwww.google.com%2F&consent=on&website="
    )
    source = contact_form(default_region="US", lead_source="website-quote", list_fields=["services"])
    (event,) = source.parse_request({"content-type": FORM}, body).events
    data = event.data
    assert data["utm"] == {"source": "google", "medium": "cpc", "campaign": "spring", "term": None, "content": None}
    assert data["referrer"] == "https://www.google.com/"
    assert data["phone"] == "+14155550100" and data["phone_raw"] == "(415) 555-0100"
    assert data["name"] == "Pat Example" and data["lead_source"] == "website-quote"
    assert data["email"] is None and data["email_key"] is None and data["invalid_email"] == "not-an-address"
    assert data["fields"] == {"consent": "on"}
    assert event.subject is None


def test_json_scalars_and_field_mapping() -> None:
    body = orjson.dumps({"Your E-mail": "a@b.co", "count": 3, "ok": True, "services": "one", "nothing": None})
    source = contact_form(fields={"email": "Your E-mail"}, list_fields=["services"])
    (event,) = source.parse_request({"content-type": "application/json"}, body).events
    assert event.data["email_key"] == "a@b.co"
    assert event.data["fields"] == {"count": "3", "ok": "true", "services": ["one"], "nothing": ""}


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown canonical field"):
        config(fields={"emial": "x"})
    with pytest.raises(ValueError, match="default_region"):
        config(default_region="usa")
    with pytest.raises(ConfigError):
        FormSource("contact", config(), ())
    with pytest.raises(ConfigError):
        FormSource("bad/id", config(), (SECRET,))


def test_forms_from_the_rules_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hookbus.toml"
    path.write_text(
        '[sources.forms.contact]\nsecret_env = "FORM_CONTACT_SECRET"\nhoneypot = "website"\n'
        '[sources.forms.quote]\nsecret_env = "FORM_QUOTE_SECRET"\nsignature = "standard-webhooks"\n'
        "max_body_bytes = 65536\n"
    )
    monkeypatch.setenv("HOOKBUS_CONFIG", str(path))
    monkeypatch.setenv("FORM_CONTACT_SECRET", SECRET)
    monkeypatch.delenv("FORM_QUOTE_SECRET", raising=False)
    secret_file = tmp_path / "quote.secret"
    secret_file.write_text(SW_SECRET + "\n")
    rules.reload()
    try:
        assert [s.name for s in forms.from_env()] == ["forms/contact"]  # quote has no secret yet: absent
        monkeypatch.setenv("FORM_QUOTE_SECRET_FILE", str(secret_file))
        configured = {s.name: s for s in forms.from_env()}
        assert set(configured) == {"forms/contact", "forms/quote"}
        assert configured["forms/quote"].max_body_bytes == 65536
    finally:
        rules.reload()


def test_content_type_and_charset() -> None:
    source = contact_form()
    with pytest.raises(PayloadError) as missing:
        source.parse_request({}, BODY_A)
    assert missing.value.status_code == 415
    latin = b"name=Jos%E9+Mu%F1oz&email=jose%40example.com"
    (event,) = source.parse_request(
        {"content-type": "application/x-www-form-urlencoded; charset=ISO-8859-1"}, latin
    ).events
    assert event.data["name"] == "José Muñoz"
    with pytest.raises(PayloadError) as undecodable:
        source.parse_request({"content-type": FORM}, latin)  # %E9 is not UTF-8
    assert undecodable.value.status_code == 400
    with pytest.raises(PayloadError):
        source.parse_request({"content-type": "application/json"}, b"[1, 2]")

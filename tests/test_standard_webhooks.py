"""Standard Webhooks verification (shared case 004), checked against the reference ``standardwebhooks`` library, and
the generic Standard Webhooks source over HTTP on a real Valkey."""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import standardwebhooks
import standardwebhooks.webhooks as sw_module

from bus import rules
from bus.errors import ConfigError
from ingest.sources import generic
from ingest.sources.base import SignatureError
from ingest.sources.generic import StandardSource, StandardSourceConfig
from ingest.sources.standard_webhooks import StandardWebhooksVerifier, decode_secret, sign, signature_headers

from .leads_support import ingest_with
from .support import ingest_client

# --- case 004, byte for byte -----------------------------------------------------------------------------------------

SECRET_1 = "whsec_aG9va2J1cy1zdGFuZGFyZC13ZWJob29rcy1rZXkhISE="
SECRET_2 = "whsec_aG9va2J1cy1zdGFuZGFyZC13ZWJob29rcy1rZXktMiE="
MSG_ID = "msg_hb_0001"
T0 = 1767225600
NOW = 1767225605
BODY = b'{"type":"booking.created","data":{"uid":"bk_7Q2"}}'
SIG_1 = "v1,DmWaflKaJ2C3ueNIX8QDydBQHt+fiUWr8bECRgZ80KU="
SIG_2 = "v1,rcYyI1eK+U4q6NnLylwXeBUOGBZhqnDwLnT8KUoRNPg="
SIG_POLAR = "v1,6h+sTdY9nXSJLkclVbE+/An4FCU1+jxt+nBkLygtpn8="

VARIANTS = {
    "correct": (SIG_1, str(T0)),
    "A rotation list": (f"{SIG_2} {SIG_1}", str(T0)),
    "B extra ,x": (f"{SIG_1},x", str(T0)),
    "C two spaces": (f"{SIG_2}  {SIG_1}", str(T0)),
    "D not base64": ("v1,@@@", str(T0)),
    "E polar-style": (SIG_POLAR, str(T0)),
    "F milliseconds": (SIG_1, str(T0 * 1000)),
}
#: The expected HTTP status of each variant (case 004) and the reference library's verdict
#: (True/False, or ValueError for the lists it cannot parse).
EXPECTED = {
    "correct": (200, True),
    "A rotation list": (200, True),
    "B extra ,x": (401, ValueError),
    "C two spaces": (200, ValueError),
    "D not base64": (401, False),
    "E polar-style": (401, False),
    "F milliseconds": (401, False),
}
STREAM = "hookbus:stream:booking.created"


def headers(signature: str, timestamp: str = str(T0), msg_id: str = MSG_ID) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}


@pytest.fixture
def frozen_library_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Freeze ``datetime.now`` inside the reference library."""
    clock = [float(NOW)]

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
            return datetime.fromtimestamp(clock[0], tz or UTC)

    monkeypatch.setattr(sw_module, "datetime", Frozen)
    yield clock


def library_verdict(secret: str, body: bytes, hdrs: dict[str, str]) -> bool | type[Exception]:
    try:
        standardwebhooks.Webhook(secret).verify(body, hdrs)
    except standardwebhooks.WebhookVerificationError:
        return False
    except ValueError:
        return ValueError
    return True


def source(*secrets: str, encoding: str = "base64") -> StandardSource:
    config = StandardSourceConfig(
        secret_env="ACME_SECRET", types={"booking.created": "booking.created"}, secret_encoding=encoding
    )
    return StandardSource("acme", config, secrets)


# --- unit: the verifier ----------------------------------------------------------------------------------------------


def test_case_004_signatures_are_the_documented_values() -> None:
    assert decode_secret(SECRET_1) == b"hookbus-standard-webhooks-key!!!"
    assert sign(SECRET_1, MSG_ID, T0, BODY) == SIG_1
    assert sign(SECRET_2, MSG_ID, T0, BODY) == SIG_2
    assert sign(SECRET_1, MSG_ID, T0, BODY, encoding="raw-utf8") == SIG_POLAR
    library = standardwebhooks.Webhook(SECRET_1)
    assert library.sign(MSG_ID, datetime.fromtimestamp(T0, UTC), BODY.decode()) == SIG_1


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_case_004_verdicts_match_the_reference_library(variant: str, frozen_library_clock: list[float]) -> None:
    signature, timestamp = VARIANTS[variant]
    status, library = EXPECTED[variant]
    verifier = StandardWebhooksVerifier([SECRET_1])
    try:
        verifier.verify(headers(signature, timestamp), BODY, NOW)
        ours = True
    except SignatureError:
        ours = False
    assert ours is (status == 200)
    assert library_verdict(SECRET_1, BODY, headers(signature, timestamp)) == library


def test_timestamp_window_both_directions() -> None:
    verifier = StandardWebhooksVerifier([SECRET_1])
    verifier.verify(headers(SIG_1), BODY, T0 + 300)  # exactly the tolerance: accepted
    verifier.verify(headers(SIG_1), BODY, T0 - 300)
    with pytest.raises(SignatureError, match="older than 300 s"):
        verifier.verify(headers(SIG_1), BODY, T0 + 301)
    with pytest.raises(SignatureError, match="in the future"):
        verifier.verify(headers(SIG_1), BODY, T0 - 301)
    StandardWebhooksVerifier([SECRET_1], tolerance_s=600).verify(headers(SIG_1), BODY, T0 + 599)


def test_secret_rotation_and_other_versions() -> None:
    both = StandardWebhooksVerifier([SECRET_2, SECRET_1])
    both.verify(headers(SIG_1), BODY, NOW)
    both.verify(headers(SIG_2), BODY, NOW)
    with pytest.raises(SignatureError):  # v1a (asymmetric) or v2 tokens are never taken for v1
        both.verify(headers(SIG_1.replace("v1,", "v1a,") + " " + SIG_1.replace("v1,", "v2,")), BODY, NOW)
    with pytest.raises(SignatureError, match="no webhook signature matches"):
        StandardWebhooksVerifier([SECRET_2]).verify(headers(SIG_1), BODY, NOW)


def test_svix_headers_are_aliases() -> None:
    verifier = StandardWebhooksVerifier([SECRET_1])
    svix = {"svix-id": MSG_ID, "svix-timestamp": str(T0), "svix-signature": SIG_1}
    assert verifier.verify(svix, BODY, NOW).msg_id == MSG_ID
    # With both sets present the svix-* ones are used, as the svix library does.
    assert verifier.verify(svix | headers("v1,garbage", msg_id="other"), BODY, NOW).msg_id == MSG_ID


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"webhook-id": MSG_ID, "webhook-timestamp": str(T0)},
        headers(SIG_1, timestamp="1767225600.5"),
        headers(SIG_1, timestamp="-1767225600"),
        headers(SIG_1, timestamp=" 1767225600"),
        headers(""),
        headers("v1,"),
        headers("v1," + base64.b64encode(b"short").decode()),
        headers(SIG_1, msg_id="x" * 257),
        headers(SIG_1, msg_id="msg\nwith newline"),
        headers("ζζζ,ζζζ"),
    ],
)
def test_malformed_headers_are_signature_errors(bad: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        StandardWebhooksVerifier([SECRET_1]).verify(bad, BODY, NOW)


def test_secret_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="starts with 'v1,'"):
        decode_secret("v1,whsec_aG9va2J1cy1zdGFuZGFyZC13ZWJob29rcy1rZXkhISE=")
    with pytest.raises(ConfigError, match="base64"):
        decode_secret("whsec_not*base64!")
    with pytest.raises(ConfigError, match="non-empty"):
        decode_secret("  ")
    with pytest.raises(ConfigError):
        StandardWebhooksVerifier([])
    # Unpadded base64 is accepted, as the reference library accepts it.
    assert decode_secret(SECRET_1.rstrip("=")) == decode_secret(SECRET_1)
    assert decode_secret("aG9va2J1cy1zdGFuZGFyZC13ZWJob29rcy1rZXkhISE=") == decode_secret(SECRET_1)


def test_secret_starting_with_v1_is_refused_at_config_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 004: the stock library silently accepts such a secret and derives a wrong key; hookbus stops start-up."""
    path = tmp_path / "hookbus.toml"
    path.write_text('[sources.standard.acme]\nsecret_env = "ACME_SECRET"\ntypes = { "x.y" = "acme.x_y" }\n')
    monkeypatch.setenv("HOOKBUS_CONFIG", str(path))
    monkeypatch.setenv("ACME_SECRET", "v1," + SECRET_1)
    rules.reload()
    try:
        with pytest.raises(ConfigError, match="starts with 'v1,'"):
            generic.from_env()
        monkeypatch.setenv("ACME_SECRET", f"{SECRET_1},{SECRET_2}")
        (configured,) = generic.from_env()
        assert configured.name == "acme" and "hidden" in repr(configured.verifier)
        assert SECRET_1 not in repr(configured.verifier)
    finally:
        rules.reload()


def test_random_messages_agree_with_the_reference_library(frozen_library_clock: list[float]) -> None:
    rng = random.Random(4)
    for _ in range(200):
        secret = "whsec_" + base64.b64encode(rng.randbytes(rng.choice([24, 32, 64]))).decode()
        body = orjson.dumps({"type": "x.y", "n": rng.random(), "s": "é/&<>" * rng.randint(0, 3)})
        msg_id = f"msg_{rng.getrandbits(64):x}"
        ours = signature_headers(secret, msg_id, NOW, body)
        assert library_verdict(secret, body, ours) is True
        theirs = standardwebhooks.Webhook(secret).sign(msg_id, datetime.fromtimestamp(NOW, UTC), body.decode())
        StandardWebhooksVerifier([secret]).verify(headers(theirs, str(NOW), msg_id), body, NOW)
        tampered = body + b" "
        assert library_verdict(secret, tampered, ours) is False
        with pytest.raises(SignatureError):
            StandardWebhooksVerifier([secret]).verify(ours, tampered, NOW)


# --- over HTTP: the generic source -----------------------------------------------------------------------------------

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_case_004_over_http(redis, variant: str) -> None:  # type: ignore[no-untyped-def]
    signature, timestamp = VARIANTS[variant]
    status, _ = EXPECTED[variant]
    app = ingest_with(redis, [source(SECRET_1)], clock=lambda: NOW)
    async with ingest_client(app) as client:
        response = await client.post("/webhooks/acme", content=BODY, headers=headers(signature, timestamp))
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["status"] == "accepted"
        ((_, fields),) = await redis.xrange(STREAM)
        event = orjson.loads(fields[b"event"])
        assert event["id"] == MSG_ID and event["type"] == "booking.created" and event["source"] == "acme"
        assert event["data"] == {"uid": "bk_7Q2"}
    else:
        assert response.json()["error"] == "bad_signature"
        assert await redis.xlen(STREAM) == 0
        assert await redis.exists(f"hookbus:dedupe:acme:{MSG_ID}") == 0


async def test_case_004_polar_style_with_raw_utf8_and_duplicates(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_with(redis, [source(SECRET_1, encoding="raw-utf8")], clock=lambda: NOW)
    async with ingest_client(app) as client:
        first = await client.post("/webhooks/acme", content=BODY, headers=headers(SIG_POLAR))
        again = await client.post("/webhooks/acme", content=BODY, headers=headers(SIG_POLAR))
        stock = await client.post("/webhooks/acme", content=BODY, headers=headers(SIG_1))
    assert (first.status_code, first.json()["status"]) == (200, "accepted")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")  # webhook-id is the dedupe id
    assert stock.status_code == 401
    assert await redis.xlen(STREAM) == 1


async def test_unmapped_type_is_ignored_and_stale_is_401(redis) -> None:  # type: ignore[no-untyped-def]
    body = b'{"type":"invoice.settled","data":{"id":"inv_1"}}'
    app = ingest_with(redis, [source(SECRET_1)], clock=lambda: NOW)
    async with ingest_client(app) as client:
        ignored = await client.post(
            "/webhooks/acme", content=body, headers=signature_headers(SECRET_1, "msg_2", T0, body)
        )
        stale = await client.post(
            "/webhooks/acme", content=BODY, headers=signature_headers(SECRET_1, "msg_3", T0 - 400, BODY)
        )
        not_json = await client.post(
            "/webhooks/acme", content=b"[1]", headers=signature_headers(SECRET_1, "msg_4", T0, b"[1]")
        )
    assert (ignored.status_code, ignored.json()["status"]) == (200, "ignored")
    assert stale.status_code == 401
    assert not_json.status_code == 400
    assert await redis.xlen(STREAM) == 0

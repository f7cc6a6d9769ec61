"""Unit tests of the booking sources (Calendly, Cal.com) and the Google Calendar push source: signatures and
normalization, with the exact inputs of shared cases 010, 011, 014 and 017. No Redis, no HTTP.

Neither Calendly nor Cal.com ships an official verification library; the expected signatures below were computed
independently with Python's ``hmac`` (as the case files did) and each test checks our verdict against that value.
"""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest
from prometheus_client import REGISTRY
from starlette.datastructures import Headers

from ingest.sources import FACTORIES, booking_samples
from ingest.sources.base import PayloadError, RequestSource, SignatureError, Source
from ingest.sources.calcom import CalcomSource, signature
from ingest.sources.calendly import CalendlySource, signature_header
from ingest.sources.google_calendar import (
    GoogleCalendarSource,
    calendar_id_of,
    channel_id_minted,
    mint_channel_id,
)

# --- case 010 ---------------------------------------------------------------------------------------------------------
CALENDLY_KEY = "hookbus-calendly-signing-key"
BODY_010 = (
    b'{"event":"invitee.created","created_at":"2026-01-01T00:00:00.000000Z","payload":{"email":"pat@example.com",'
    b'"scheduled_event":{"start_time":"2026-01-05T14:00:00.000000Z"}}}'
)
HEADER_010 = "t=1767225600,v1=4c23ae4093253b3e85e1a7e54e3d9439cb57acf1daeb55a3e27f11b5685cb253"
T_010 = 1767225600

# --- case 011 ---------------------------------------------------------------------------------------------------------
CALCOM_SECRET = "hookbus-calcom-secret"
BODY_011 = b'{"triggerEvent":"MEETING_ENDED","createdAt":"2026-01-05T15:00:00.000Z","payload":{"uid":"bk_3F9a77"}}'
SIG_011 = "2c2300efbf716c38efa67f234ed36d5a3ada15594fdaed6976266fef7dfd490e"


def unsigned_count(source: str, trigger: str) -> float:
    value = REGISTRY.get_sample_value("hookbus_unsigned_rejected_total", {"source": source, "trigger": trigger})
    return value or 0.0


# ------------------------------------------------------------------------------------------------------- Calendly
def test_case_010_documented_scheme_reproduces_the_case_signature() -> None:
    expected = hmac.new(CALENDLY_KEY.encode(), f"{T_010}.".encode() + BODY_010, hashlib.sha256).hexdigest()
    assert f"t={T_010},v1={expected}" == HEADER_010
    assert signature_header(BODY_010, CALENDLY_KEY, T_010) == HEADER_010


def test_case_010_tolerance_window() -> None:
    source = CalendlySource([CALENDLY_KEY])
    headers = {"Calendly-Webhook-Signature": HEADER_010}
    source.verify(headers, BODY_010, T_010 + 100)
    source.verify(headers, BODY_010, T_010 + 180)  # exactly the tolerance: still accepted
    with pytest.raises(SignatureError, match="older than 180 s"):
        source.verify(headers, BODY_010, T_010 + 181)
    CalendlySource([CALENDLY_KEY], tolerance_s=300).verify(headers, BODY_010, T_010 + 181)  # configurable


def test_case_010_missing_header_rejected_and_counted() -> None:
    source = CalendlySource([CALENDLY_KEY])
    before = unsigned_count("calendly", "invitee.created")
    with pytest.raises(SignatureError, match="missing"):
        source.verify({}, BODY_010, T_010 + 100)
    assert unsigned_count("calendly", "invitee.created") == before + 1


@pytest.mark.parametrize(
    "header",
    [
        "t=1767225600,v1=" + "0" * 64,  # wrong signature
        "v1=4c23ae4093253b3e85e1a7e54e3d9439cb57acf1daeb55a3e27f11b5685cb253",  # no timestamp
        "t=1767225600",  # no v1
        "t=abc,v1=4c23ae4093253b3e85e1a7e54e3d9439cb57acf1daeb55a3e27f11b5685cb253",
        "t=1767225601,v1=4c23ae4093253b3e85e1a7e54e3d9439cb57acf1daeb55a3e27f11b5685cb253",  # t not the signed one
        "garbage",
        "t=1767225600,v1=é",
    ],
)
def test_calendly_bad_headers(header: str) -> None:
    with pytest.raises(SignatureError):
        CalendlySource([CALENDLY_KEY]).verify({"Calendly-Webhook-Signature": header}, BODY_010, T_010 + 1)


def test_calendly_raw_bytes_and_rotation() -> None:
    reserialized = orjson.dumps(orjson.loads(BODY_010), option=orjson.OPT_INDENT_2)
    with pytest.raises(SignatureError):
        CalendlySource([CALENDLY_KEY]).verify({"Calendly-Webhook-Signature": HEADER_010}, reserialized, T_010)
    rotated = CalendlySource(["new-key", CALENDLY_KEY])
    rotated.verify(Headers({"calendly-webhook-signature": HEADER_010}), BODY_010, T_010)
    with pytest.raises(SignatureError):
        CalendlySource(["new-key"]).verify({"Calendly-Webhook-Signature": HEADER_010}, BODY_010, T_010)


def test_case_010_normalized_start() -> None:
    delivery = CalendlySource([CALENDLY_KEY]).parse(BODY_010)
    (event,) = delivery.events
    assert event.type == "booking.created"
    assert event.data["start"] == "2026-01-05T14:00:00Z"
    assert event.data["end"] is None and event.data["verified"] is True
    assert event.time == "2026-01-01T00:00:00Z"


def test_calendly_unsigned_mode_only_when_configured() -> None:
    with pytest.raises(ValueError):
        CalendlySource([])
    source = CalendlySource([], signature="none")
    source.verify({}, BODY_010, T_010 + 10_000)
    (event,) = source.parse(BODY_010).events
    assert event.data["verified"] is False


def test_calendly_full_payload_normalization() -> None:
    body = booking_samples.calendly_invitee(
        invitee_uuid="INV1",
        start="2026-10-25T08:00:00Z",
        minutes=45,
        time_zone="America/New_York",
        phone="+1 (212) 555-0142",
        created_at="2026-10-01T10:00:00Z",
    )
    delivery = CalendlySource([CALENDLY_KEY]).parse(body)
    assert delivery.event_id == "invitee.created:INV1"
    (event,) = delivery.events
    assert (event.type, event.subject, event.source) == ("booking.created", "INV1", "calendly")
    assert event.data == {
        "booking_id": "INV1",
        "new_booking_id": None,
        "start": "2026-10-25T08:00:00Z",
        "end": "2026-10-25T08:45:00Z",
        "time_zone": "America/New_York",
        "all_day": False,
        "event_type": "Consultation",
        "staff": {"name": "Anna Schmidt", "email": "anna@example.com", "time_zone": None},
        "invitee": {
            "name": "Pat Lee",
            "email": "pat@example.com",
            "phone": "+12125550142",
            "time_zone": "America/New_York",
        },
        "location": "Torstraße 1, Berlin",
        "reason": None,
        "verified": True,
    }


def test_calendly_reschedule_is_one_rescheduled_event_and_the_cancel_half_is_ignored() -> None:
    source = CalendlySource([CALENDLY_KEY])
    cancel_half = booking_samples.calendly_invitee("invitee.canceled", invitee_uuid="OLD1", new_invitee_uuid="NEW1")
    delivery = source.parse(cancel_half)
    assert delivery.events == () and delivery.provider_type == "invitee.canceled (rescheduled)"
    created_half = booking_samples.calendly_invitee(invitee_uuid="NEW1", old_invitee_uuid="OLD1")
    (event,) = source.parse(created_half).events
    assert (event.type, event.subject) == ("booking.rescheduled", "OLD1")
    assert event.data["new_booking_id"] == "NEW1"
    plain_cancel = booking_samples.calendly_invitee("invitee.canceled", invitee_uuid="X9", reason="sick")
    (event,) = source.parse(plain_cancel).events
    assert (event.type, event.subject, event.data["reason"]) == ("booking.cancelled", "X9", "sick")


def test_calendly_other_events_and_bad_bodies() -> None:
    source = CalendlySource([CALENDLY_KEY])
    assert source.parse(b'{"event":"invitee_no_show.created","payload":{}}').events == ()
    for bad in (b"not json", b"[]", b'{"payload":{}}', b'{"event":"invitee.created"}'):
        with pytest.raises(PayloadError):
            source.parse(bad)
    with pytest.raises(PayloadError, match="RFC 3339"):
        source.parse(b'{"event":"invitee.created","payload":{"scheduled_event":{"start_time":"tomorrow"}}}')


# -------------------------------------------------------------------------------------------------------- Cal.com
def test_case_011_signature_value() -> None:
    assert hmac.new(CALCOM_SECRET.encode(), BODY_011, hashlib.sha256).hexdigest() == SIG_011
    assert signature(BODY_011, CALCOM_SECRET) == SIG_011


def test_case_011_plain_prefixed_and_missing() -> None:
    source = CalcomSource([CALCOM_SECRET])
    before = unsigned_count("calcom", "MEETING_ENDED")
    source.verify({"X-Cal-Signature-256": SIG_011}, BODY_011, 0)  # (a)
    source.verify({"X-Cal-Signature-256": f"sha256={SIG_011}"}, BODY_011, 0)  # (b)
    source.verify({"X-Cal-Signature-256": SIG_011.upper()}, BODY_011, 0)
    assert unsigned_count("calcom", "MEETING_ENDED") == before
    with pytest.raises(SignatureError, match="missing"):
        source.verify({}, BODY_011, 0)  # (c)
    assert unsigned_count("calcom", "MEETING_ENDED") == before + 1
    (event,) = source.parse(BODY_011).events
    assert (event.type, event.subject, event.source) == ("booking.meeting_ended", "bk_3F9a77", "calcom")


def test_calcom_unknown_trigger_label_is_bounded() -> None:
    before = unsigned_count("calcom", "other")
    with pytest.raises(SignatureError):
        CalcomSource([CALCOM_SECRET]).verify({}, b'{"triggerEvent":"x' + b"A" * 50 + b'"}', 0)
    assert unsigned_count("calcom", "other") == before + 1


@pytest.mark.parametrize("value", ["0" * 64, "sha256=", "", "   ", "zz" * 32, SIG_011[:-1]])
def test_calcom_wrong_signatures(value: str) -> None:
    with pytest.raises(SignatureError):
        CalcomSource([CALCOM_SECRET]).verify({"X-Cal-Signature-256": value}, BODY_011, 0)


def test_calcom_rotation_and_raw_bytes() -> None:
    CalcomSource(["old", CALCOM_SECRET]).verify({"x-cal-signature-256": SIG_011}, BODY_011, 0)
    with pytest.raises(SignatureError):
        CalcomSource([CALCOM_SECRET]).verify({"X-Cal-Signature-256": SIG_011}, BODY_011 + b"\n", 0)


def test_case_017_calcom_mapping() -> None:
    source = CalcomSource([CALCOM_SECRET])
    e1 = (
        b'{"triggerEvent":"BOOKING_CANCELLED","payload":{"uid":"bk_A1","requestReschedule":true,'
        b'"rescheduledToUid":null,"startTime":"2026-01-06T15:00:00Z"}}'
    )
    e2 = b'{"triggerEvent":"BOOKING_CANCELLED","payload":{"uid":"bk_B2","startTime":"2026-01-07T15:00:00Z"}}'
    e3 = (
        b'{"triggerEvent":"BOOKING_CREATED","payload":{"uid":"bk_B2","startTime":"2026-01-07T15:00:00Z",'
        b'"attendees":[{"email":"sam@example.com","timeZone":"America/New_York"}]}}'
    )
    types = [(e.type, e.subject) for body in (e1, e2, e3) for e in source.parse(body).events]
    assert types == [
        ("booking.reschedule_requested", "bk_A1"),
        ("booking.cancelled", "bk_B2"),
        ("booking.created", "bk_B2"),
    ]
    (created,) = source.parse(e3).events
    assert created.data["invitee"] == {
        "name": None,
        "email": "sam@example.com",
        "phone": None,
        "time_zone": "America/New_York",
    }
    cancel_half = b'{"triggerEvent":"BOOKING_CANCELLED","payload":{"uid":"bk_C3","rescheduledToUid":"bk_C4"}}'
    assert source.parse(cancel_half).events == ()


def test_calcom_full_payload_and_reschedule() -> None:
    source = CalcomSource([CALCOM_SECRET])
    body = booking_samples.calcom_booking(
        uid="bk_1", start="2025-11-03T14:00:00Z", minutes=60, created_at="2025-10-20T12:00:00.000Z"
    )
    delivery = source.parse(body)
    assert delivery.event_id == "BOOKING_CREATED:bk_1"
    (event,) = delivery.events
    assert event.time == "2025-10-20T12:00:00Z"
    assert (event.data["start"], event.data["end"]) == ("2025-11-03T14:00:00Z", "2025-11-03T15:00:00Z")
    assert event.data["staff"] == {"name": "Anna Schmidt", "email": "anna@example.com", "time_zone": "Europe/Berlin"}
    assert event.data["invitee"]["phone"] == "+12125550199"
    moved = booking_samples.calcom_booking("BOOKING_RESCHEDULED", uid="bk_2", reschedule_uid="bk_1")
    delivery = source.parse(moved)
    assert delivery.event_id == "BOOKING_RESCHEDULED:bk_2"
    (event,) = delivery.events
    assert (event.type, event.subject, event.data["booking_id"], event.data["new_booking_id"]) == (
        "booking.rescheduled",
        "bk_1",
        "bk_1",
        "bk_2",
    )


def test_calcom_end_from_length_and_unknown_zone() -> None:
    body = (
        b'{"triggerEvent":"BOOKING_CREATED","payload":{"uid":"u1","startTime":"2026-03-29T00:30:00Z","length":90,'
        b'"attendees":[{"email":"a@example.com","timeZone":"Mars/Olympus_Mons"}]}}'
    )
    (event,) = CalcomSource([CALCOM_SECRET]).parse(body).events
    assert event.data["end"] == "2026-03-29T02:00:00Z"
    assert event.data["time_zone"] is None


def test_calcom_ignored_and_malformed() -> None:
    source = CalcomSource([CALCOM_SECRET])
    assert source.parse(b'{"triggerEvent":"PING","payload":{}}').events == ()
    for bad in (b"{", b"[1]", b'{"payload":{}}', b'{"triggerEvent":"BOOKING_CREATED","payload":{}}'):
        with pytest.raises(PayloadError):
            source.parse(bad)


# ------------------------------------------------------------------------------------------------ Google push
TOKEN = "tok-6b1f0c2e"


def test_channel_ids_are_minted_and_checked() -> None:
    channel = mint_channel_id(TOKEN, "0123456789abcdef0123")
    assert channel.startswith("hb-0123456789abcdef0123-") and len(channel) == 48
    assert channel_id_minted(channel, [TOKEN])
    assert channel_id_minted(channel, ["other", TOKEN])
    assert not channel_id_minted(channel, ["other"])
    assert not channel_id_minted("chan-unknown", [TOKEN])
    assert not channel_id_minted(channel[:-1] + ("0" if channel[-1] != "0" else "1"), [TOKEN])


def test_calendar_id_from_resource_uri() -> None:
    uri = "https://www.googleapis.com/calendar/v3/calendars/anna%40example.com/events?alt=json"
    assert calendar_id_of(uri) == "anna@example.com"
    assert calendar_id_of("https://www.googleapis.com/calendar/v3/calendars/primary/events") == "primary"
    assert calendar_id_of(None) is None and calendar_id_of("https://example.com/x") is None


def test_case_014_headers_only() -> None:
    source = GoogleCalendarSource([TOKEN])
    channel = mint_channel_id(TOKEN)

    def headers(state: str, number: int, *, token: str = TOKEN, channel_id: str = channel) -> Headers:
        return Headers(
            booking_samples.google_push_headers(
                channel_id=channel_id, token=token, state=state, message_number=number, resource_id="res-hb-0001"
            )
        )

    sync = headers("sync", 1)
    source.verify(sync, b"", 0)
    delivery = source.parse_request(sync, b"")
    assert delivery.events == () and delivery.provider_type == "sync"
    exists = headers("exists", 2)
    source.verify(exists, b"", 0)
    delivery = source.parse_request(exists, b"")
    assert delivery.event_id == f"{channel}:2"
    (event,) = delivery.events
    assert (event.type, event.subject, event.source) == ("calendar.sync_requested", "primary", "google-calendar")
    assert event.data["channel_id"] == channel and event.data["message_number"] == 2
    assert event.data["resource_id"] == "res-hb-0001" and event.data["resource_state"] == "exists"
    with pytest.raises(SignatureError, match="does not match"):
        source.verify(headers("exists", 2, token="wrong"), b"", 0)
    with pytest.raises(SignatureError, match="unknown notification channel"):
        source.verify(headers("exists", 2, channel_id="chan-unknown"), b"", 0)
    with pytest.raises(SignatureError, match="missing"):
        source.verify(Headers({"X-Goog-Channel-ID": channel}), b"", 0)
    with pytest.raises(PayloadError):
        source.parse_request(headers("exists", 0).mutablecopy() | {"X-Goog-Message-Number": "x"}, b"")


def test_every_source_follows_the_protocol() -> None:
    assert isinstance(CalendlySource([CALENDLY_KEY]), Source)
    assert isinstance(CalcomSource([CALCOM_SECRET]), Source)
    google = GoogleCalendarSource([TOKEN])
    assert isinstance(google, Source) and isinstance(google, RequestSource)
    assert CALCOM_SECRET not in repr(CalcomSource([CALCOM_SECRET])) and TOKEN not in repr(google)


def test_factories_configure_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ingest.sources import configured_sources

    for name in ("CALENDLY_WEBHOOK_SIGNING_KEY", "CALCOM_WEBHOOK_SECRET", "GOOGLE_CALENDAR_CHANNEL_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert not {"calendly", "calcom", "google-calendar"} & set(configured_sources())
    secret_file = tmp_path / "calcom"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("CALENDLY_WEBHOOK_SIGNING_KEY", "k1, k2")
    monkeypatch.setenv("CALCOM_WEBHOOK_SECRET_FILE", str(secret_file))
    monkeypatch.setenv("GOOGLE_CALENDAR_CHANNEL_TOKEN", TOKEN)
    monkeypatch.setenv("CALENDLY_TOLERANCE_S", "120")
    sources = configured_sources()
    assert sources["calendly"].tolerance_s == 120  # type: ignore[attr-defined]
    sources["calcom"].verify({"X-Cal-Signature-256": signature(b"{}", "from-file")}, b"{}", 0)
    assert isinstance(sources["google-calendar"], GoogleCalendarSource)
    assert len(FACTORIES) >= 4


def test_senders_sign_like_the_sources_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from ingest.senders import SENDERS

    monkeypatch.setenv("CALENDLY_WEBHOOK_SIGNING_KEY", CALENDLY_KEY)
    monkeypatch.setenv("CALCOM_WEBHOOK_SECRET", CALCOM_SECRET)
    monkeypatch.setenv("GOOGLE_CALENDAR_CHANNEL_TOKEN", TOKEN)
    sources: dict[str, Source] = {
        "calendly": CalendlySource([CALENDLY_KEY]),
        "calcom": CalcomSource([CALCOM_SECRET]),
        "google-calendar": GoogleCalendarSource([TOKEN]),
    }
    options = {"start": "2026-10-25T08:00:00Z", "tz": "America/New_York", "staff": "ben@example.com"}
    for name, source in sources.items():
        for event_type in SENDERS[name].event_types:
            hook = SENDERS[name].webhook(event_type, options)
            assert hook.path == f"/webhooks/{name}"
            headers = Headers(dict(hook.headers))
            source.verify(headers, hook.body, time.time())
            parse = getattr(source, "parse_request", None)
            delivery = parse(headers, hook.body) if parse else source.parse(hook.body)
            if event_type in ("invitee.created", "BOOKING_CREATED"):
                (event,) = delivery.events
                assert event.data["start"] == "2026-10-25T08:00:00Z"
                assert event.data["staff"]["email"] == "ben@example.com"
                assert event.data["time_zone"] == "America/New_York"

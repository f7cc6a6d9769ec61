"""Time math of bookings (shared cases 021, 022) and Google Calendar event ids (case 023): exact values.

Expected values were computed with Python ``zoneinfo`` and the tzdata package. Nothing here reads the clock: the
"booking made on 2025-10-20 (EDT)" of case 021 cannot influence the result, which depends only on the appointment's
date — the test freezes nothing because there is nothing to freeze (``test_resolution_ignores_today``).
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from bus.localtime import (
    NonexistentLocalTime,
    UnknownTimeZone,
    all_day_end,
    days_covered,
    format_instant,
    in_zone,
    parse_instant,
    resolve_local,
)
from consumers.calendar import CalendarRules, event_body, sms_when
from consumers.calendar_sync import event_changed_data
from consumers.clients.google_calendar import EVENT_ID, event_id_for

NY = "America/New_York"
RULES = CalendarRules()


def timed(start: str, end: str, tz: str | None = NY) -> dict[str, object]:
    return {"booking_id": "b1", "start": start, "end": end, "time_zone": tz, "all_day": False, "event_type": "Visit"}


def body_for(data: dict[str, object], zone: str) -> dict[str, object]:
    return event_body(data, source="calcom", booking_key="calcom:b1", rules=RULES, zone_name=zone, staff="Anna")


# ----------------------------------------------------------------------------------------------------- case 021
def test_case_021a_naive_local_time_uses_the_offset_of_the_appointment_date() -> None:
    resolved = resolve_local("2025-11-03", "09:00", NY)
    assert format_instant(resolved.instant) == "2025-11-03T14:00:00Z"
    assert resolved.ambiguous is False
    assert in_zone(resolved.instant, NY).isoformat() == "2025-11-03T09:00:00-05:00"
    # The bug: the offset valid at booking time (EDT, -04:00) gives 13:00Z = 08:00 EST.
    buggy = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    assert format_instant(buggy) == "2025-11-03T13:00:00Z" != format_instant(resolved.instant)


def test_case_021ab_calendar_body_and_sms() -> None:
    # (b) Cal.com style: the instant plus the attendee's zone; (a) resolves to the same instant.
    start = format_instant(resolve_local("2025-11-03", "09:00", NY).instant)
    assert start == "2025-11-03T14:00:00Z"
    data = timed(start, "2025-11-03T15:00:00Z")
    body = body_for(data, NY)
    assert body["start"] == {"dateTime": "2025-11-03T09:00:00-05:00", "timeZone": NY}
    assert body["end"] == {"dateTime": "2025-11-03T10:00:00-05:00", "timeZone": NY}
    assert sms_when(data, NY) == "Mon Nov 3, 9:00 AM EST"


def test_case_021c_ambiguous_time_is_the_first_occurrence() -> None:
    resolved = resolve_local("2025-11-02", "01:30", NY)
    assert resolved.ambiguous is True
    assert format_instant(resolved.instant) == "2025-11-02T05:30:00Z"
    assert in_zone(resolved.instant, NY).isoformat() == "2025-11-02T01:30:00-04:00"
    second = dt.datetime(2025, 11, 2, 1, 30, fold=1, tzinfo=in_zone(resolved.instant, NY).tzinfo)
    assert format_instant(second) == "2025-11-02T06:30:00Z"  # the occurrence the policy does not pick
    body = body_for({**timed("2025-11-02T05:30:00Z", "2025-11-02T06:00:00Z"), "ambiguous_local_time": True}, NY)
    assert body["extendedProperties"]["private"]["hookbus_ambiguous_local_time"] == "true"  # type: ignore[index]


def test_case_021d_nonexistent_time_is_rejected_not_shifted() -> None:
    with pytest.raises(NonexistentLocalTime, match="does not exist"):
        resolve_local("2026-03-08", "02:30", NY)
    # What zoneinfo alone would have done silently: 02:30-05:00 = 07:30Z = 03:30 EDT.
    naive = dt.datetime(2026, 3, 8, 2, 30, tzinfo=in_zone(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), NY).tzinfo)
    assert format_instant(naive) == "2026-03-08T07:30:00Z"


def test_case_021e_fractional_rfc3339() -> None:
    assert format_instant(parse_instant("2026-01-05T14:00:00.000000Z")) == "2026-01-05T14:00:00Z"
    assert format_instant(parse_instant("2026-01-05T14:00:00.123456789Z")) == "2026-01-05T14:00:00.123456Z"
    assert format_instant(parse_instant("2026-01-05T09:00:00-05:00")) == "2026-01-05T14:00:00Z"
    for bad in ("2026-01-05T14:00:00", "2026-01-05", "yesterday", "2026-13-05T14:00:00Z"):
        with pytest.raises(ValueError):
            parse_instant(bad)


def test_resolution_ignores_today(monkeypatch: pytest.MonkeyPatch) -> None:
    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Frozen:  # 2025-10-20T12:00Z, in EDT
            return cls(2025, 10, 20, 12, 0, tzinfo=dt.UTC)

    monkeypatch.setattr(dt, "datetime", Frozen)
    assert format_instant(resolve_local("2025-11-03", "09:00", NY).instant) == "2025-11-03T14:00:00Z"


def test_unknown_zone() -> None:
    with pytest.raises(UnknownTimeZone):
        resolve_local("2026-01-01", "09:00", "Mars/Olympus_Mons")
    with pytest.raises(UnknownTimeZone):
        resolve_local("2026-01-01", "09:00", "../etc/passwd")


# ------------------------------------------------------------------ the DST case: Berlin staff, NY invitee
def test_berlin_booking_on_the_day_dst_ends_for_a_new_york_invitee() -> None:
    # 09:00 Europe/Berlin on Sunday 2026-10-25, the day CEST ends (03:00 CEST → 02:00 CET): +01:00.
    start = resolve_local("2026-10-25", "09:00", "Europe/Berlin").instant
    assert format_instant(start) == "2026-10-25T08:00:00Z"
    data = timed("2026-10-25T08:00:00Z", "2026-10-25T08:30:00Z", NY)
    body = body_for(data, "Europe/Berlin")
    assert body["start"] == {"dateTime": "2026-10-25T09:00:00+01:00", "timeZone": "Europe/Berlin"}
    assert body["end"] == {"dateTime": "2026-10-25T09:30:00+01:00", "timeZone": "Europe/Berlin"}
    # New York is still on EDT until 2026-11-01: the customer reads 4:00 AM.
    assert sms_when(data, "Europe/Berlin") == "Sun Oct 25, 4:00 AM EDT"
    # The day before, Berlin is on CEST (+02:00): the same wall time is another instant.
    assert format_instant(resolve_local("2026-10-24", "09:00", "Europe/Berlin").instant) == "2026-10-24T07:00:00Z"
    # A week later New York has changed too: 09:00 Berlin = 08:00Z = 3:00 AM EST.
    later = timed("2026-11-01T08:00:00Z", "2026-11-01T08:30:00Z", NY)
    assert sms_when(later, "Europe/Berlin") == "Sun Nov 1, 3:00 AM EST"


# ----------------------------------------------------------------------------------------------------- case 022
def all_day(start: str, end_exclusive: str) -> dict[str, object]:
    return {
        "booking_id": "b1",
        "all_day": True,
        "start_date": start,
        "end_date": end_exclusive,
        "time_zone": "America/Chicago",
        "start": None,
        "end": None,
    }


def test_case_022a_one_day() -> None:
    first = dt.date(2026, 7, 4)
    end = all_day_end(first)
    assert end == dt.date(2026, 7, 5)
    data = all_day(first.isoformat(), end.isoformat())
    body = body_for(data, "America/Chicago")
    assert {"start": body["start"], "end": body["end"]} == {
        "start": {"date": "2026-07-04"},
        "end": {"date": "2026-07-05"},
    }
    assert "dateTime" not in str(body) and "timeZone" not in str(body)
    assert sms_when(data, "America/Chicago") == "Sat Jul 4 (all day)"


def test_case_022b_range_entered_inclusive() -> None:
    end = all_day_end(dt.date(2026, 7, 4), dt.date(2026, 7, 6))
    body = body_for(all_day("2026-07-04", end.isoformat()), "America/Chicago")
    assert {"start": body["start"], "end": body["end"]} == {
        "start": {"date": "2026-07-04"},
        "end": {"date": "2026-07-07"},
    }
    assert sms_when(all_day("2026-07-04", "2026-07-07"), "UTC") == "Sat Jul 4 – Mon Jul 6 (all day)"
    with pytest.raises(ValueError):
        all_day_end(dt.date(2026, 7, 4), dt.date(2026, 7, 3))


def test_case_022c_reading_back_from_google() -> None:
    days = days_covered(dt.date(2026, 7, 4), dt.date(2026, 7, 7))
    assert days == [dt.date(2026, 7, 4), dt.date(2026, 7, 5), dt.date(2026, 7, 6)]
    data = event_changed_data(
        {"id": "ev1", "status": "confirmed", "start": {"date": "2026-07-04"}, "end": {"date": "2026-07-07"}},
        "primary",
        resync=False,
    )
    assert data["all_day"] is True
    assert data["days"] == ["2026-07-04", "2026-07-05", "2026-07-06"]
    assert data["last_day"] == "2026-07-06"
    with pytest.raises(ValueError):
        days_covered(dt.date(2026, 7, 4), dt.date(2026, 7, 4))


def test_timed_event_read_back() -> None:
    data = event_changed_data(
        {
            "id": "ev2",
            "updated": "2026-10-01T10:00:00.000Z",
            "start": {"dateTime": "2026-10-25T09:00:00+01:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2026-10-25T09:30:00+01:00", "timeZone": "Europe/Berlin"},
            "extendedProperties": {"private": {"hookbus_booking": "calcom:bk_1"}},
        },
        "anna@example.com",
        resync=True,
    )
    assert (data["start"], data["end"], data["time_zone"]) == (
        "2026-10-25T08:00:00Z",
        "2026-10-25T08:30:00Z",
        "Europe/Berlin",
    )
    assert (data["booking"], data["origin"], data["resync"]) == ("calcom:bk_1", "hookbus", True)


# ----------------------------------------------------------------------------------------------------- case 023
def test_case_023_event_id() -> None:
    derived = event_id_for("calcom", "bk_3F9a-77")
    assert derived == "78d6b4302c4be4dd055dc1fe9ff1987a3c607f1807e0a0a3bd2ffb38e30589a1"
    assert re.fullmatch(r"[a-v0-9]{5,1024}", derived) and EVENT_ID.fullmatch(derived)
    for candidate in ("bk_3F9a-77", "0f8fad5b-d9cb-469f-a165-70867728950e", "ab12", "wxyz12345"):
        assert not EVENT_ID.fullmatch(candidate), candidate
    assert event_id_for("calcom", "bk_3F9a-77") == derived  # same on every retry and worker
    assert event_id_for("calendly", "bk_3F9a-77") != derived

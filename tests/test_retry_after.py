"""bus.retry_after: Retry-After as seconds or HTTP-date (RFC 9110 §10.2.3), case 032's inputs."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

import pytest

from bus.retry_after import DEFAULT_MAX_DELAY_S, parse_retry_after, retry_after_delay

# Case 032: the worker clock is frozen at 2026-10-21T07:27:30Z.
NOW = datetime(2026, 10, 21, 7, 27, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),  # 1
        ("Wed, 21 Oct 2026 07:28:00 GMT", 30.0),  # 2
        ("0.493", 0.493),  # 3 (the parser keeps the fraction; retry_after_delay rounds up)
        ("Wed, 21 Oct 2026 07:00:00 GMT", 0.0),  # 4: past → retry now
        ("soon", None),  # 5: unusable → caller's backoff
        ("99999999", 99999999.0),  # 6 (the parser keeps it; retry_after_delay caps)
        ("1.5", 1.5),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("Wednesday, 21-Oct-26 07:28:00 GMT", 30.0),  # obsolete RFC 850 form
        ("Wed Oct 21 07:28:00 2026", 30.0),  # obsolete asctime form (no zone: GMT)
        ("Wed, 21 Oct 2026 09:28:00 +0200", 30.0),  # not IMF-fixdate, but the zone is honoured
        ("", None),
        ("   ", None),
        (None, None),
        ("-5", None),
        ("-0.5", None),
        ("+5", None),
        ("1e3", None),
        ("nan", None),
        ("inf", None),
        ("12 s", None),
        ("Wed, 32 Oct 2026 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    result = parse_retry_after(value, now=NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)
        assert isinstance(result, float)


def test_naive_now_is_utc() -> None:
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now=NOW.replace(tzinfo=None)) == 30.0


def test_default_now_is_the_current_time() -> None:
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
    future = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT")
    assert future is not None and future > 10**9


def test_overflowing_digits_do_not_raise() -> None:
    assert parse_retry_after("9" * 400, now=NOW) == math.inf
    assert retry_after_delay("9" * 400, now=NOW) == DEFAULT_MAX_DELAY_S


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),  # 1
        ("Wed, 21 Oct 2026 07:28:00 GMT", 30.0),  # 2
        ("0.493", 1.0),  # 3: rounded up, never earlier than asked
        ("Wed, 21 Oct 2026 07:00:00 GMT", 0.0),  # 4
        ("soon", None),  # 5
        ("1.5", 2.0),
        ("Wed, 21 Oct 2026 07:27:30 GMT", 0.0),
    ],
)
def test_retry_after_delay(value: str, expected: float | None) -> None:
    assert retry_after_delay(value, now=NOW) == expected


def test_retry_after_delay_caps_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bus.retry_after"):
        assert retry_after_delay("99999999", now=NOW) == 3600.0  # 6
    assert any("capped" in record.getMessage() for record in caplog.records)
    assert retry_after_delay("7200", now=NOW, max_delay=60) == 60.0
    assert retry_after_delay("Thu, 22 Oct 2026 07:27:30 GMT", now=NOW) == 3600.0

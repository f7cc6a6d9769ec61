"""Times of appointments: instants, IANA time zones, local wall-clock times and all-day dates.

Every source and consumer that handles a time of day uses these helpers, so the policy is one policy
(see ``docs/bookings.md``, shared cases 021 and 022):

- **Instants are the truth.** A provider instant (``2025-11-03T14:00:00Z``) is converted to a zone with the rules of
  *that date* (:mod:`zoneinfo`, tzdata), never with the offset valid when the booking was made. Canonical events
  carry instants as RFC 3339 in UTC (:func:`format_instant`) plus the IANA zone name separately.
- **A local wall-clock time** (a form's ``date`` + ``time`` + ``tz``) is resolved by :func:`resolve_local`:

  - *ambiguous* (the hour repeated when DST ends, ``2025-11-02 01:30`` in New York): the **first** occurrence, i.e.
    the earlier instant (``fold=0``, still on summer time: ``01:30-04:00`` = ``05:30Z``), and the result says
    ``ambiguous=True`` so the event can carry ``ambiguous_local_time=true``;
  - *non-existent* (skipped when DST starts, ``2026-03-08 02:30`` in New York): **rejected** with
    :class:`NonexistentLocalTime`; never moved silently (zoneinfo alone would give ``02:30-05:00`` = 03:30 EDT).
- **All-day dates** are dates, not instants: Google Calendar's ``end.date`` is *exclusive* (RFC 5545), so a one-day
  event on July 4 ends on July 5 (:func:`all_day_end`, :func:`days_covered`).

The clock is never consulted: the result depends only on the inputs and the tz database.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "LocalTime",
    "NonexistentLocalTime",
    "UnknownTimeZone",
    "all_day_end",
    "days_covered",
    "format_instant",
    "in_zone",
    "parse_date",
    "parse_instant",
    "resolve_local",
    "zone",
]

# RFC 3339 date-time with a mandatory offset; the fraction may have any number of digits (Calendly sends 6, Cal.com
# 3, some providers 9), and is truncated to microseconds.
_INSTANT = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ](?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.(?P<frac>[0-9]+))?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?", re.ASCII)


class UnknownTimeZone(ValueError):
    """Not an IANA time zone name known to the tz database."""


class NonexistentLocalTime(ValueError):
    """A wall-clock time that does not exist in its zone (skipped by a DST change): rejected, never shifted."""


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``"Europe/Berlin"``). Raises :class:`UnknownTimeZone`."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise UnknownTimeZone(f"not an IANA time zone name: {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise UnknownTimeZone(f"unknown time zone {name!r}") from exc


def parse_instant(text: str) -> dt.datetime:
    """An aware UTC datetime from RFC 3339 text with an offset (``Z`` or ``±hh:mm``); fractions of any length are
    accepted (truncated to microseconds). Raises ``ValueError`` for anything else, including a missing offset."""
    if not isinstance(text, str):
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    match = _INSTANT.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 time with offset: {text!r}")
    frac = (match["frac"] or "")[:6].ljust(6, "0")
    offset = "+00:00" if match["offset"] in ("Z", "z") else match["offset"]
    moment = dt.datetime.fromisoformat(f"{match['date']}T{match['time']}.{frac}{offset}")
    return moment.astimezone(dt.UTC)


def format_instant(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with ``Z``: ``2026-01-05T14:00:00Z`` (microseconds only when not zero)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: an instant needs an offset")
    utc = moment.astimezone(dt.UTC)
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds").replace("+00:00", "Z")


def in_zone(moment: dt.datetime, name: str) -> dt.datetime:
    """``moment`` as wall-clock time in zone ``name``, with the offset valid on that date."""
    return moment.astimezone(zone(name))


def parse_date(text: str) -> dt.date:
    """A calendar date ``YYYY-MM-DD``. Raises ``ValueError``."""
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        raise ValueError(f"not a date (YYYY-MM-DD): {text!r}")
    return dt.date.fromisoformat(text)


def _parse_clock(text: str) -> dt.time:
    match = _CLOCK.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"not a time of day (HH:MM[:SS]): {text!r}")
    return dt.time(int(match[1]), int(match[2]), int(match[3] or 0))


@dataclass(frozen=True, slots=True)
class LocalTime:
    """A resolved wall-clock time: ``instant`` (aware, UTC) and whether the wall time occurred twice."""

    instant: dt.datetime
    ambiguous: bool = False


def resolve_local(day: dt.date | str, clock: dt.time | str, tz: str) -> LocalTime:
    """The instant of wall-clock ``day`` ``clock`` in zone ``tz`` on that date (see the module policy).

    ``resolve_local("2025-11-03", "09:00", "America/New_York")`` → ``2025-11-03T14:00:00Z`` (EST, −05:00) whatever
    the date today. Ambiguous → the first occurrence and ``ambiguous=True``; non-existent →
    :class:`NonexistentLocalTime`; unknown zone → :class:`UnknownTimeZone`; malformed → ``ValueError``.
    """
    tzinfo = zone(tz)
    date = parse_date(day) if isinstance(day, str) else day
    time = _parse_clock(clock) if isinstance(clock, str) else clock
    naive = dt.datetime.combine(date, time)
    first = naive.replace(tzinfo=tzinfo, fold=0)
    second = naive.replace(tzinfo=tzinfo, fold=1)
    # A wall time that does not survive a round trip through UTC was skipped by a DST change.
    if first.astimezone(dt.UTC).astimezone(tzinfo).replace(tzinfo=None) != naive:
        raise NonexistentLocalTime(f"{date.isoformat()} {time.isoformat()} does not exist in {tz} (DST gap)")
    ambiguous = first.utcoffset() != second.utcoffset()
    return LocalTime(instant=first.astimezone(dt.UTC), ambiguous=ambiguous)


def all_day_end(first_day: dt.date, last_day: dt.date | None = None) -> dt.date:
    """The *exclusive* end date of an all-day span from ``first_day`` to ``last_day`` inclusive (default: one day).

    ``all_day_end(July 4)`` → July 5; ``all_day_end(July 4, July 6)`` → July 7. Raises ``ValueError`` if
    ``last_day`` is before ``first_day``.
    """
    last = first_day if last_day is None else last_day
    if last < first_day:
        raise ValueError(f"last day {last} is before the first day {first_day}")
    return last + dt.timedelta(days=1)


def days_covered(start: dt.date, end_exclusive: dt.date) -> list[dt.date]:
    """The dates of an all-day span read back from a calendar (``end`` exclusive): July 4 → July 7 gives
    [July 4, July 5, July 6]. Raises ``ValueError`` for an empty or inverted span."""
    if end_exclusive <= start:
        raise ValueError(f"all-day span {start}..{end_exclusive} is empty (the end date is exclusive)")
    return [start + dt.timedelta(days=n) for n in range((end_exclusive - start).days)]

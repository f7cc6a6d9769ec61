"""Parse an HTTP ``Retry-After`` header into a delay in seconds.

RFC 9110 §10.2.3 (https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3)::

    Retry-After = HTTP-date / delay-seconds        e.g. "120"  or  "Wed, 21 Oct 2026 07:28:00 GMT"

Every downstream client turns a 429/503 ``Retry-After`` into ``RetryLater(delay=...)`` with these helpers, so a
header the server got slightly wrong never crashes a worker (``int("Wed, 21 Oct …")`` raises ``ValueError``):

- :func:`parse_retry_after` reads the header as the server meant it: seconds (a float ≥ 0) or ``None`` when the
  header is absent or unusable, so the caller falls back to its own exponential backoff.
- :func:`retry_after_delay` is what a worker waits: the parsed value rounded *up* to whole seconds (never retry
  earlier than asked) and capped at a maximum (a warning is logged when the cap applies).

See case 032 (``/work/shared/cases/032-retry-after-http-date.md``) for the inputs this module is tested against.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["DEFAULT_MAX_DELAY_S", "parse_retry_after", "retry_after_delay"]

log = logging.getLogger(__name__)

#: Default cap, in seconds, applied by :func:`retry_after_delay` (one hour).
DEFAULT_MAX_DELAY_S = 3600.0

# delay-seconds is 1*DIGIT; a fraction ("0.493", seen in the wild) is accepted too. No sign, no exponent, no "nan".
_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or ``None`` if there is nothing usable.

    - ``"120"`` → ``120.0``; ``"1.5"`` → ``1.5`` (fractions are not in RFC 9110 but some servers send them).
    - An HTTP-date (IMF-fixdate, or the obsolete RFC 850 / asctime forms) → seconds from ``now`` until that date,
      ``0.0`` if the date is already past. A date without a zone is taken as GMT, as RFC 9110 requires.
    - ``None``, ``""``, ``"soon"``, ``"-5"``, ``"1e3"``, an impossible date → ``None``.

    ``now`` is an aware datetime (a naive one is taken as UTC); default: the current time. The result is a finite
    float ≥ 0, except that an absurdly long digit string can give ``math.inf``: use :func:`retry_after_delay` to
    get a capped value.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after_delay(
    value: str | None, *, now: datetime | None = None, max_delay: float = DEFAULT_MAX_DELAY_S
) -> float | None:
    """The delay (whole seconds, as a float) a worker should wait for this ``Retry-After``, or ``None``.

    :func:`parse_retry_after`, then rounded up (``"0.493"`` → ``1.0``) and capped at ``max_delay`` seconds with a
    warning (``"99999999"`` → ``3600.0``). ``None`` means "no usable header": use the exponential backoff.
    """
    seconds = parse_retry_after(value, now=now)
    if seconds is None:
        return None
    if seconds > max_delay:
        log.warning(
            "Retry-After %.0f s exceeds the maximum delay; capped at %.0f s",
            seconds,
            max_delay,
            extra={"retry_after": value, "max_delay_s": max_delay},
        )
        return float(max_delay)
    return float(math.ceil(seconds)) if math.isfinite(seconds) else seconds

"""Calendar: bookings become Google Calendar events on the staff member's calendar, and the customer gets an SMS.

Handlers (consumer group ``calendar``):

- ``booking.created`` → two steps, each recorded once per *booking* (``bus.steps.once`` under a key derived from the
  booking), so a retry resumes after the last completed step and a failed SMS never recreates the event:

  1. ``events.insert`` on the staff member's calendar with a client-chosen id, :func:`event_id_for` the booking
     (case 023). A ``409`` means an earlier attempt created it: the event is read back; ``confirmed``/``tentative``
     is success; ``cancelled`` (deleted in the Calendar UI, its id stays taken) is dead-lettered with reason
     ``gcal_id_tombstoned`` rather than inserted again under another id.
  2. a confirmation SMS through Twilio (which cannot deduplicate), if the rules say this event type notifies.

- ``booking.rescheduled`` → ``events.patch`` with the new times (and ``status: confirmed``), then a "moved" SMS.
- ``booking.cancelled`` → ``events.delete``, then a cancellation SMS.
- ``booking.reschedule_requested`` (the host asked the invitee for a new time, case 017) → the event is kept but
  patched to ``tentative`` and annotated; no SMS.

Out of order (shared cases 016, 017):

- A cancellation for a booking not created yet writes a **tombstone** (``{prefix}:state:calendar:booking:<source>:
  <id>``, status ``cancelled``, kept 400 days) and is acked; the late ``booking.created`` finds it and creates
  nothing, sends nothing (logged ``skipped_cancelled_before_created``).
- A reschedule (or reschedule request) for a booking not created yet raises ``NotReady``: retried shortly, and
  dead-lettered after the last attempt if the booking never arrives.
- A reschedule older than one already applied is ignored (``ctx.is_current``); a cancelled booking stays cancelled.
- All handlers of one booking run under a per-booking lock, so a cancellation processed at the same moment as its
  creation cannot leave an event behind.

Times (see ``docs/bookings.md`` and :mod:`bus.localtime`): the event's ``start``/``end`` are the booking's instants
written as ``dateTime`` in the calendar's zone with the offset of *that date*, plus ``timeZone``; the zone is the
staff member's (rules, else the booking page's organizer zone), else the invitee's, else ``default_time_zone``.
All-day bookings use ``date`` with an exclusive end. The SMS shows the time in the invitee's zone
(``Mon Nov 3, 9:00 AM EST``; all day: ``Sat Jul 4 (all day)``).

Settings (environment, ``*_FILE`` for secrets): ``GOOGLE_CALENDAR_BASE_URL``, ``GOOGLE_CALENDAR_ACCESS_TOKEN`` or
``GOOGLE_CALENDAR_REFRESH_TOKEN`` + ``GOOGLE_CALENDAR_CLIENT_ID`` + ``GOOGLE_CALENDAR_CLIENT_SECRET``,
``TWILIO_BASE_URL``, ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ``TWILIO_FROM_NUMBER`` or
``TWILIO_MESSAGING_SERVICE_SID``. Rules (staff → calendar, which event types notify, message texts): the
``[calendar]`` section of the rules file, :class:`CalendarRules`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bus import Consumer, Context, Event
from bus.config import BusSettings
from bus.consumer import Lifespan, Resources
from bus.errors import ConfigError, NotReady, PermanentError
from bus.localtime import UnknownTimeZone, in_zone, parse_date, parse_instant, zone
from bus.locks import held
from bus.rules import section
from bus.steps import once

from .clients.google_calendar import EventAlreadyExists, GoogleCalendarClient, event_id_for, google_tokens
from .clients.twilio import TwilioClient

__all__ = [
    "BOOKING_TTL_S",
    "CalendarRules",
    "CalendarSettings",
    "consumer",
    "event_body",
    "make_lifespan",
    "sms_when",
]

log = logging.getLogger("hookbus.calendar")
T = TypeVar("T")

#: How long (seconds) a booking's record — including a cancellation tombstone — is kept: 400 days.
BOOKING_TTL_S = 400 * 24 * 3600
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEMPLATE_FIELDS = frozenset(
    {"first_name", "name", "event_type", "staff_name", "when", "location", "booking_id", "summary"}
)


# ------------------------------------------------------------------------------------------------------- settings
class CalendarSettings(BusSettings):
    google_calendar_base_url: str = "https://www.googleapis.com"
    google_calendar_access_token: str = ""
    google_calendar_refresh_token: str = ""
    google_calendar_client_id: str = ""
    google_calendar_client_secret: str = ""
    google_oauth_token_url: str = "https://oauth2.googleapis.com/token"
    google_calendar_timeout_s: float = 10.0
    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_api_key_sid: str = ""
    twilio_from_number: str = ""
    twilio_messaging_service_sid: str = ""
    twilio_timeout_s: float = 10.0


def google_client(
    config: CalendarSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    limiter: Any = None,
    resources: Resources | None = None,
) -> GoogleCalendarClient:
    """The Google Calendar client the settings describe. Raises :class:`ConfigError` without credentials.

    With a refresh token and the worker's ``resources``, the token set is shared by every process in Redis under
    ``{prefix}:state:calendar:oauth:google_calendar`` (the ``calendar`` and ``calendar_sync`` consumers use the same
    grant, so the same key); without ``resources`` it stays in this process."""
    tokens = None
    if config.google_calendar_refresh_token and resources is not None:
        if not (config.google_calendar_client_id and config.google_calendar_client_secret):
            raise ConfigError(
                "GOOGLE_CALENDAR_REFRESH_TOKEN needs GOOGLE_CALENDAR_CLIENT_ID and GOOGLE_CALENDAR_CLIENT_SECRET"
            )
        tokens = google_tokens(
            client_id=config.google_calendar_client_id,
            client_secret=config.google_calendar_client_secret,
            refresh_token=config.google_calendar_refresh_token,
            token_url=config.google_oauth_token_url,
            redis=resources.redis,
            key=resources.names.state("calendar", "oauth:google_calendar"),
            timeout_s=config.google_calendar_timeout_s,
            transport=transport,
        )
    try:
        return GoogleCalendarClient(
            base_url=config.google_calendar_base_url,
            access_token=config.google_calendar_access_token,
            refresh_token=config.google_calendar_refresh_token,
            client_id=config.google_calendar_client_id,
            client_secret=config.google_calendar_client_secret,
            token_url=config.google_oauth_token_url,
            tokens=tokens,
            timeout_s=config.google_calendar_timeout_s,
            transport=transport,
            limiter=limiter,
        )
    except ValueError as exc:
        raise ConfigError(
            "Google Calendar: set GOOGLE_CALENDAR_ACCESS_TOKEN, or GOOGLE_CALENDAR_REFRESH_TOKEN with "
            "GOOGLE_CALENDAR_CLIENT_ID and GOOGLE_CALENDAR_CLIENT_SECRET"
        ) from exc


# ---------------------------------------------------------------------------------------------------------- rules
def _check_zone(value: str | None) -> str | None:
    if value is not None:
        try:
            zone(value)
        except UnknownTimeZone as exc:
            raise ValueError(str(exc)) from None
    return value


class StaffRule(BaseModel):
    """One staff member (keyed by e-mail in ``[calendar.staff."anna@example.com"]``)."""

    model_config = ConfigDict(extra="forbid")

    calendar_id: str = Field(min_length=1)
    time_zone: str | None = None
    name: str | None = None

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _check_zone(value)


class SmsRules(BaseModel):
    """Which bookings notify: ``event_types`` (the booking page's event type names; ``"*"`` = all, ``[]`` = none)
    and on which changes (``send_on``)."""

    model_config = ConfigDict(extra="forbid")

    event_types: list[str] = Field(default_factory=lambda: ["*"])
    send_on: list[Literal["created", "rescheduled", "cancelled"]] = Field(
        default_factory=lambda: ["created", "rescheduled", "cancelled"]
    )

    def notifies(self, kind: str, event_type: str | None) -> bool:
        if kind not in self.send_on:
            return False
        wanted = {t.casefold() for t in self.event_types}
        return "*" in wanted or (event_type or "").casefold() in wanted


class Templates(BaseModel):
    """Message texts (Python ``str.format`` fields: ``{first_name}``, ``{name}``, ``{event_type}``,
    ``{staff_name}``, ``{when}``, ``{location}``, ``{booking_id}``) and the calendar event's title (``summary``)."""

    model_config = ConfigDict(extra="forbid")

    confirmation: str = "Hi {first_name}, your {event_type} with {staff_name} is confirmed for {when}."
    rescheduled: str = "Hi {first_name}, your {event_type} with {staff_name} has moved to {when}."
    cancellation: str = "Hi {first_name}, your {event_type} with {staff_name} on {when} has been cancelled."
    summary: str = "{event_type}: {name}"

    @field_validator("confirmation", "rescheduled", "cancellation", "summary")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        for _, name, _, _ in string.Formatter().parse(value):
            if name is not None and name not in _TEMPLATE_FIELDS:
                raise ValueError(f"unknown field {{{name}}}; known: {', '.join(sorted(_TEMPLATE_FIELDS))}")
        return value


class CalendarRules(BaseModel):
    """The ``[calendar]`` section of the rules file (see ``deploy/hookbus.example.toml``)."""

    model_config = ConfigDict(extra="forbid")

    default_calendar_id: str | None = None
    default_time_zone: str = "UTC"
    staff: dict[str, StaffRule] = Field(default_factory=dict)
    sms: SmsRules = Field(default_factory=SmsRules)
    templates: Templates = Field(default_factory=Templates)

    @field_validator("default_time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value) or "UTC"

    @field_validator("staff")
    @classmethod
    def _lower_keys(cls, value: dict[str, StaffRule]) -> dict[str, StaffRule]:
        return {key.strip().lower(): rule for key, rule in value.items()}

    def target(self, data: Mapping[str, Any]) -> tuple[str, str, str | None]:
        """``(calendar id, calendar zone, staff display name)`` for a booking. Raises PermanentError."""
        staff = data.get("staff") or {}
        email = (staff.get("email") or "").lower()
        rule = self.staff.get(email)
        calendar_id = rule.calendar_id if rule else self.default_calendar_id
        if not calendar_id:
            raise PermanentError(f"no_calendar_for_staff: {email or 'no staff member'} (rules [calendar.staff])")
        zone_name = (
            (rule.time_zone if rule else None)
            or _valid_zone(staff.get("time_zone"))
            or _valid_zone(data.get("time_zone"))
            or self.default_time_zone
        )
        return calendar_id, zone_name, (rule.name if rule else None) or staff.get("name")


def _valid_zone(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        zone(name)
    except UnknownTimeZone:
        return None
    return name


# ---------------------------------------------------------------------------------------------------- formatting
def sms_when(data: Mapping[str, Any], fallback_zone: str) -> str:
    """The booking's time for a message, in the invitee's zone: ``Mon Nov 3, 9:00 AM EST``;
    all day: ``Sat Jul 4 (all day)``, several days: ``Sat Jul 4 – Mon Jul 6 (all day)``."""
    if data.get("all_day"):
        first = parse_date(data["start_date"])
        last = parse_date(data["end_date"]) - dt.timedelta(days=1)
        text = _day(first) if last <= first else f"{_day(first)} – {_day(last)}"
        return f"{text} (all day)"
    local = in_zone(parse_instant(data["start"]), _valid_zone(data.get("time_zone")) or fallback_zone)
    hour = local.hour % 12 or 12
    return f"{_day(local)}, {hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'} {local.tzname()}"


def _day(day: dt.date) -> str:
    return f"{_DAYS[day.weekday()]} {_MONTHS[day.month - 1]} {day.day}"


def _fields(data: Mapping[str, Any], rules: CalendarRules, staff_name: str | None, zone_name: str) -> dict[str, str]:
    invitee = data.get("invitee") or {}
    name = invitee.get("name") or invitee.get("email") or "there"
    return {
        "first_name": name.split()[0] if invitee.get("name") else name,
        "name": name,
        "event_type": data.get("event_type") or "appointment",
        "staff_name": staff_name or "us",
        "when": sms_when(data, zone_name) if data.get("start") or data.get("all_day") else "the booked time",
        "location": data.get("location") or "",
        "booking_id": str(data.get("booking_id") or ""),
        "summary": "",
    }


def _times(data: Mapping[str, Any], zone_name: str) -> dict[str, Any]:
    """``{"start": {...}, "end": {...}}`` for Google: ``date`` (exclusive end) or ``dateTime`` + ``timeZone``."""
    if data.get("all_day"):
        start_date, end_date = parse_date(data["start_date"]), parse_date(data["end_date"])
        if end_date <= start_date:
            raise PermanentError(f"booking_invalid_all_day_range: {start_date}..{end_date} (end is exclusive)")
        return {"start": {"date": start_date.isoformat()}, "end": {"date": end_date.isoformat()}}
    if not data.get("start") or not data.get("end"):
        raise PermanentError("booking_without_times: the booking has no start or end time")
    start, end = parse_instant(data["start"]), parse_instant(data["end"])
    if end <= start:
        raise PermanentError(f"booking_empty_time_range: {data['start']}..{data['end']}")
    return {
        "start": {"dateTime": in_zone(start, zone_name).isoformat(timespec="seconds"), "timeZone": zone_name},
        "end": {"dateTime": in_zone(end, zone_name).isoformat(timespec="seconds"), "timeZone": zone_name},
    }


def event_body(
    data: Mapping[str, Any], *, source: str, booking_key: str, rules: CalendarRules, zone_name: str, staff: str | None
) -> dict[str, Any]:
    """The ``events.insert`` body for a booking (without ``id``)."""
    fields = _fields(data, rules, staff, zone_name)
    invitee = data.get("invitee") or {}
    lines = [
        f"Booked through {source} ({data.get('event_type') or 'booking'}).",
        f"Customer: {invitee.get('name') or '-'}, {invitee.get('email') or '-'}, {invitee.get('phone') or '-'}",
    ]
    if data.get("time_zone") and not data.get("all_day"):
        lines.append(f"Customer's time: {sms_when(data, zone_name)} ({data['time_zone']})")
    if data.get("location"):
        lines.append(f"Location: {data['location']}")
    private = {"hookbus_booking": booking_key}
    if data.get("ambiguous_local_time"):
        private["hookbus_ambiguous_local_time"] = "true"
    body: dict[str, Any] = {
        "summary": rules.templates.summary.format(**fields),
        "description": "\n".join(lines),
        **_times(data, zone_name),
        "status": "confirmed",
        "extendedProperties": {"private": private},
    }
    if data.get("location"):
        body["location"] = data["location"]
    return body


# ---------------------------------------------------------------------------------------------------- lifespan
def make_lifespan(
    settings: CalendarSettings | None = None,
    rules: CalendarRules | None = None,
    *,
    google_transport: httpx.AsyncBaseTransport | None = None,
    twilio_transport: httpx.AsyncBaseTransport | None = None,
) -> Lifespan:
    """Settings (default: environment), rules (default: the rules file) and one client per API per process.
    The transports replace the network in tests (``httpx.ASGITransport`` to the sandboxes)."""

    @contextlib.asynccontextmanager
    async def lifespan(resources: Resources) -> AsyncIterator[Mapping[str, Any]]:
        config = settings or CalendarSettings()
        chosen_rules = rules or section("calendar", CalendarRules)
        twilio: TwilioClient | None = None
        if config.twilio_account_sid:
            twilio = TwilioClient(
                account_sid=config.twilio_account_sid,
                auth_token=config.twilio_auth_token,
                api_key_sid=config.twilio_api_key_sid,
                from_number=config.twilio_from_number,
                messaging_service_sid=config.twilio_messaging_service_sid,
                base_url=config.twilio_base_url,
                timeout_s=config.twilio_timeout_s,
                transport=twilio_transport,
                limiter=resources.limiter,
            )
        else:
            log.warning("TWILIO_ACCOUNT_SID is not set: no SMS will be sent")
        async with contextlib.AsyncExitStack() as stack:
            gcal = await stack.enter_async_context(
                google_client(config, transport=google_transport, limiter=resources.limiter, resources=resources)
            )
            if twilio is not None:
                await stack.enter_async_context(twilio)
            yield {"settings": config, "rules": chosen_rules, "gcal": gcal, "twilio": twilio}

    return lifespan


consumer = Consumer("calendar", lifespan=make_lifespan())


# ------------------------------------------------------------------------------------------------ bookkeeping
def _booking_of(event: Event) -> tuple[str, str]:
    booking = event.data.get("booking_id") or event.subject
    if not booking:
        raise PermanentError("booking_without_id")
    return event.source, str(booking)


async def _root(ctx: Context, source: str, booking: str) -> str:
    """The booking id the calendar event was created for (a rescheduled booking's new id points back to it)."""
    alias = await ctx.redis.get(ctx.names.state(ctx.group, f"booking_alias:{source}:{booking}"))
    return alias.decode() if alias else booking


def _record_key(ctx: Context, source: str, root: str) -> str:
    return ctx.names.state(ctx.group, f"booking:{source}:{root}")


async def _load(ctx: Context, source: str, root: str) -> dict[str, Any] | None:
    raw = await ctx.redis.get(_record_key(ctx, source, root))
    return orjson.loads(raw) if raw else None


async def _save(ctx: Context, source: str, root: str, record: Mapping[str, Any]) -> None:
    await ctx.redis.set(_record_key(ctx, source, root), orjson.dumps(dict(record)), ex=BOOKING_TTL_S)


async def _step(ctx: Context, source: str, root: str, step: str, action: Callable[[], Awaitable[T]]) -> T:
    """Run ``action`` once per booking (not per event): a retry, or another event of the same booking, gets the
    recorded result."""
    key = ctx.names.step(ctx.group, ctx.key_for("booking", source, root), step)
    return await once(ctx.redis, key, action, ttl_s=BOOKING_TTL_S)


@contextlib.asynccontextmanager
async def _locked(ctx: Context, source: str, root: str) -> AsyncIterator[None]:
    async with held(ctx.redis, ctx.names.state(ctx.group, f"lock:booking:{source}:{root}"), ttl_ms=60_000):
        yield


async def _sms(ctx: Context, kind: str, data: Mapping[str, Any], zone_name: str, staff: str | None) -> str | None:
    """Send the ``kind`` message (confirmation, rescheduled, cancellation) if the rules want it; its Twilio sid."""
    rules: CalendarRules = ctx.state["rules"]
    rule_kind = {"confirmation": "created", "rescheduled": "rescheduled", "cancellation": "cancelled"}[kind]
    if not rules.sms.notifies(rule_kind, data.get("event_type")):
        ctx.log.info("no sms by the rules", extra={"outcome": "sms_skipped", "why": "rules", "sms": kind})
        return None
    phone = (data.get("invitee") or {}).get("phone")
    if not phone:
        ctx.log.info("no sms: no phone number", extra={"outcome": "sms_skipped", "why": "no_phone", "sms": kind})
        return None
    twilio: TwilioClient | None = ctx.state.get("twilio")
    if twilio is None:
        ctx.log.warning("no sms: Twilio is not configured", extra={"outcome": "sms_skipped", "sms": kind})
        return None
    text = getattr(rules.templates, kind).format(**_fields(data, rules, staff, zone_name))
    message = await twilio.send_sms(phone, text)
    return str(message.get("sid") or "")


def _note(ctx: Context, **facts: object) -> None:
    note = getattr(ctx, "note", None)
    if callable(note):
        note(**facts)


# --------------------------------------------------------------------------------------------------- handlers
@consumer.handler("booking.created")
async def create_event(event: Event, ctx: Context) -> None:
    """Insert the calendar event (client-chosen id), then send the confirmation SMS; each step once per booking."""
    source, booking = _booking_of(event)
    root = await _root(ctx, source, booking)
    rules: CalendarRules = ctx.state["rules"]
    gcal: GoogleCalendarClient = ctx.state["gcal"]
    async with _locked(ctx, source, root):
        record = await _load(ctx, source, root)
        if record is not None and record.get("status") == "cancelled":
            why = "skipped_cancelled_before_created" if not record.get("event_id") else "skipped_already_cancelled"
            ctx.log.info("booking already cancelled; nothing created", extra={"outcome": why, "booking": booking})
            _note(ctx, calendar=why)
            return
        if not await ctx.is_current(f"booking:{source}:{root}", event.time):
            ctx.log.info("a newer change of this booking was applied", extra={"outcome": "stale"})
            return
        data = event.data
        calendar_id, zone_name, staff = rules.target(data)
        event_id = event_id_for(source, root)
        body = {
            "id": event_id,
            **event_body(
                data, source=source, booking_key=f"{source}:{root}", rules=rules, zone_name=zone_name, staff=staff
            ),
        }

        async def insert() -> dict[str, str]:
            try:
                created = await gcal.insert_event(calendar_id, body)
            except EventAlreadyExists:
                # An earlier attempt created it (its answer was lost) — or a person deleted it in the Calendar UI,
                # and the id stays taken: inserting again under another id would make a duplicate.
                existing = await gcal.get_event(calendar_id, event_id)
                status = (existing or {}).get("status")
                if status not in ("confirmed", "tentative"):
                    raise PermanentError(
                        f"gcal_id_tombstoned: event {event_id} in {calendar_id} exists with status {status!r}"
                    ) from None
                ctx.log.info("calendar event existed already", extra={"outcome": "already_created"})
                return {"calendar_id": calendar_id, "event_id": event_id, "html_link": existing.get("htmlLink", "")}
            return {"calendar_id": calendar_id, "event_id": event_id, "html_link": created.get("htmlLink", "")}

        created = await _step(ctx, source, root, "calendar:insert", insert)
        if record is None:
            record = {
                "status": "active",
                "calendar_id": created["calendar_id"],
                "event_id": created["event_id"],
                "zone": zone_name,
                "staff": staff,
                "data": dict(data),
            }
            await _save(ctx, source, root, record)
        _note(ctx, gcal_event=created["event_id"], calendar=created["calendar_id"])
        sid = await _step(
            ctx, source, root, "sms:confirmation", lambda: _sms(ctx, "confirmation", data, zone_name, staff)
        )
        if sid:
            _note(ctx, sms=sid)
    ctx.log.info("booking on the calendar", extra={"downstream_id": created["event_id"], "sms_sid": sid})


@consumer.handler("booking.rescheduled")
async def reschedule_event(event: Event, ctx: Context) -> None:
    """Patch the event to the new times, then send the "moved" SMS (once per booking and new time)."""
    source, booking = _booking_of(event)
    root = await _root(ctx, source, booking)
    data = event.data
    gcal: GoogleCalendarClient = ctx.state["gcal"]
    rules: CalendarRules = ctx.state["rules"]
    async with _locked(ctx, source, root):
        record = await _load(ctx, source, root)
        if record is None:
            raise NotReady(f"booking {source}:{booking} is not on the calendar yet")
        new_id = data.get("new_booking_id")
        if new_id:
            alias = ctx.names.state(ctx.group, f"booking_alias:{source}:{new_id}")
            await ctx.redis.set(alias, root, ex=BOOKING_TTL_S)
        if record.get("status") == "cancelled":
            ctx.log.info("booking cancelled; reschedule ignored", extra={"outcome": "skipped_cancelled"})
            return
        if not await ctx.is_current(f"booking:{source}:{root}", event.time):
            ctx.log.info("a newer change of this booking was applied", extra={"outcome": "stale"})
            return
        merged = {**record["data"], **{k: v for k, v in data.items() if v is not None}}
        zone_name, staff = record["zone"], record.get("staff")
        body = event_body(
            merged, source=source, booking_key=f"{source}:{root}", rules=rules, zone_name=zone_name, staff=staff
        )
        await gcal.patch_event(record["calendar_id"], record["event_id"], body)
        await _save(ctx, source, root, {**record, "status": "active", "data": merged})
        step = f"sms:rescheduled:{new_id or merged.get('start') or merged.get('start_date')}"
        sid = await _step(ctx, source, root, step, lambda: _sms(ctx, "rescheduled", merged, zone_name, staff))
    _note(ctx, gcal_event=record["event_id"], sms=sid or "")


@consumer.handler("booking.cancelled")
async def cancel_event(event: Event, ctx: Context) -> None:
    """Delete the event and send the cancellation SMS; for an unknown booking, write a tombstone (case 017)."""
    source, booking = _booking_of(event)
    root = await _root(ctx, source, booking)
    gcal: GoogleCalendarClient = ctx.state["gcal"]
    async with _locked(ctx, source, root):
        record = await _load(ctx, source, root)
        if record is None:
            await _save(ctx, source, root, {"status": "cancelled", "event_id": None, "cancelled_at": event.time})
            ctx.log.info("cancelled before created: tombstone", extra={"outcome": "tombstoned", "booking": booking})
            _note(ctx, calendar="tombstone")
            return
        if record.get("status") == "cancelled":
            ctx.log.info("booking already cancelled", extra={"outcome": "already_done"})
            return
        await gcal.delete_event(record["calendar_id"], record["event_id"])
        await _save(ctx, source, root, {**record, "status": "cancelled", "cancelled_at": event.time})
        data = {**record["data"], **{k: v for k, v in event.data.items() if v is not None}}
        data["start"], data["end"] = record["data"].get("start"), record["data"].get("end")  # the time that was booked
        sid = await _step(
            ctx,
            source,
            root,
            "sms:cancellation",
            lambda: _sms(ctx, "cancellation", data, record["zone"], record.get("staff")),
        )
    _note(ctx, gcal_event=record["event_id"], sms=sid or "")


@consumer.handler("booking.reschedule_requested")
async def mark_reschedule_requested(event: Event, ctx: Context) -> None:
    """Keep the event, mark it tentative and say why; no SMS (case 017: not a cancellation)."""
    source, booking = _booking_of(event)
    root = await _root(ctx, source, booking)
    gcal: GoogleCalendarClient = ctx.state["gcal"]
    async with _locked(ctx, source, root):
        record = await _load(ctx, source, root)
        if record is None:
            raise NotReady(f"booking {source}:{booking} is not on the calendar yet")
        if record.get("status") == "cancelled":
            return
        if not await ctx.is_current(f"booking:{source}:{root}", event.time):
            return
        reason = event.data.get("reason")
        rules: CalendarRules = ctx.state["rules"]
        fields = _fields(record["data"], rules, record.get("staff"), record["zone"])
        body = {
            "status": "tentative",
            "summary": f"[Reschedule requested] {rules.templates.summary.format(**fields)}",
            "description": "The host asked the customer to pick a new time"
            + (f": {reason}" if reason else ".")
            + "\n\n"
            + event_body(
                record["data"],
                source=source,
                booking_key=f"{source}:{root}",
                rules=rules,
                zone_name=record["zone"],
                staff=record.get("staff"),
            )["description"],
        }
        await gcal.patch_event(record["calendar_id"], record["event_id"], body)
        await _save(ctx, source, root, {**record, "status": "reschedule_requested"})
    _note(ctx, gcal_event=record["event_id"], calendar="tentative")

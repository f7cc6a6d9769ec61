"""``hookbus dlq …`` and ``hookbus replay``: inspect, replay and purge dead letters; re-deliver history."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
import orjson
import redis.asyncio as aioredis

from . import dlq as ops
from .config import BusSettings
from .connection import REDIS_DOWN, connect
from .naming import Names

T = TypeVar("T")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``30s``, ``15m``, ``12h``, ``7d``, ``2w`` → seconds. Raises click.BadParameter."""
    match = _DURATION.match(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 15m, 12h, 7d or 2w")
    return float(match.group(1)) * _UNITS[match.group(2)]


_MAX_PART = 2**64 - 1


def parse_entry_id(text: str, *, allow_ms_only: bool = False) -> str:
    """Check a stream entry id ``<ms>-<seq>`` (both at most 2**64-1). Raises click.BadParameter."""
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", text.strip())
    if not match or (match.group(2) is None and not allow_ms_only):
        raise click.BadParameter(f"{text!r} is not a stream entry id like 1767225600000-0")
    if int(match.group(1)) > _MAX_PART or int(match.group(2) or 0) > _MAX_PART:
        raise click.BadParameter(f"{text!r} is out of range for a stream entry id")
    return text.strip()


def parse_start(text: str) -> str:
    """An entry id (``1767225600000-0``) or an RFC 3339 time → an entry id."""
    if re.fullmatch(r"\d+(-\d+)?", text.strip()):
        return parse_entry_id(text, allow_ms_only=True)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is neither an entry id nor an RFC 3339 time") from exc
    if moment.tzinfo is None:
        raise click.BadParameter("the time needs an offset, e.g. 2026-11-23T00:00:00Z")
    return f"{int(moment.timestamp() * 1000)}-0"


def _run(action: Callable[[aioredis.Redis, Names], Awaitable[T]]) -> T:
    settings = BusSettings()

    async def go() -> T:
        redis = connect(settings.redis_url, socket_timeout_s=10)
        try:
            return await action(redis, Names(settings.hookbus_key_prefix))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    except REDIS_DOWN as exc:
        raise click.ClickException(f"cannot reach Redis at {settings.redis_url}: {exc}") from exc


async def _require_group(redis: aioredis.Redis, names: Names, group: str) -> None:
    known = await ops.known_groups(redis, names)
    if group not in known:
        raise click.ClickException(f"no consumer group named {group!r}; known: {', '.join(sorted(known)) or 'none'}")


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@click.group()
def dlq() -> None:
    """Inspect, replay and purge dead-letter streams."""


@dlq.command("list")
@click.argument("group", required=False)
@click.option("--count", default=100, show_default=True, help="Entries per group.")
def list_(group: str | None, count: int) -> None:
    """List dead-letter entries (of GROUP, or of every group)."""

    async def action(redis: aioredis.Redis, names: Names) -> list[tuple[str, list[ops.Entry]]]:
        groups = [group] if group else await ops.dlq_groups(redis, names)
        return [(g, await ops.list_entries(redis, names, g, count=count)) for g in groups]

    found = False
    for name, entries in _run(action):
        for e in entries:
            found = True
            r = e.record
            event_id = orjson.loads(r.event).get("id", "?") if r.event else "-"
            click.echo(
                f"{e.dlq_id}  {name}  {_when(r.last_failure_ms)}  event={event_id}  attempts={r.attempts}  "
                f"{r.error_type}: {r.reason}"
            )
    if not found:
        click.echo("no dead letters")


def _entry_ids(ctx: click.Context, param: click.Parameter, values: tuple[str, ...] | str) -> tuple[str, ...] | str:
    if isinstance(values, str):
        return parse_entry_id(values)
    return tuple(parse_entry_id(v) for v in values)


@dlq.command()
@click.argument("dlq_id", callback=_entry_ids)
@click.option("--group", default=None, help="The group whose dead-letter stream holds it (if ids collide).")
def show(dlq_id: str, group: str | None) -> None:
    """Show one dead-letter entry in full, with the original event."""
    found = _run(lambda redis, names: ops.find_entries(redis, names, dlq_id, group=group))
    if not found:
        raise click.ClickException(f"no dead-letter entry {dlq_id}")
    if len(found) > 1:
        groups = ", ".join(e.group for e in found)
        raise click.ClickException(f"{dlq_id} is in several dead-letter streams ({groups}); pass --group")
    entry = found[0]
    r = entry.record
    doc = {
        "dlq_id": entry.dlq_id,
        "group": r.group,
        "stream": r.stream,
        "entry_id": r.entry_id,
        "consumer": r.consumer,
        "error_type": r.error_type,
        "reason": r.reason,
        "attempts": r.attempts,
        "first_failure": _when(r.first_failure_ms),
        "last_failure": _when(r.last_failure_ms),
        "event": orjson.loads(r.event) if r.event else None,
    }
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


@dlq.command("replay")
@click.argument("group")
@click.argument("dlq_ids", nargs=-1, callback=_entry_ids)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead-letter entry of GROUP.")
def replay_dlq(group: str, dlq_ids: tuple[str, ...], replay_all: bool) -> None:
    """Re-deliver dead-letter entries to GROUP only (other groups are not affected)."""
    if bool(dlq_ids) == replay_all:
        raise click.UsageError("give dead-letter entry ids or --all (not both)")

    async def action(redis: aioredis.Redis, names: Names) -> list[str]:
        await _require_group(redis, names, group)
        return await ops.replay(redis, names, group, None if replay_all else list(dlq_ids))

    done = _run(action)
    click.echo(f"replayed {len(done)} entr{'y' if len(done) == 1 else 'ies'} to {group}")
    missing = sorted(set(dlq_ids) - set(done))
    if missing:
        raise click.ClickException(f"not replayed (no such entry, or no event to replay): {', '.join(missing)}")


@dlq.command()
@click.argument("group")
@click.option("--older-than", "older_than", default=None, help="Only entries older than this (30s, 15m, 12h, 7d).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(group: str, older_than: str | None, yes: bool) -> None:
    """Delete dead-letter entries of GROUP."""
    seconds = parse_duration(older_than) if older_than else None
    what = f"dead letters of {group}" + (f" older than {older_than}" if older_than else "")
    if not yes:
        click.confirm(f"Delete all {what}?", abort=True)
    count = _run(lambda redis, names: ops.purge(redis, names, group, older_than_s=seconds))
    click.echo(f"deleted {count} {what}")


@click.command("replay")
@click.argument("group")
@click.option("--from", "start", required=True, help="An entry id or an RFC 3339 time (2026-11-23T00:00:00Z).")
def replay_history(group: str, start: str) -> None:
    """Re-deliver retained history from --from onward to GROUP only (rewinds its position on each stream)."""
    position = parse_start(start)

    async def action(redis: aioredis.Redis, names: Names) -> dict[str, str]:
        await _require_group(redis, names, group)
        return await ops.replay_group(redis, names, group, position)

    moved = _run(action)
    if not moved:
        click.echo(f"{group} is already at or before that position on every stream (or reads none)")
    for stream, position in sorted(moved.items()):
        click.echo(f"{stream}: {group} rewound to {position}")

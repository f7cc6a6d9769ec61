"""The ``hookbus`` command.

Operator commands live here (``worker``, ``status``, ``groups``); the ingest and consumer packages add theirs
(``ingest``, ``send``, ``demo``, ``dev``, ``sandbox``) through the ``hookbus.commands`` entry-point group, so bus/
never imports them.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from importlib.metadata import entry_points

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError

from .cli_dlq import dlq, replay_history
from .config import BusSettings
from .connection import REDIS_DOWN, connect
from .connection import run as run_loop
from .errors import ConfigError
from .groups import ensure_groups
from .logs import configure
from .naming import Names
from .ratelimit import Limiter, configured_limits
from .registry import load_consumer, load_consumers
from .startup import settle_garbage_collector
from .status import dlq_lengths, render, render_workers, streams_status
from .workers import list_workers


class WorkerSettings(BusSettings):
    """Worker knobs (environment): ``HOOKBUS_BLOCK_MS`` (XREADGROUP BLOCK, milliseconds), ``HOOKBUS_BATCH_SIZE``,
    ``HOOKBUS_CONCURRENCY``, ``HOOKBUS_CLAIM_INTERVAL_S``, ``HOOKBUS_VISIBILITY_TIMEOUT_S`` (seconds before a
    silent consumer's entries are reclaimed), ``HOOKBUS_GRACE_S`` (shutdown grace), ``HOOKBUS_METRICS_PORT``
    (0 = no metrics endpoint), ``HOOKBUS_RETENTION_S`` and ``HOOKBUS_STREAM_MAXLEN`` (stream retention by age and
    by length; trimming never removes entries a group still needs), ``HOOKBUS_CONSUMER_TIMEOUT_S`` (idle consumers
    owning nothing are removed after this long), ``HOOKBUS_RATELIMIT_MAX_WAIT_S`` (how long a handler waits for the
    shared rate limit before its entry is released for a later retry), ``HOOKBUS_READ_AHEAD`` (batches read ahead
    while batches are handled quickly)."""

    hookbus_block_ms: int = 2000
    hookbus_batch_size: int = 100
    hookbus_concurrency: int = 16
    hookbus_claim_interval_s: float = 1.0
    hookbus_visibility_timeout_s: float = 60.0
    hookbus_grace_s: float = 10.0
    hookbus_metrics_port: int = 0
    hookbus_retention_s: float | None = 7 * 24 * 3600
    hookbus_stream_maxlen: int | None = None
    hookbus_consumer_timeout_s: float = 3600.0
    hookbus_ratelimit_max_wait_s: float = 5.0
    hookbus_read_ahead: int = 3


def describe_config_error(exc: Exception) -> str:
    """One readable line for a settings mistake: ``QUICKBOOKS_REALM_ID: Field required; …``."""
    if isinstance(exc, ValidationError):
        return "invalid settings: " + "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or err.get('input', '')}: {err['msg']}"
            for err in exc.errors()
        )
    return str(exc)


class HookbusGroup(click.Group):
    """Turns configuration mistakes anywhere in a command into one ``Error: …`` line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (ConfigError, ValidationError, SettingsError) as exc:
            raise click.ClickException(describe_config_error(exc)) from exc


@click.group(cls=HookbusGroup)
@click.version_option(package_name="hookbus")
def main() -> None:
    """hookbus: signed webhooks in, Redis Streams in the middle, reliable workers out."""


@main.command()
@click.argument("name")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus /metrics on this port.")
def worker(name: str, metrics_port: int | None) -> None:
    """Run the consumer NAME (e.g. accounting, or module:attribute) in this process until SIGTERM/SIGINT."""
    from .worker import Worker

    settings = WorkerSettings()
    configure(settings.hookbus_log_level)
    try:
        consumer = load_consumer(name)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    port = metrics_port if metrics_port is not None else settings.hookbus_metrics_port
    if port:
        from prometheus_client import start_http_server

        try:
            start_http_server(port)
        except OSError as exc:
            raise click.ClickException(f"cannot serve metrics on port {port}: {exc.strerror}") from exc

    async def run() -> None:
        redis = connect(settings.redis_url, socket_timeout_s=settings.hookbus_block_ms / 1000 + 5)
        names = Names(settings.hookbus_key_prefix)
        runner = Worker(
            consumer,
            redis,
            names,
            batch_size=settings.hookbus_batch_size,
            block_ms=settings.hookbus_block_ms,
            concurrency=settings.hookbus_concurrency,
            claim_interval_s=settings.hookbus_claim_interval_s,
            visibility_timeout_s=settings.hookbus_visibility_timeout_s,
            grace_s=settings.hookbus_grace_s,
            consumer_timeout_s=settings.hookbus_consumer_timeout_s,
            retention_s=settings.hookbus_retention_s,
            maxlen=settings.hookbus_stream_maxlen,
            metrics_port=port or None,
            limiter=Limiter(redis, names, configured_limits(), max_wait_s=settings.hookbus_ratelimit_max_wait_s),
            on_started=settle_garbage_collector,
            read_ahead=settings.hookbus_read_ahead,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        try:
            await runner.run()
        finally:
            await redis.aclose()

    run_loop(run())


@main.command()
def status() -> None:
    """Per stream: length; per consumer group: consumers, pending, lag, last delivered id."""
    settings = BusSettings()

    async def run() -> str:
        redis = connect(settings.redis_url, socket_timeout_s=5)
        try:
            names = Names(settings.hookbus_key_prefix)
            table = render(await streams_status(redis, names), await dlq_lengths(redis, names))
            return table + "\n" + render_workers(await list_workers(redis, names.prefix))
        finally:
            await redis.aclose()

    try:
        click.echo(asyncio.run(run()))
    except REDIS_DOWN as exc:
        raise click.ClickException(f"cannot reach Redis at {settings.redis_url}: {exc}") from exc


@main.command()
def groups() -> None:
    """Create the consumer groups of every installed consumer (a release step; ingest also does it at start-up)."""
    settings = BusSettings()

    async def run() -> int:
        redis = connect(settings.redis_url, socket_timeout_s=5)
        try:
            return await ensure_groups(redis, Names(settings.hookbus_key_prefix), load_consumers())
        finally:
            await redis.aclose()

    try:
        created = asyncio.run(run())
    except REDIS_DOWN as exc:
        raise click.ClickException(f"cannot reach Redis at {settings.redis_url}: {exc}") from exc
    click.echo(f"consumer groups created: {created}")


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=9200, show_default=True, type=int)
def exporter(host: str, port: int) -> None:
    """Serve stream, group, dead-letter and worker gauges read from Redis at scrape time (one per deployment)."""
    import signal as signals
    import threading

    import redis as sync_redis
    from prometheus_client import CollectorRegistry, start_http_server

    from .exporter import StreamCollector

    settings = BusSettings()
    configure(settings.hookbus_log_level)
    registry = CollectorRegistry()
    client = sync_redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    registry.register(StreamCollector(client, Names(settings.hookbus_key_prefix)))
    server, thread = start_http_server(port, addr=host, registry=registry)
    click.echo(f"exporter: http://{host}:{port}/metrics")
    stopped = threading.Event()
    for sig in (signals.SIGTERM, signals.SIGINT):
        signals.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    server.shutdown()


@main.command("trace")
@click.argument("event_id")
@click.option("--source", default=None, help="The event's source, if several sources use the same id.")
def trace_(event_id: str, source: str | None) -> None:
    """Show an event's story: published, duplicates, each group's attempts and errors, downstream ids, outcome."""
    from . import trace

    settings = BusSettings()

    async def run() -> dict[str, list[dict[str, object]]]:
        redis = connect(settings.redis_url, socket_timeout_s=5)
        try:
            return await trace.read(redis, Names(settings.hookbus_key_prefix), event_id, source)
        finally:
            await redis.aclose()

    try:
        found = asyncio.run(run())
    except REDIS_DOWN as exc:
        raise click.ClickException(f"cannot reach Redis at {settings.redis_url}: {exc}") from exc
    if not found:
        raise click.ClickException(f"no trace of {event_id} (unknown, or older than HOOKBUS_DEDUPE_TTL_S)")
    for name, records in found.items():
        click.echo(f"{event_id} from {name}")
        for record in records:
            click.echo("  " + trace.describe(record))


main.add_command(dlq)
main.add_command(replay_history)


def _load_plugins() -> None:
    for ep in entry_points(group="hookbus.commands"):
        command = ep.load()
        main.add_command(command, ep.name)


_load_plugins()

if __name__ == "__main__":
    sys.exit(main())

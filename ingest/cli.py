"""``hookbus ingest`` (the HTTP service) and ``hookbus send`` (sign and post one sample event)."""

from __future__ import annotations

import click
import httpx
import uvicorn

from bus.logs import configure

from .config import IngestSettings
from .senders import SENDERS
from .sources import configured_sources


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="uvicorn worker processes.")
def ingest(host: str, port: int, workers: int) -> None:
    """Run the webhook ingest service (uvicorn + Starlette) until SIGTERM/SIGINT."""
    settings = IngestSettings()
    configure(settings.hookbus_log_level)
    # Check the configuration here, where a mistake is one clear line, not a traceback from inside uvicorn.
    try:
        sources = configured_sources()
    except ValueError as exc:
        raise click.ClickException(f"invalid source configuration: {exc}") from exc
    if not sources:
        raise click.ClickException(
            "no webhook source is configured: set STRIPE_WEBHOOK_SECRET (or another source's secret, see README)"
        )
    click.echo(f"sources: {', '.join(sorted(sources))}", err=True)
    uvicorn.run(
        "ingest.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )


@click.command()
@click.argument("source", type=click.Choice(sorted(SENDERS)))
@click.argument("event_type")
@click.option("--amount", default=None, help="Stripe: amount in integer minor units (1999 = 19.99 USD).")
@click.option("--currency", default=None, help="Stripe: ISO 4217 currency code.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="A sample field to set.")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="Where ingest listens.")
def send(
    source: str, event_type: str, amount: str | None, currency: str | None, options: tuple[str, ...], url: str
) -> None:
    """Sign and post one realistic SOURCE event of EVENT_TYPE to a running ingest, like `stripe trigger`.

    The signing secret is read from the same environment variable ingest verifies with (`hookbus dev` prints it).
    """
    sender = SENDERS[source]
    if event_type not in sender.event_types:
        raise click.BadParameter(
            f"{event_type!r}; {source} sends: {', '.join(sender.event_types)}", param_hint="EVENT_TYPE"
        )
    values = dict(option.split("=", 1) for option in options if "=" in option)
    values |= {k: v for k, v in (("amount", amount), ("currency", currency)) if v is not None}
    try:
        hook = sender.webhook(event_type, values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        response = httpx.post(
            f"{url.rstrip('/')}{hook.path}", content=hook.body, headers=dict(hook.headers), timeout=10
        )
    except httpx.TransportError as exc:
        raise click.ClickException(f"cannot reach ingest at {url}: {exc}") from exc
    click.echo(f"{response.status_code} {response.text}")
    if response.status_code >= 300:
        raise SystemExit(1)

"""``hookbus ingest`` (the HTTP service) and ``hookbus send`` (sign and post one sample event)."""

from __future__ import annotations

import time

import click
import httpx
import uvicorn

from bus.logs import configure

from .config import IngestSettings, StripeSettings
from .sources import stripe_samples
from .sources.stripe import signature_header


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="uvicorn worker processes.")
def ingest(host: str, port: int, workers: int) -> None:
    """Run the webhook ingest service (uvicorn + Starlette) until SIGTERM/SIGINT."""
    settings = IngestSettings()
    configure(settings.hookbus_log_level)
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
@click.argument("source", type=click.Choice(["stripe"]))
@click.argument("event_type", type=click.Choice(stripe_samples.SUPPORTED_TYPES))
@click.option("--amount", type=int, default=1999, show_default=True, help="Integer minor units (1999 = 19.99 USD).")
@click.option("--currency", default="usd", show_default=True)
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="Where ingest listens.")
def send(source: str, event_type: str, amount: int, currency: str, url: str) -> None:
    """Sign and post one realistic SOURCE event of EVENT_TYPE to a running ingest, like `stripe trigger`.

    The signing secret is the first of STRIPE_WEBHOOK_SECRET (as `hookbus dev` sets it).
    """
    settings = StripeSettings()
    if not settings.stripe_webhook_secret:
        raise click.UsageError("STRIPE_WEBHOOK_SECRET is not set (hookbus dev prints the value it uses)")
    kwargs: dict[str, object] = {"amount": amount, "currency": currency}
    if event_type == "charge.refunded":
        kwargs["amount_refunded"] = amount
    elif event_type == "customer.created":
        kwargs = {}
    body = stripe_samples.sample(event_type, **kwargs)
    header = signature_header(body, settings.stripe_webhook_secret[0], int(time.time()))
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/webhooks/{source}",
            content=body,
            headers={"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"},
            timeout=10,
        )
    except httpx.TransportError as exc:
        raise click.ClickException(f"cannot reach ingest at {url}: {exc}") from exc
    click.echo(f"{response.status_code} {response.text}")
    if response.status_code >= 300:
        raise SystemExit(1)

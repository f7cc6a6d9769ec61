"""``hookbus demo`` and ``hookbus dev``.

``demo`` starts Valkey (bundled, unless ``REDIS_URL`` is set), the QuickBooks sandbox, ingest and the accounting
worker as separate processes, posts a scripted set of signed Stripe webhooks, waits until every consumer group has
nothing pending, prints what happened, and stops everything. ``dev`` starts the same and keeps it running.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from bus.connection import connect
from bus.money import format_money, to_minor
from bus.naming import Names
from bus.registry import consumer_names
from bus.status import streams_status

from .devstack import DevStack, free_port, running
from .sources import stripe_samples as samples
from .sources.stripe import signature_header


@dataclass(frozen=True)
class Webhook:
    label: str
    body: bytes
    secret: str


def scenario(secret: str) -> list[Webhook]:
    """The demo's deliveries: four payments in USD, EUR, JPY and KWD (two of them reported by two Stripe events),
    a partial refund, an event type hookbus ignores, a duplicate delivery and a forged signature."""
    pi_usd, ch_usd = samples.new_id("pi"), samples.new_id("ch")
    pi_eur = samples.new_id("pi")
    first = samples.payment_intent_succeeded(amount=1999, currency="usd", payment_intent_id=pi_usd, charge_id=ch_usd)
    forger = "whsec_" + secrets.token_hex(16)
    return [
        Webhook("payment_intent.succeeded 19.99 USD", first, secret),
        Webhook(
            "charge.succeeded for the same payment",
            samples.charge_succeeded(amount=1999, currency="usd", payment_intent_id=pi_usd, charge_id=ch_usd),
            secret,
        ),
        Webhook(
            "invoice.paid 45.00 EUR",
            samples.invoice_paid(amount=4500, currency="eur", payment_intent_id=pi_eur),
            secret,
        ),
        Webhook(
            "payment_intent.succeeded for the same invoice payment",
            samples.payment_intent_succeeded(amount=4500, currency="eur", payment_intent_id=pi_eur),
            secret,
        ),
        Webhook(
            "charge.succeeded 1500 JPY (zero-decimal)", samples.charge_succeeded(amount=1500, currency="jpy"), secret
        ),
        Webhook(
            "payment_intent.succeeded 12.345 KWD (three-decimal)",
            samples.payment_intent_succeeded(amount=12345, currency="kwd"),
            secret,
        ),
        Webhook(
            "charge.refunded 5.00 of the USD payment",
            samples.charge_refunded(
                charge_id=ch_usd, payment_intent_id=pi_usd, amount=1999, amount_refunded=500, currency="usd"
            ),
            secret,
        ),
        Webhook("customer.created (not handled by hookbus)", samples.customer_created(), secret),
        Webhook("the first payment delivered again (duplicate)", first, secret),
        Webhook(
            "a payment signed with the wrong secret",
            samples.payment_intent_succeeded(amount=99900, currency="usd"),
            forger,
        ),
    ]


def post_all(ingest_url: str, webhooks: list[Webhook]) -> list[tuple[str, int, str]]:
    results = []
    with httpx.Client(base_url=ingest_url, timeout=10) as client:
        for hook in webhooks:
            header = signature_header(hook.body, hook.secret, int(time.time()))
            response = client.post(
                "/webhooks/stripe",
                content=hook.body,
                headers={"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"},
            )
            status = response.json().get("status") or response.json().get("error", "")
            results.append((hook.label, response.status_code, status))
    return results


async def wait_idle(redis_url: str, prefix: str, timeout_s: float = 60.0) -> None:
    """Wait until every consumer group on every stream has no lag and nothing pending."""
    redis = connect(redis_url, socket_timeout_s=5)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            streams = await streams_status(redis, Names(prefix))
            if streams and all(g.pending == 0 and g.lag == 0 for s in streams for g in s.groups):
                return
            await asyncio.sleep(0.2)
        raise click.ClickException(f"consumers were not idle after {timeout_s:.0f} s (see `hookbus status`)")
    finally:
        await redis.aclose()


def ingest_counts(ingest_url: str) -> dict[str, Any]:
    """Webhook outcomes and published events from ingest's own /metrics."""
    text = httpx.get(f"{ingest_url}/metrics", timeout=5).text
    outcomes: Counter[str] = Counter()
    published: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hookbus_webhooks_received_total":
                outcomes[sample.labels["outcome"]] += int(sample.value)
            elif sample.name == "hookbus_events_published_total":
                published[sample.labels["type"]] += int(sample.value)
    rejected = sum(n for o, n in outcomes.items() if o not in ("accepted", "duplicate", "unhandled_type"))
    return {
        "webhooks_received": sum(outcomes.values()),
        "webhooks_accepted": outcomes["accepted"],
        "webhooks_rejected": rejected,
        "duplicates_dropped": outcomes["duplicate"],
        "unhandled_types": outcomes["unhandled_type"],
        "events_published": dict(sorted(published.items())),
    }


def sandbox_objects(sandbox_url: str) -> dict[str, list[dict[str, Any]]]:
    return httpx.get(f"{sandbox_url}/_sandbox/objects", timeout=5).json()


def summarize(ingest_url: str, sandbox_url: str) -> dict[str, Any]:
    objects = sandbox_objects(sandbox_url)

    def money(obj: dict[str, Any]) -> str:
        body = obj.get("body", obj)
        currency = body["CurrencyRef"]["value"]
        total = sum(orjson.loads(orjson.dumps(line["Amount"])) for line in body["Line"])
        return format_money(to_minor(_decimal(total), currency), currency)

    return ingest_counts(ingest_url) | {
        "sales_receipts": [money(o) for o in objects["salesreceipts"]],
        "refund_receipts": [money(o) for o in objects["refundreceipts"]],
    }


def _decimal(value: Any) -> Any:
    from decimal import Decimal

    return Decimal(str(value))


def print_summary(results: list[tuple[str, int, str]], summary: dict[str, Any]) -> None:
    click.echo("\nWebhooks posted:")
    for label, code, status in results:
        click.echo(f"  {code} {status:<16} {label}")
    click.echo("\nSummary:")
    click.echo(f"  webhooks received   {summary['webhooks_received']}")
    click.echo(f"  accepted            {summary['webhooks_accepted']}")
    click.echo(f"  rejected            {summary['webhooks_rejected']}")
    click.echo(f"  duplicates dropped  {summary['duplicates_dropped']}")
    click.echo(f"  unhandled types     {summary['unhandled_types']}")
    for event_type, n in summary["events_published"].items():
        click.echo(f"  published {event_type:<20} {n}")
    click.echo(
        f"  QuickBooks sales receipts   {len(summary['sales_receipts'])}: {', '.join(summary['sales_receipts'])}"
    )
    click.echo(
        f"  QuickBooks refund receipts  {len(summary['refund_receipts'])}: {', '.join(summary['refund_receipts'])}"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Also print the summary as one JSON line.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".hookbus/demo"),
    show_default=True,
    help="Where the bundled Valkey keeps its data (wiped at the start of each demo).",
)
def demo(as_json: bool, data_dir: Path) -> None:
    """Run the whole pipeline once on sample Stripe webhooks, print what happened, stop everything."""
    import os

    redis_url = os.environ.get("REDIS_URL")
    if redis_url is None:
        shutil.rmtree(data_dir, ignore_errors=True)
    stack = DevStack(
        ingest_port=free_port(),
        sandbox_port=free_port(),
        redis_url=redis_url,
        data_dir=data_dir,
        valkey_port=free_port(),
        # A fresh namespace per run, so a shared Redis from REDIS_URL does not mix in earlier runs.
        key_prefix=f"hookbus-demo-{secrets.token_hex(4)}" if redis_url else "hookbus",
        log_dir=data_dir / "logs",
    )
    with running(stack, {"accounting": None}):
        click.echo(f"ingest {stack.ingest_url}, QuickBooks sandbox {stack.sandbox_url}; logs in {stack.log_dir}")
        results = post_all(stack.ingest_url, scenario(stack.stripe_secret))
        asyncio.run(wait_idle(stack.env()["REDIS_URL"], stack.key_prefix))
        stack.check_alive()
        summary = summarize(stack.ingest_url, stack.sandbox_url)
        print_summary(results, summary)
        if as_json:
            click.echo(orjson.dumps(summary).decode())
    click.echo("\nAll processes stopped.")


@click.command()
@click.option("--port", default=8000, show_default=True, type=int, help="Port ingest listens on (127.0.0.1).")
@click.option("--sandbox-port", default=8100, show_default=True, type=int)
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path(".hookbus"), show_default=True)
def dev(port: int, sandbox_port: int, data_dir: Path) -> None:
    """Run Valkey, ingest, every worker and the API sandboxes until Ctrl-C."""
    import os

    stack = DevStack(
        ingest_port=port,
        sandbox_port=sandbox_port,
        redis_url=os.environ.get("REDIS_URL"),
        data_dir=data_dir,
        stripe_secret=os.environ.get("STRIPE_WEBHOOK_SECRET", "").split(",")[0] or "whsec_dev_" + secrets.token_hex(16),
    )
    workers = {name: 9100 + i for i, name in enumerate(consumer_names(), start=1)}
    with running(stack, workers):
        env = stack.env()
        click.echo(f"ingest:     {stack.ingest_url}/webhooks/stripe   (metrics {stack.ingest_url}/metrics)")
        for name, metrics_port in workers.items():
            click.echo(f"worker:     {name} (metrics http://127.0.0.1:{metrics_port}/metrics)")
        click.echo(f"QuickBooks sandbox: {stack.sandbox_url}/_sandbox/objects")
        click.echo("\nIn another terminal:")
        click.echo(f"  export STRIPE_WEBHOOK_SECRET={env['STRIPE_WEBHOOK_SECRET']} REDIS_URL={env['REDIS_URL']}")
        click.echo(
            f"  hookbus send stripe payment_intent.succeeded --amount 1999 --currency usd --url {stack.ingest_url}"
        )
        click.echo("  hookbus status\n\nCtrl-C stops everything.")
        try:
            while True:
                time.sleep(1)
                stack.check_alive()
        except KeyboardInterrupt:
            click.echo("\nstopping…", err=True)
    sys.exit(0)

"""``hookbus demo`` and ``hookbus dev``.

``demo`` starts Valkey (bundled, unless ``REDIS_URL`` is set), the API sandboxes, ingest and every worker the
scenarios need as separate processes, posts each scenario's signed webhooks, waits until every consumer group has
nothing pending, prints what happened downstream, and stops everything. ``dev`` starts the same and keeps it running.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from bus.connection import connect
from bus.naming import Names
from bus.registry import consumer_names
from bus.status import streams_status

from ..devstack import DevStack, free_port, running
from .base import Scenario, Webhook
from .bookings import Bookings
from .inventory import Inventory
from .leads import Leads
from .payments import Payments

#: The scenarios ``hookbus demo`` runs, in order. Add an integration's scenario with one line here.
SCENARIOS: list[Scenario] = [Payments(), Leads(), Inventory(), Bookings()]


def post_all(ingest_url: str, webhooks: list[Webhook]) -> list[tuple[str, int, str]]:
    """Post each webhook in order; returns (label, HTTP status, ingest's status or error code)."""
    results = []
    with httpx.Client(base_url=ingest_url, timeout=10) as client:
        for hook in webhooks:
            response = client.post(hook.path, content=hook.body, headers=dict(hook.headers))
            doc = response.json()
            results.append((hook.label, response.status_code, doc.get("status") or doc.get("error", "")))
    return results


async def wait_idle(redis_url: str, prefix: str, groups: set[str], timeout_s: float = 60.0) -> None:
    """Wait until ``groups`` have no lag and nothing pending on every stream they read."""
    redis = connect(redis_url, socket_timeout_s=5)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            streams = await streams_status(redis, Names(prefix))
            ours = [g for s in streams for g in s.groups if g.name in groups]
            if ours and all(g.pending == 0 and g.lag == 0 for g in ours):
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


def scenario_env(sandbox_url: str, data_dir: Path) -> dict[str, str]:
    """Every scenario's environment, plus ``HOOKBUS_CONFIG`` pointing at their joined rules (written to
    ``data_dir/hookbus.toml``)."""
    env: dict[str, str] = {}
    for scenario in SCENARIOS:
        env.update(scenario.env(sandbox_url))
    rules = "\n".join(part for part in (s.rules() for s in SCENARIOS) if part.strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "hookbus.toml"
    path.write_text(rules, encoding="utf-8")
    env["HOOKBUS_CONFIG"] = str(path.resolve())
    return env


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Also print the summary as one JSON line.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".hookbus/demo"),
    show_default=True,
    help="Where the bundled Valkey keeps its data (wiped at the start of each demo) and the processes' logs.",
)
def demo(as_json: bool, data_dir: Path) -> None:
    """Run every integration once on realistic signed webhooks, print what happened, stop everything."""
    redis_url = os.environ.get("REDIS_URL")
    if redis_url is None:
        shutil.rmtree(data_dir / "valkey", ignore_errors=True)
    sandbox_port = free_port()
    stack = DevStack(
        ingest_port=free_port(),
        sandbox_port=sandbox_port,
        redis_url=redis_url,
        data_dir=data_dir,
        valkey_port=free_port(),
        # A fresh namespace per run, so a shared Redis from REDIS_URL does not mix in earlier runs.
        key_prefix=f"hookbus-demo-{secrets.token_hex(4)}" if redis_url else "hookbus",
        log_dir=data_dir / "logs",
        extra_env=scenario_env(f"http://127.0.0.1:{sandbox_port}", data_dir),
    )
    workers = dict.fromkeys(w for s in SCENARIOS for w in s.workers)
    try:
        _run_demo(stack, workers, as_json)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; every process the demo started was stopped") from None
    click.echo("\nAll processes stopped.")


def _run_demo(stack: DevStack, workers: dict[str, None], as_json: bool) -> None:
    with running(stack, workers):
        click.echo(f"ingest {stack.ingest_url}, sandboxes {stack.sandbox_url}; logs in {stack.log_dir}")
        env = stack.env()
        results = []
        for scenario in SCENARIOS:
            results.append((scenario, post_all(stack.ingest_url, scenario.webhooks(env))))
        asyncio.run(wait_idle(env["REDIS_URL"], stack.key_prefix, set(workers)))
        stack.check_alive()
        summary = ingest_counts(stack.ingest_url)
        with httpx.Client(base_url=stack.sandbox_url, timeout=5) as sandbox:
            for scenario in SCENARIOS:
                summary |= scenario.summarize(sandbox)
        for scenario, posted in results:
            click.echo(f"\n{scenario.title}")
            for label, code, status in posted:
                click.echo(f"  {code} {status:<16} {label}")
            for line in scenario.lines(summary):
                click.echo(f"  → {line}")
        click.echo("\nIngest:")
        click.echo(f"  webhooks received   {summary['webhooks_received']}")
        click.echo(f"  accepted            {summary['webhooks_accepted']}")
        click.echo(f"  rejected            {summary['webhooks_rejected']}")
        click.echo(f"  duplicates dropped  {summary['duplicates_dropped']}")
        click.echo(f"  unhandled types     {summary['unhandled_types']}")
        for event_type, n in summary["events_published"].items():
            click.echo(f"  published {event_type:<24} {n}")
        if as_json:
            click.echo(orjson.dumps(summary).decode())


@click.command()
@click.option("--port", default=8000, show_default=True, type=int, help="Port ingest listens on (127.0.0.1).")
@click.option("--sandbox-port", default=8100, show_default=True, type=int)
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path(".hookbus"), show_default=True)
def dev(port: int, sandbox_port: int, data_dir: Path) -> None:
    """Run Valkey, ingest, every worker and the API sandboxes until Ctrl-C.

    Secrets and downstream URLs not set in the environment get local development values (printed below), and
    without HOOKBUS_CONFIG the demo's rules file is used (written to DATA_DIR/hookbus.toml).
    """
    defaults = scenario_env(f"http://127.0.0.1:{sandbox_port}", data_dir)
    stack = DevStack(
        ingest_port=port,
        sandbox_port=sandbox_port,
        redis_url=os.environ.get("REDIS_URL"),
        data_dir=data_dir,
        extra_env={k: v for k, v in defaults.items() if k not in os.environ},
    )
    workers = {name: 9100 + i for i, name in enumerate(consumer_names(), start=1)}
    with running(stack, workers):
        env = stack.env()
        click.echo(f"ingest:     {stack.ingest_url}/webhooks/<source>   (metrics {stack.ingest_url}/metrics)")
        for name, metrics_port in workers.items():
            click.echo(f"worker:     {name} (metrics http://127.0.0.1:{metrics_port}/metrics)")
        click.echo(f"sandboxes:  {stack.sandbox_url}/<name>/_sandbox/objects")
        click.echo("\nIn another terminal:")
        shown = [k for k in stack.extra_env if k.endswith(("_SECRET", "_TOKEN", "_SIGNING_KEY"))]
        shown += ["REDIS_URL", "HOOKBUS_CONFIG"]  # `hookbus send` for forms and generic senders reads the rules
        click.echo("  export " + " ".join(f"{k}={env[k]}" for k in sorted(set(shown))))
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

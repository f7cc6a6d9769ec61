"""``hookbus trace``: an event's whole story, recorded by ingest and the workers."""

from __future__ import annotations

import anyio
import pytest
from click.testing import CliRunner

from bus.cli import main
from ingest.sources import stripe_samples as samples

from .support import (
    QuickBooksSandbox,
    accounting_consumer,
    idle,
    ingest_app,
    ingest_client,
    running_worker,
    stripe_headers,
    wait_until,
)

pytestmark = pytest.mark.anyio


async def trace_output(url: str, *args: str) -> tuple[int, str]:
    result = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(main, ["trace", *args], env={"REDIS_URL": url}))
    return result.exit_code, result.output


async def test_trace_tells_the_whole_story(redis, names, valkey) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    await sandbox.fault(status=429, count=1, retry_after="1")
    body = samples.payment_intent_succeeded(amount=4200, currency="usd", event_id="evt_traced0000000000000001")
    async with ingest_client(ingest_app(redis)) as client:
        async with running_worker(accounting_consumer(sandbox), redis, names, claim_interval_s=0.05):
            for _ in range(2):
                await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))

            async def done() -> bool:
                return await idle(redis, names, "accounting", ["payment.succeeded"])

            await wait_until(done, what="the payment to be booked")
    receipt_id = (await sandbox.objects())["salesreceipts"][0]["Id"]
    code, out = await trace_output(valkey.url, "evt_traced0000000000000001")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "evt_traced0000000000000001 from stripe"
    steps = [line.split(None, 2)[2] for line in lines[1:]]
    assert steps[0].startswith("published as ")
    assert steps[1].startswith("duplicate delivery dropped")
    assert steps[2].startswith("attempt 1 failed: RetryLater") and "429" in steps[2]
    assert steps[3].startswith("attempt 2 succeeded in ") and f"quickbooks_sales_receipt={receipt_id}" in steps[3]
    assert [line.split(None, 2)[1] for line in lines[1:]] == ["ingest", "ingest", "accounting", "accounting"]


async def test_trace_of_an_unknown_event_is_a_clear_error(redis, valkey) -> None:  # type: ignore[no-untyped-def]
    code, out = await trace_output(valkey.url, "evt_never_seen")
    assert code == 1
    assert "no trace of evt_never_seen" in out


async def test_trace_keeps_colons_in_ids_and_does_not_glob(redis, names, valkey) -> None:  # type: ignore[no-untyped-def]
    await redis.rpush(
        names.trace("calcom", "BOOKING_CREATED:bk_1"), b'{"at":1767225600000,"step":"published","entries":"1-0"}'
    )
    await redis.rpush(names.trace("stripe", "evt_other"), b'{"at":1767225600000,"step":"published","entries":"2-0"}')
    code, out = await trace_output(valkey.url, "BOOKING_CREATED:bk_1")
    assert code == 0 and out.splitlines()[0] == "BOOKING_CREATED:bk_1 from calcom"
    code, out = await trace_output(valkey.url, "*")
    assert code == 1 and "no trace of *" in out

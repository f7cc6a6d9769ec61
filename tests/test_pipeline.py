"""Signed webhook → ingest → stream → accounting worker → QuickBooks sandbox, on a real Valkey.

Cases 015 (one downstream effect), 018 (zero-decimal amounts), 020 (cumulative partial refunds), and unknown
currencies dead-lettered instead of guessed.
"""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from bus.deadletter import DeadLetter
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

TYPES = ("payment.succeeded", "payment.refunded")


async def deliver(client, body: bytes) -> str:  # type: ignore[no-untyped-def]
    response = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert response.status_code == 200, response.text
    return response.json()["status"]


async def drained(redis, names) -> None:  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await idle(redis, names, "accounting", TYPES)

    try:
        # Refunds that arrive with their payment wait for it (NotReady, 2 s) and then for the per-charge lock; on a
        # loaded machine that can take several seconds, so the bound is generous.
        await wait_until(check, timeout_s=30, what="the accounting group to drain")
    except AssertionError as exc:  # say what is still pending, and why, for whoever has to look at it
        retries = await redis.hgetall(names.retry("accounting"))
        pending = {t: await redis.xpending(names.stream(t), "accounting") for t in TYPES}
        raise AssertionError(f"{exc}; pending={pending} retry records={retries}") from None


async def test_payment_becomes_exactly_one_sales_receipt(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    pi, ch = "pi_3Q0hookbusE2E000000001", "ch_3Q0hookbusE2E000000001"
    body = samples.payment_intent_succeeded(amount=1999, currency="usd", payment_intent_id=pi, charge_id=ch)
    async with ingest_client(ingest_app(redis)) as client:
        async with running_worker(accounting_consumer(sandbox), redis, names) as worker:
            assert await deliver(client, body) == "accepted"
            await drained(redis, names)
            assert await deliver(client, body) == "duplicate"
            # The same payment reported by its charge and invoice events: still one receipt.
            charge = samples.charge_succeeded(amount=1999, currency="usd", payment_intent_id=pi, charge_id=ch)
            invoice = samples.invoice_paid(amount=1999, currency="usd", payment_intent_id=pi, charge_id=ch)
            assert await deliver(client, charge) == "accepted"
            assert await deliver(client, invoice) == "accepted"
            await drained(redis, names)
    receipts = (await sandbox.objects())["salesreceipts"]
    assert len(receipts) == 1
    assert Decimal(str(receipts[0]["TotalAmt"])) == Decimal("19.99")
    assert worker.counts["acked"] == 3
    assert await redis.xlen(names.dlq("accounting")) == 0


async def test_concurrent_events_for_one_payment_book_once(redis, names) -> None:  # type: ignore[no-untyped-def]
    """Case 015's downstream half: events processed at the same time still give one receipt (same requestid)."""
    sandbox = QuickBooksSandbox()
    pi = "pi_3Q0hookbusRace00000001"
    bodies = [
        samples.payment_intent_succeeded(amount=4200, currency="usd", payment_intent_id=pi),
        samples.charge_succeeded(amount=4200, currency="usd", payment_intent_id=pi),
        samples.invoice_paid(amount=4200, currency="usd", payment_intent_id=pi),
    ]
    async with ingest_client(ingest_app(redis)) as client:
        for body in bodies:  # published before the worker starts, so one XREADGROUP hands out all three at once
            assert await deliver(client, body) == "accepted"
        async with running_worker(accounting_consumer(sandbox), redis, names):
            await drained(redis, names)
    receipts = (await sandbox.objects())["salesreceipts"]
    assert [Decimal(str(r["TotalAmt"])) for r in receipts] == [Decimal("42.00")]


async def test_case_018_amounts_by_currency_exponent(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    bodies = {
        "JPY": samples.invoice_paid(amount=8000, currency="jpy"),
        "KRW": samples.invoice_paid(amount=55000, currency="krw"),
        "USD": samples.invoice_paid(amount=4200, currency="usd"),
        "CLP": samples.charge_succeeded(amount=15990, currency="clp"),
        "KWD": samples.payment_intent_succeeded(amount=1234, currency="kwd"),
    }
    async with ingest_client(ingest_app(redis)) as client:
        async with running_worker(accounting_consumer(sandbox), redis, names):
            for body in bodies.values():
                await deliver(client, body)
            await drained(redis, names)
    sent = {
        r["body"]["CurrencyRef"]["value"]: orjson.loads(r["raw_body"])["Line"][0]["Amount"]
        for r in (await sandbox.objects())["salesreceipts"]
    }
    raw = {r["body"]["CurrencyRef"]["value"]: r["raw_body"] for r in (await sandbox.objects())["salesreceipts"]}
    assert sent == {"JPY": 8000, "KRW": 55000, "USD": 42, "CLP": 15990, "KWD": 1.234}
    assert '"Amount":8000,' in raw["JPY"] and "80.0" not in raw["JPY"]
    assert '"Amount":1.234,' in raw["KWD"]


def refund(event_id: str, amount_refunded: int, *, refunded: bool = False) -> bytes:
    return samples.charge_refunded(
        charge_id="ch_hb_0001",
        payment_intent_id="pi_hb_0001",
        amount=5000,
        amount_refunded=amount_refunded,
        currency="usd",
        event_id=event_id,
    )


PAYMENT = samples.payment_intent_succeeded(
    amount=5000, currency="usd", payment_intent_id="pi_hb_0001", charge_id="ch_hb_0001"
)


async def refunds_booked(redis, names, bodies: list[bytes]) -> list[Decimal]:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    async with ingest_client(ingest_app(redis)) as client:
        async with running_worker(accounting_consumer(sandbox), redis, names):
            for body in [PAYMENT, *bodies]:
                await deliver(client, body)
                await drained(redis, names)  # in the order given, like Stripe's deliveries spread over time
    return [Decimal(str(r["TotalAmt"])) for r in (await sandbox.objects())["refundreceipts"]]


async def test_case_020_partial_refunds_are_cumulative(redis, names) -> None:  # type: ignore[no-untyped-def]
    r1, r2 = refund("evt_R1", 1000), refund("evt_R2", 1500)
    assert await refunds_booked(redis, names, [r1, r2, r2]) == [Decimal("10.00"), Decimal("5.00")]


async def test_case_020_refunds_out_of_order(redis, names) -> None:  # type: ignore[no-untyped-def]
    r1, r2 = refund("evt_R1", 1000), refund("evt_R2", 1500)
    assert await refunds_booked(redis, names, [r2, r1]) == [Decimal("15.00")]


async def test_case_020_full_refund_totals_the_charge(redis, names) -> None:  # type: ignore[no-untyped-def]
    bodies = [refund("evt_R1", 1000), refund("evt_R2", 1500), refund("evt_R2", 1500), refund("evt_R3", 5000)]
    booked = await refunds_booked(redis, names, bodies)
    assert booked == [Decimal("10.00"), Decimal("5.00"), Decimal("35.00")]
    assert sum(booked) == Decimal("50.00")


async def test_concurrent_refunds_of_one_charge_are_serialized(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    async with ingest_client(ingest_app(redis)) as client:
        for body in (PAYMENT, refund("evt_R1", 1000), refund("evt_R2", 1500), refund("evt_R3", 5000)):
            await deliver(client, body)
        async with running_worker(accounting_consumer(sandbox), redis, names):
            await drained(redis, names)
    booked = [Decimal(str(r["TotalAmt"])) for r in (await sandbox.objects())["refundreceipts"]]
    assert sum(booked) == Decimal("50.00")


async def test_unknown_currency_is_dead_lettered_with_reason(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    body = samples.payment_intent_succeeded(amount=1000, currency="xts")
    async with ingest_client(ingest_app(redis)) as client:
        async with running_worker(accounting_consumer(sandbox), redis, names):
            await deliver(client, body)
            await drained(redis, names)
    (_, fields), *_ = await redis.xrange(names.dlq("accounting"))
    record = DeadLetter.from_fields(fields)
    assert record.reason == "unknown_currency_exponent: XTS"
    assert record.error_type == "UnknownCurrencyError"
    assert record.group == "accounting" and record.attempts == 1
    assert orjson.loads(record.event)["data"]["currency"] == "XTS"
    assert (await sandbox.objects())["salesreceipts"] == []


async def test_min_amount_rule_skips_small_payments(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    consumer = accounting_consumer(sandbox, accounting_min_amount="100.00 USD")
    async with ingest_client(ingest_app(redis)) as client:
        async with running_worker(consumer, redis, names):
            await deliver(client, samples.payment_intent_succeeded(amount=9999, currency="usd"))
            await deliver(client, samples.payment_intent_succeeded(amount=10000, currency="usd"))
            await deliver(client, samples.payment_intent_succeeded(amount=500, currency="eur"))
            await drained(redis, names)
    totals = sorted(Decimal(str(r["TotalAmt"])) for r in (await sandbox.objects())["salesreceipts"])
    assert totals == [Decimal("5.00"), Decimal("100.00")]


async def test_downstream_429_is_retried_after_retry_after(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    await sandbox.fault(status=429, count=1, retry_after="1")
    async with ingest_client(ingest_app(redis)) as client:
        async with running_worker(accounting_consumer(sandbox), redis, names) as worker:
            await deliver(client, samples.payment_intent_succeeded(amount=700, currency="usd"))
            await drained(redis, names)
    assert len((await sandbox.objects())["salesreceipts"]) == 1
    assert worker.counts["retry"] == 1 and worker.counts["acked"] == 1


async def test_a_refund_before_its_payment_waits_for_it(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    async with ingest_client(ingest_app(redis)) as client:
        async with running_worker(accounting_consumer(sandbox), redis, names, claim_interval_s=0.05):
            await deliver(client, refund("evt_R1", 1000))
            await wait_until(lambda: _has_retry(redis, names), what="the refund to wait for its payment")
            assert (await sandbox.objects())["refundreceipts"] == []
            await deliver(client, PAYMENT)
            await drained(redis, names)
    objects = await sandbox.objects()
    assert [Decimal(str(r["TotalAmt"])) for r in objects["salesreceipts"]] == [Decimal("50.00")]
    assert [Decimal(str(r["TotalAmt"])) for r in objects["refundreceipts"]] == [Decimal("10.00")]


async def _has_retry(redis, names) -> bool:  # type: ignore[no-untyped-def]
    return bool(await redis.hlen(names.retry("accounting")))


async def test_refunds_of_skipped_payments_are_skipped(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    consumer = accounting_consumer(sandbox, accounting_min_amount="100.00 USD")
    small = samples.payment_intent_succeeded(amount=500, currency="usd", payment_intent_id="pi_small", charge_id="ch_s")
    small_refund = samples.charge_refunded(
        charge_id="ch_s", payment_intent_id="pi_small", amount=500, amount_refunded=500, currency="usd"
    )
    async with ingest_client(ingest_app(redis)) as client:
        async with running_worker(consumer, redis, names):
            await deliver(client, small)
            await drained(redis, names)
            await deliver(client, small_refund)
            await drained(redis, names)
    assert await sandbox.objects() == {"salesreceipts": [], "refundreceipts": []}


async def test_zero_amount_payments_are_not_booked(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    async with ingest_client(ingest_app(redis)) as client:
        async with running_worker(accounting_consumer(sandbox), redis, names):
            await deliver(client, samples.payment_intent_succeeded(amount=0, currency="usd"))
            await drained(redis, names)
    assert (await sandbox.objects())["salesreceipts"] == []

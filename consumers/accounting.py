"""Accounting: payments become QuickBooks Online sales receipts, refunds become refund receipts.

- ``payment.succeeded`` → one SalesReceipt per *payment* (the event ``subject``, a Stripe PaymentIntent id), however
  many of ``payment_intent.succeeded``, ``charge.succeeded`` and ``invoice.paid`` arrive for it. The QuickBooks
  ``requestid`` is derived from the payment, so concurrent or retried attempts are deduplicated by QuickBooks itself;
  a record in Redis (``{prefix}:state:accounting:sales_receipt:{payment}``) skips the call for events that arrive
  later than QuickBooks remembers request ids.
- ``payment.refunded`` carries the charge's *cumulative* ``amount_refunded`` (shared case 020). A refund follows its
  payment: skipped if the payment was skipped by the rules below, retried (``NotReady``) until the payment is booked
  — and dead-lettered after the last attempt if it never is (a payment from before hookbus). Under a per-charge
  lock, the handler books ``amount_refunded - booked`` when positive and then raises ``booked``; an older event that
  arrives late books nothing. The refund receipt's ``requestid`` is derived from (charge, cumulative amount), so a
  crash between the QuickBooks call and the bookkeeping cannot book twice.
- Amounts leave minor units by the currency's exponent (:mod:`bus.money`); an unknown currency is dead-lettered.

Settings (environment, or ``*_FILE`` for secrets):

- ``QUICKBOOKS_BASE_URL`` (default ``https://quickbooks.api.intuit.com``; the sandbox in ``hookbus dev``),
  ``QUICKBOOKS_REALM_ID``, ``QUICKBOOKS_TIMEOUT_S``, and either ``QUICKBOOKS_REFRESH_TOKEN`` +
  ``QUICKBOOKS_CLIENT_ID`` + ``QUICKBOOKS_CLIENT_SECRET`` (OAuth 2.0 refresh grant at ``QUICKBOOKS_TOKEN_URL``; the
  token set is shared in Redis under ``{prefix}:state:accounting:oauth:quickbooks``, see docs/oauth.md) or a fixed
  ``QUICKBOOKS_ACCESS_TOKEN`` (sandboxes, short tests: it expires after an hour). The refresh token wins if both.
- ``ACCOUNTING_MIN_AMOUNT``: e.g. ``"100.00 USD"``: payments in that currency below it are skipped (other currencies
  are booked). Empty (the default) books everything.
- ``ACCOUNTING_INVOICES_ONLY``: ``true`` books only payments of Stripe invoices. Off by default.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from pydantic import Field, field_validator

from bus import Consumer, Context, Event
from bus.config import BusSettings
from bus.consumer import Lifespan, Resources
from bus.errors import ConfigError, NotReady, PermanentError
from bus.locks import held
from bus.money import normalize_currency, to_decimal

from .clients.quickbooks import INTUIT_TOKEN_URL, QuickBooksClient, RefundReceipt, SalesReceipt, intuit_tokens

#: How long (seconds) the record of a booked payment is kept: far longer than Stripe retries (3 days).
BOOKED_TTL_S = 90 * 24 * 3600


class AccountingSettings(BusSettings):
    quickbooks_base_url: str = "https://quickbooks.api.intuit.com"
    quickbooks_realm_id: str
    quickbooks_access_token: str = Field("", repr=False)
    quickbooks_refresh_token: str = Field("", repr=False)
    quickbooks_client_id: str = ""
    quickbooks_client_secret: str = Field("", repr=False)
    quickbooks_token_url: str = INTUIT_TOKEN_URL
    quickbooks_timeout_s: float = 10.0
    accounting_min_amount: str = ""
    accounting_invoices_only: bool = False

    @field_validator("accounting_min_amount")
    @classmethod
    def _check_min_amount(cls, value: str) -> str:
        if value.strip():
            parse_min_amount(value)
        return value


def parse_min_amount(text: str) -> tuple[Decimal, str] | None:
    """``"100.00 USD"`` → ``(Decimal("100.00"), "USD")``; empty → None. Raises :class:`ConfigError`."""
    if not text.strip():
        return None
    try:
        amount, currency = text.split()
        return Decimal(amount), normalize_currency(currency)
    except (ValueError, InvalidOperation, PermanentError) as exc:
        raise ConfigError(f"ACCOUNTING_MIN_AMOUNT must look like '100.00 USD', got {text!r}") from exc


def make_lifespan(
    settings: AccountingSettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> Lifespan:
    """The consumer's lifespan: settings (default: from the environment) and one QuickBooks client per process.
    ``transport`` replaces the network (tests pass the sandbox app through ``httpx.ASGITransport``)."""

    @contextlib.asynccontextmanager
    async def lifespan(resources: Resources) -> AsyncIterator[Mapping[str, Any]]:
        config = settings or AccountingSettings()  # type: ignore[call-arg]  # required fields come from the env
        tokens = None
        if config.quickbooks_refresh_token:
            if not (config.quickbooks_client_id and config.quickbooks_client_secret):
                raise ConfigError("QUICKBOOKS_REFRESH_TOKEN needs QUICKBOOKS_CLIENT_ID and QUICKBOOKS_CLIENT_SECRET")
            tokens = intuit_tokens(
                client_id=config.quickbooks_client_id,
                client_secret=config.quickbooks_client_secret,
                refresh_token=config.quickbooks_refresh_token,
                token_url=config.quickbooks_token_url,
                redis=resources.redis,
                key=resources.names.state("accounting", "oauth:quickbooks"),
                timeout_s=config.quickbooks_timeout_s,
                transport=transport,
            )
        elif not config.quickbooks_access_token:
            raise ConfigError(
                "QuickBooks: set QUICKBOOKS_REFRESH_TOKEN, QUICKBOOKS_CLIENT_ID and QUICKBOOKS_CLIENT_SECRET "
                "(or a fixed QUICKBOOKS_ACCESS_TOKEN)"
            )
        async with QuickBooksClient(
            base_url=config.quickbooks_base_url,
            realm_id=config.quickbooks_realm_id,
            access_token=config.quickbooks_access_token,
            tokens=tokens,
            timeout_s=config.quickbooks_timeout_s,
            transport=transport,
            limiter=resources.limiter,
        ) as quickbooks:
            yield {
                "settings": config,
                "quickbooks": quickbooks,
                "min_amount": parse_min_amount(config.accounting_min_amount),
            }

    return lifespan


consumer = Consumer("accounting", lifespan=make_lifespan())


def skip_reason(data: Mapping[str, Any], amount: Decimal, currency: str, state: Mapping[str, Any]) -> str | None:
    """Why a payment is not booked under the configured rules, or None to book it."""
    settings: AccountingSettings = state["settings"]
    if amount == 0:
        return "zero amount"
    if settings.accounting_invoices_only and not data.get("invoice_id"):
        return "not an invoice payment (ACCOUNTING_INVOICES_ONLY)"
    minimum = state["min_amount"]
    if minimum is not None and currency == minimum[1] and amount < minimum[0]:
        return f"below ACCOUNTING_MIN_AMOUNT {minimum[0]} {minimum[1]}"
    return None


def _customer_fields(data: Mapping[str, Any]) -> dict[str, str | None]:
    customer = data.get("customer") or {}
    return {"customer_name": customer.get("name"), "customer_email": customer.get("email")}


@consumer.handler("payment.succeeded")
async def book_sales_receipt(event: Event, ctx: Context) -> None:
    """Create one QuickBooks SalesReceipt for the payment ``event.subject``."""
    data = event.data
    payment_id = event.subject or data["payment_id"]
    currency = normalize_currency(data["currency"])
    amount = to_decimal(data["amount"], currency)
    reason = skip_reason(data, amount, currency, ctx.state)
    if reason:
        # Remembered so that refunds of this payment are skipped too.
        await ctx.redis.set(ctx.names.state(ctx.group, f"skipped:{payment_id}"), reason, ex=BOOKED_TTL_S)
        ctx.note(skipped=reason)
        return
    if data.get("stripe_object") == "invoice" and payment_id == data.get("invoice_id"):
        # Stripe API 2025-03-31 and later no longer link an invoice to its PaymentIntent in the webhook, so this
        # payment cannot be matched with a payment_intent.succeeded for it (see README, "Stripe events").
        ctx.log.warning("invoice.paid without a PaymentIntent: booked under the invoice id", extra={})
    booked_key = ctx.names.state(ctx.group, f"sales_receipt:{payment_id}")
    if existing := await ctx.redis.get(booked_key):
        ctx.note(quickbooks_sales_receipt=existing.decode(), already_booked="yes")
        return
    receipt = SalesReceipt(
        amount=amount,
        currency=currency,
        txn_date=_date_of(event.time),
        description=data.get("description") or f"Stripe payment {payment_id}",
        private_note=f"stripe {data.get('stripe_object')} {data.get('stripe_object_id')}; payment {payment_id}",
        doc_number=None,
        **_customer_fields(data),
    )
    quickbooks: QuickBooksClient = ctx.state["quickbooks"]
    created = await quickbooks.create_sales_receipt(receipt, request_id=ctx.key_for("sales_receipt", payment_id))
    await ctx.redis.set(booked_key, created.id, ex=BOOKED_TTL_S)
    ctx.note(quickbooks_sales_receipt=created.id)
    ctx.log.info(
        "sales receipt booked", extra={"downstream_id": created.id, "amount": str(amount), "currency": currency}
    )


@consumer.handler("payment.refunded")
async def book_refund_receipt(event: Event, ctx: Context) -> None:
    """Book the part of the charge's cumulative refunded amount not booked yet as one RefundReceipt."""
    data = event.data
    charge_id = event.subject or data["charge_id"]
    currency = normalize_currency(data["currency"])
    cumulative = int(data["amount_refunded"])
    to_decimal(cumulative, currency)  # an unknown currency is dead-lettered before anything is booked
    payment_id = data.get("payment_id") or charge_id
    if skipped := await ctx.redis.get(ctx.names.state(ctx.group, f"skipped:{payment_id}")):
        ctx.note(skipped=f"its payment was not booked: {skipped.decode()}")
        return
    if not await ctx.redis.exists(ctx.names.state(ctx.group, f"sales_receipt:{payment_id}")):
        # Out of order (the refund before its payment), or a payment hookbus never saw: retried shortly, and
        # dead-lettered after the last attempt so someone looks at it.
        raise NotReady(f"payment {payment_id} is not booked (yet)")
    booked_key = ctx.names.state(ctx.group, f"refunded:{charge_id}")
    async with held(ctx.redis, ctx.names.state(ctx.group, f"lock:refund:{charge_id}")):
        booked = int(await ctx.redis.get(booked_key) or 0)
        delta = cumulative - booked
        if delta <= 0:
            ctx.log.info(
                "refund already booked",
                extra={"outcome": "already_done", "booked_minor": booked, "amount_refunded_minor": cumulative},
            )
            return
        receipt = RefundReceipt(
            amount=to_decimal(delta, currency),
            currency=currency,
            txn_date=_date_of(event.time),
            description=f"Refund of Stripe charge {charge_id}" + (" (fully refunded)" if data.get("refunded") else ""),
            private_note=f"stripe charge {charge_id}; refunded total {cumulative} minor units",
            **_customer_fields(data),
        )
        quickbooks: QuickBooksClient = ctx.state["quickbooks"]
        request_id = ctx.key_for("refund_receipt", charge_id, str(cumulative))
        created = await quickbooks.create_refund_receipt(receipt, request_id=request_id)
        await ctx.redis.set(booked_key, cumulative, ex=BOOKED_TTL_S)
        ctx.note(quickbooks_refund_receipt=created.id)
    ctx.log.info(
        "refund receipt booked",
        extra={"downstream_id": created.id, "amount": str(receipt.amount), "currency": currency},
    )


def _date_of(rfc3339: str) -> dt.date:
    """The UTC calendar date of an RFC 3339 time (QuickBooks ``TxnDate``)."""
    return dt.datetime.fromisoformat(rfc3339).astimezone(dt.UTC).date()

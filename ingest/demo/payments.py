"""The payments scenario: Stripe payments and refunds booked in QuickBooks."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx

from bus.money import format_money, to_minor
from ingest.sources import stripe_samples as samples
from ingest.sources.stripe import signature_header

from .base import Webhook

QUICKBOOKS_REALM = "9130357992223456"


def stripe_webhook(label: str, body: bytes, secret: str) -> Webhook:
    header = signature_header(body, secret, int(time.time()))
    return Webhook(label, "/webhooks/stripe", body, {"Stripe-Signature": header, "Content-Type": "application/json"})


class Payments:
    title = "Payments: Stripe → QuickBooks"
    workers = ("accounting",)

    def env(self, sandbox_url: str) -> dict[str, str]:
        return {
            "STRIPE_WEBHOOK_SECRET": "whsec_demo_" + secrets.token_hex(16),
            "QUICKBOOKS_BASE_URL": f"{sandbox_url}/quickbooks",
            "QUICKBOOKS_REALM_ID": QUICKBOOKS_REALM,
            "QUICKBOOKS_ACCESS_TOKEN": "sandbox-token",
        }

    def rules(self) -> str:
        return ""  # payments need no rules; ACCOUNTING_MIN_AMOUNT stays off

    def webhooks(self, env: Mapping[str, str]) -> list[Webhook]:
        """Four payments in USD, EUR, JPY and KWD (two of them reported by two Stripe events), a partial refund,
        an event type hookbus ignores, a duplicate delivery and a forged signature."""
        secret = env["STRIPE_WEBHOOK_SECRET"].split(",")[0]
        pi_usd, ch_usd, pi_eur = samples.new_id("pi"), samples.new_id("ch"), samples.new_id("pi")
        first = samples.payment_intent_succeeded(
            amount=1999, currency="usd", payment_intent_id=pi_usd, charge_id=ch_usd
        )
        forger = "whsec_" + secrets.token_hex(16)
        return [
            stripe_webhook("payment_intent.succeeded 19.99 USD", first, secret),
            stripe_webhook(
                "charge.succeeded for the same payment",
                samples.charge_succeeded(amount=1999, currency="usd", payment_intent_id=pi_usd, charge_id=ch_usd),
                secret,
            ),
            stripe_webhook(
                "invoice.paid 45.00 EUR",
                samples.invoice_paid(amount=4500, currency="eur", payment_intent_id=pi_eur),
                secret,
            ),
            stripe_webhook(
                "payment_intent.succeeded for the same invoice payment",
                samples.payment_intent_succeeded(amount=4500, currency="eur", payment_intent_id=pi_eur),
                secret,
            ),
            stripe_webhook(
                "charge.succeeded 1500 JPY (zero-decimal)",
                samples.charge_succeeded(amount=1500, currency="jpy"),
                secret,
            ),
            stripe_webhook(
                "payment_intent.succeeded 12.345 KWD (three-decimal)",
                samples.payment_intent_succeeded(amount=12345, currency="kwd"),
                secret,
            ),
            stripe_webhook(
                "charge.refunded 5.00 of the USD payment",
                samples.charge_refunded(
                    charge_id=ch_usd, payment_intent_id=pi_usd, amount=1999, amount_refunded=500, currency="usd"
                ),
                secret,
            ),
            stripe_webhook("customer.created (not handled by hookbus)", samples.customer_created(), secret),
            stripe_webhook("the first payment delivered again (duplicate)", first, secret),
            stripe_webhook(
                "a payment signed with the wrong secret",
                samples.payment_intent_succeeded(amount=99900, currency="usd"),
                forger,
            ),
        ]

    def summarize(self, sandbox: httpx.Client) -> dict[str, Any]:
        objects = sandbox.get("/quickbooks/_sandbox/objects").json()

        def money(obj: dict[str, Any]) -> str:
            currency = obj["body"]["CurrencyRef"]["value"]
            total = sum(Decimal(str(line["Amount"])) for line in obj["body"]["Line"])
            return format_money(to_minor(total, currency), currency)

        return {
            "sales_receipts": [money(o) for o in objects["salesreceipts"]],
            "refund_receipts": [money(o) for o in objects["refundreceipts"]],
        }

    def lines(self, summary: Mapping[str, Any]) -> list[str]:
        sales, refunds = summary["sales_receipts"], summary["refund_receipts"]
        return [
            f"QuickBooks sales receipts   {len(sales)}: {', '.join(sales)}",
            f"QuickBooks refund receipts  {len(refunds)}: {', '.join(refunds)}",
        ]

"""The leads scenario: web forms and a Standard Webhooks sender → HubSpot contacts with a follow-up sequence."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

import httpx

from ..sources.forms import FormConfig
from .base import Webhook
from .samples import form_webhook, standard_webhook

RULES = """\
# Leads: two web forms and a webinar platform → HubSpot (crm worker).
[sources.forms.contact]
secret_env = "FORM_CONTACT_SECRET"
signature = "hmac-sha256"
honeypot = "website"
default_region = "US"
lead_source = "website-contact"
list_fields = ["services"]

[sources.forms.quote]
secret_env = "FORM_QUOTE_SECRET"
signature = "standard-webhooks"
honeypot = "website"
lead_source = "website-quote"

[sources.standard.webinar]
secret_env = "WEBINAR_WEBHOOK_SECRET"
[sources.standard.webinar.types]
"registrant.created" = "lead.created"

[crm.follow_up]
mode = "sequence"
sequence_id = "1001"
sender_email = "sales@shop.example"
user_id = "7001"
"""


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Leads:
    title = "Leads: web forms and a webinar platform → HubSpot"
    workers = ("crm",)

    def env(self, sandbox_url: str) -> dict[str, str]:
        return {
            "FORM_CONTACT_SECRET": "form_" + secrets.token_hex(16),
            "FORM_QUOTE_SECRET": whsec(),
            "WEBINAR_WEBHOOK_SECRET": whsec(),
            "HUBSPOT_BASE_URL": f"{sandbox_url}/hubspot",
            "HUBSPOT_ACCESS_TOKEN": "sandbox-token",
        }

    def rules(self) -> str:
        return RULES

    def webhooks(self, env: Mapping[str, str]) -> list[Webhook]:
        """A contact form post, the same person again through the quote form (other letter case, now with a phone),
        another person, a webinar registrant, a bot filling the honeypot, an unmapped webinar event and a forgery."""
        contact = FormConfig(secret_env="FORM_CONTACT_SECRET", honeypot="website")
        quote = FormConfig(secret_env="FORM_QUOTE_SECRET", signature="standard-webhooks", honeypot="website")
        contact_secret, quote_secret = env["FORM_CONTACT_SECRET"], env["FORM_QUOTE_SECRET"]
        webinar_secret = env["WEBINAR_WEBHOOK_SECRET"].split(",")[0]
        pat = {
            "name": "Pat Example",
            "email": "PAT@Example.com",
            "phone": "(415) 555-0100",
            "services": ["cleaning", "windows"],
            "message": "Could you quote a monthly clean?",
            "utm_source": "google",
            "utm_medium": "cpc",
            "utm_campaign": "spring-cleaning",
            "referrer": "https://www.google.com/",
            "website": "",
        }
        return [
            form_webhook("contact form: Pat Example (form-encoded, HMAC)", "contact", contact, contact_secret, pat),
            form_webhook(
                "quote form: the same person as ' pat@example.com ' (JSON, Standard Webhooks)",
                "quote",
                quote,
                quote_secret,
                {"name": "Pat Example", "email": " pat@example.com ", "phone": "+1 415 555 0100", "website": ""},
                as_json=True,
            ),
            form_webhook(
                "quote form: Sam Lee",
                "quote",
                quote,
                quote_secret,
                {"name": "Sam Lee", "email": "sam@lee.example", "company": "Lee & Co", "website": ""},
                as_json=True,
            ),
            standard_webhook(
                "webinar registrant.created: Alex Kim",
                "/webhooks/webinar",
                "registrant.created",
                {"email": "Alex.Kim@Webinar.example", "name": "Alex Kim", "company": "Kim Labs"},
                webinar_secret,
            ),
            form_webhook(
                "contact form: a bot filled the honeypot",
                "contact",
                contact,
                contact_secret,
                {"name": "Buy Now", "email": "bot@spam.example", "website": "http://spam.example"},
            ),
            standard_webhook(
                "webinar attendee.left (not mapped: ignored)",
                "/webhooks/webinar",
                "attendee.left",
                {"email": "alex.kim@webinar.example"},
                webinar_secret,
            ),
            form_webhook(
                "contact form signed with the wrong secret",
                "contact",
                contact,
                "form_" + secrets.token_hex(16),
                {"name": "Mallory", "email": "mallory@example.com"},
            ),
        ]

    def summarize(self, sandbox: httpx.Client) -> dict[str, Any]:
        objects = sandbox.get("/hubspot/_sandbox/objects").json()
        contacts = [
            {
                "id": c["id"],
                "email": c["properties"].get("email"),
                "source": c["properties"].get("hookbus_lead_source"),
                "phone": c["properties"].get("phone"),
            }
            for c in objects["contacts"]
        ]
        return {
            "hubspot_contacts": contacts,
            "hubspot_sequence_enrollments": [e["toEmail"] for e in objects["enrollments"]],
        }

    def lines(self, summary: Mapping[str, Any]) -> list[str]:
        contacts, enrolled = summary["hubspot_contacts"], summary["hubspot_sequence_enrollments"]
        described = "; ".join(
            f"{c['id']} {c['email']} [{c['source']}]" + (f" {c['phone']}" if c["phone"] else "") for c in contacts
        )
        return [
            f"HubSpot contacts            {len(contacts)}: {described}",
            f"HubSpot sequence follow-ups {len(enrolled)}: {', '.join(enrolled)}",
        ]

"""CRM: each ``lead.created`` becomes one HubSpot contact (created or updated), tagged, with its follow-up started.

- **One contact per person.** The contact is upserted by e-mail (``POST /crm/v3/objects/contacts/batch/upsert``,
  ``idProperty=email``, ``id`` = the lead's ``email_key``: trimmed and lower-cased), so ``PAT@Example.com`` and
  `` pat@example.com `` are one contact, updated the second time (cases 039/040); ``pat+quote@example.com`` is
  another person. A new contact gets the address as typed (case 040). A ``409 CONFLICT`` "Contact already exists.
  Existing ID: N" updates contact N instead (:mod:`consumers.clients.hubspot`), never a dead letter. A lead without
  a usable e-mail is acknowledged and skipped (logged): HubSpot contacts are keyed by e-mail here.
- **Tags.** The lead's source tag, form, UTM source/medium/campaign and referrer go into the HubSpot properties named
  in ``[crm.properties]`` (custom single-line text properties to create once in HubSpot; ``""`` turns one off).
  Only non-empty values are sent, so a later submission never blanks what an earlier one set. The lifecycle stage is
  never written: HubSpot assigns it to new contacts by its portal settings, and an existing customer is never
  demoted to "lead".
- **Follow-up, once per contact** (``[crm.follow_up]``): ``mode = "sequence"`` enrolls the contact in a HubSpot
  sequence (timed e-mails and tasks sent from the rep's connected inbox; HubSpot unenrolls the contact when they
  reply or book a meeting), ``mode = "list"`` adds it to a static list that a HubSpot workflow nurtures (its
  unenrollment criteria stop it), ``mode = "none"`` only syncs the contact. Before starting, the contact is read
  back: a lifecycle stage in ``stop_lifecycle_stages`` (default opportunity, customer, evangelist) or a recorded
  sales-e-mail reply (``hs_sales_email_last_replied``) means no follow-up. A started follow-up is remembered per
  contact for ``once_per_contact_days`` (and a sequence enrollment is checked at HubSpot first), so the same person
  submitting twice is followed up once. Why HubSpot rather than delayed hookbus events: HubSpot sees the replies
  that must stop the follow-up, and hookbus stays polling-free (no scheduler for messages days ahead).
- **Other senders.** A generic Standard Webhooks sender mapped to ``lead.created`` (``[sources.standard.*]``) needs
  only ``email`` (and optionally ``name``, ``phone``, ``company``, ``message``, ``lead_source``) in its data; the
  key is derived here and the tag defaults to the source name.
- **Order and concurrency.** Two submissions of one person are serialized by a per-address lock; a submission older
  than one already synced for that address *from the same source* is skipped (``ctx.is_current``), so a late
  delivery never overwrites newer details. Times of different sources are not compared: their clocks (a receive
  time, a sender's whole-second timestamp) cannot order submissions made a moment apart.

Settings: ``HUBSPOT_ACCESS_TOKEN`` (private app token, or ``*_FILE``), ``HUBSPOT_BASE_URL`` (default
``https://api.hubapi.com``), ``HUBSPOT_TIMEOUT_S``. Rules: ``[crm]`` (see ``docs/leads-and-inventory.md``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bus import Consumer, Context, Event, rules
from bus.config import BusSettings
from bus.consumer import Lifespan, Resources
from bus.locks import held

from .clients.hubspot import Contact, HubSpotClient

__all__ = ["CrmRules", "CrmSettings", "FollowUp", "consumer", "contact_properties", "email_key_of", "make_lifespan"]

#: Lead field → HubSpot contact property (``""``: not sent). ``email`` is always sent as ``email``.
DEFAULT_PROPERTIES: dict[str, str] = {
    "first_name": "firstname",
    "last_name": "lastname",
    "phone": "phone",
    "company": "company",
    "message": "message",
    "lead_source": "hookbus_lead_source",
    "form_id": "hookbus_form",
    "utm_source": "hookbus_utm_source",
    "utm_medium": "hookbus_utm_medium",
    "utm_campaign": "hookbus_utm_campaign",
    "referrer": "hookbus_referrer",
}
#: How long (seconds) the address → contact id record and the per-address lock live.
CONTACT_TTL_S = 365 * 24 * 3600
LOCK_TTL_MS = 60_000
STOP_PROPERTIES = ("lifecyclestage", "hs_sales_email_last_replied")


class CrmSettings(BusSettings):
    """HubSpot connection: ``HUBSPOT_ACCESS_TOKEN`` (required), ``HUBSPOT_BASE_URL``, ``HUBSPOT_TIMEOUT_S``."""

    hubspot_base_url: str = "https://api.hubapi.com"
    hubspot_access_token: str
    hubspot_timeout_s: float = 10.0


class FollowUp(BaseModel):
    """``[crm.follow_up]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["none", "sequence", "list"] = "none"
    sequence_id: str | None = None
    sender_email: str | None = None
    user_id: str | None = None
    list_id: str | None = None
    stop_lifecycle_stages: tuple[str, ...] = ("opportunity", "customer", "evangelist")
    stop_if_replied: bool = True
    once_per_contact_days: int = Field(default=90, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> FollowUp:
        if self.mode == "sequence" and not (self.sequence_id and self.sender_email and self.user_id):
            raise ValueError('mode = "sequence" needs sequence_id, sender_email and user_id')
        if self.mode == "list" and not self.list_id:
            raise ValueError('mode = "list" needs list_id')
        return self


class CrmRules(BaseModel):
    """``[crm]``: ``sources`` (act only on leads from these sources, e.g. ``["forms/contact"]``; empty: all),
    ``properties`` (lead field → HubSpot property), ``follow_up``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: tuple[str, ...] = ()
    properties: dict[str, str] = Field(default_factory=dict)
    follow_up: FollowUp = Field(default_factory=FollowUp)

    @field_validator("properties")
    @classmethod
    def _known(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DEFAULT_PROPERTIES))
        if unknown:
            raise ValueError(f"unknown lead field(s) {unknown}; known: {sorted(DEFAULT_PROPERTIES)}")
        return value

    @property
    def property_map(self) -> dict[str, str]:
        return DEFAULT_PROPERTIES | self.properties


def email_key_of(email: object) -> str | None:
    """The identity of an address for leads that carry no ``email_key`` (a generic sender's ``lead.created``):
    trimmed and lower-cased, as the form source computes it; None if it is not ``local@domain``."""
    if not isinstance(email, str):
        return None
    key = email.strip().lower()
    local, at, domain = key.rpartition("@")
    return key if at and local and "." in domain and not any(c.isspace() for c in key) else None


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    if not name:
        return None, None
    first, _, last = name.strip().partition(" ")
    return first or None, last.strip() or None


def contact_properties(data: Mapping[str, Any], property_map: Mapping[str, str]) -> dict[str, str]:
    """The HubSpot properties for a lead: the address as typed, then every mapped non-empty field."""
    first, last = data.get("first_name"), data.get("last_name")
    if not first and not last:
        first, last = _split_name(data.get("name"))
    utm = data.get("utm")
    if not isinstance(utm, dict):  # a generic sender may send anything here; tags are optional, never fatal
        utm = {}
    values: dict[str, Any] = {
        "first_name": first,
        "last_name": last,
        "phone": data.get("phone") or data.get("phone_raw"),
        "company": data.get("company"),
        "message": data.get("message"),
        "lead_source": data.get("lead_source"),
        "form_id": data.get("form_id"),
        "utm_source": utm.get("source"),
        "utm_medium": utm.get("medium"),
        "utm_campaign": utm.get("campaign"),
        "referrer": data.get("referrer"),
    }
    properties = {"email": str(data["email"]).strip()}
    for field_name, value in values.items():
        prop = property_map.get(field_name, "")
        if prop and isinstance(value, str) and value.strip():
            properties[prop] = value.strip()
    return properties


def make_lifespan(
    settings: CrmSettings | None = None,
    crm_rules: CrmRules | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Lifespan:
    """Settings (default: the environment), rules (default: the rules file's ``[crm]``) and one HubSpot client per
    process. ``transport`` replaces the network in tests (the sandbox through ``httpx.ASGITransport``)."""

    @contextlib.asynccontextmanager
    async def lifespan(resources: Resources) -> AsyncIterator[Mapping[str, Any]]:
        config = settings or CrmSettings()  # type: ignore[call-arg]  # the token comes from the environment
        section = crm_rules or rules.section("crm", CrmRules)
        async with HubSpotClient(
            base_url=config.hubspot_base_url,
            access_token=config.hubspot_access_token,
            timeout_s=config.hubspot_timeout_s,
            transport=transport,
            limiter=resources.limiter,
        ) as hubspot:
            yield {"settings": config, "rules": section, "hubspot": hubspot}

    return lifespan


consumer = Consumer("crm", lifespan=make_lifespan())


@consumer.handler("lead.created")
async def sync_lead(event: Event, ctx: Context) -> None:
    """Upsert the lead's contact in HubSpot and start its follow-up once."""
    section: CrmRules = ctx.state["rules"]
    data = event.data
    if section.sources and event.source not in section.sources:
        ctx.log.info("lead skipped", extra={"outcome": "skipped", "why": f"source {event.source} not in [crm] sources"})
        return
    email = data.get("email")
    email_key = data.get("email_key") or email_key_of(email)
    if not email_key or not email:
        ctx.log.info("lead skipped", extra={"outcome": "skipped", "why": "no valid e-mail address"})
        return
    hubspot: HubSpotClient = ctx.state["hubspot"]
    async with held(ctx.redis, ctx.names.state(ctx.group, f"lock:contact:{email_key}"), ttl_ms=LOCK_TTL_MS):
        # Snapshot times are compared per source: two senders' clocks (or a receive time and a sender's timestamp)
        # are not comparable to the second, and submissions through different forms are all news.
        if not await ctx.is_current(f"contact:{event.source}:{email_key}", event.time):
            ctx.log.info("lead skipped", extra={"outcome": "skipped", "why": "a newer submission was already synced"})
            return
        properties = contact_properties(
            {**data, "lead_source": data.get("lead_source") or event.source}, section.property_map
        )
        contact = await hubspot.upsert_contact(email_key, properties)
        await ctx.redis.set(ctx.names.state(ctx.group, f"contact:{email_key}"), contact.id, ex=CONTACT_TTL_S)
        follow_up = await start_follow_up(hubspot, contact, ctx, section.follow_up)
    ctx.note(hubspot_contact=contact.id, contact_created="yes" if contact.new else "no", follow_up=follow_up)
    ctx.log.info(
        "contact synced",
        extra={"downstream_id": contact.id, "created": contact.new, "follow_up": follow_up},
    )


async def start_follow_up(hubspot: HubSpotClient, contact: Contact, ctx: Context, config: FollowUp) -> str:
    """Start the configured follow-up unless it was started for this contact or a stop condition holds; returns
    what happened (for the log)."""
    if config.mode == "none":
        return "off"
    started_key = ctx.names.state(ctx.group, f"follow_up:{contact.id}")
    if await ctx.redis.get(started_key):
        return "already_started"
    current = await hubspot.get_contact(contact.id, STOP_PROPERTIES)
    stage = current.properties.get("lifecyclestage")
    if stage and stage in config.stop_lifecycle_stages:
        return f"stopped: lifecycle stage {stage}"
    if config.stop_if_replied and current.properties.get("hs_sales_email_last_replied"):
        return "stopped: the contact replied"
    if config.mode == "sequence":
        assert config.sequence_id and config.sender_email and config.user_id
        if await hubspot.sequence_enrollment(contact.id) is not None:
            outcome = "already_enrolled"
        else:
            await hubspot.enroll_in_sequence(
                contact_id=contact.id,
                sequence_id=config.sequence_id,
                sender_email=config.sender_email,
                user_id=config.user_id,
            )
            outcome = f"enrolled in sequence {config.sequence_id}"
    else:
        assert config.list_id
        await hubspot.add_to_list(config.list_id, [contact.id])
        outcome = f"added to list {config.list_id}"
    await ctx.redis.set(started_key, config.mode, ex=config.once_per_contact_days * 24 * 3600)
    return outcome

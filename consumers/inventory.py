"""Inventory: stock levels below a SKU's reorder point place one reorder per low-stock episode.

For each ``inventory.level_changed`` (Shopify, or any system through the generic endpoint) the SKU's rule is looked
up in ``[inventory.items.<SKU>]`` — by the event's ``sku``, else by its ``item_id`` listed in the rule's
``item_ids`` (Shopify sends inventory item ids, not SKUs). Events for SKUs or locations without a rule are
acknowledged and ignored.

**Episodes.** Each (SKU, location) is *armed* or has an *open* episode. A level strictly below ``reorder_point``
while armed opens an episode and places exactly one reorder; further levels below the point while it is open do
nothing; a level strictly above the point re-arms (a restock); a level equal to the point changes nothing. With
reorder point 10, the levels 12 → 9 → 7 → 15 → 4 place two reorders (at 9 and at 4).

The state lives in one Redis hash per (SKU, location) (``{prefix}:state:inventory:episode:{sku}:{location}``:
``state``, ``episode``, ``opener``, ``t``, ``available``, ``order``) and is read and updated by one Lua script, so
concurrent events for one SKU in several worker processes cannot both open an episode. The script also keeps the
event time of the last level applied and ignores an older one (snapshot ordering, as ``ctx.is_current`` does, but in
the same atomic step): a late, stale level can neither re-arm nor re-open. The event that opened an episode is
recorded; its retries (the supplier was down) are told to place the order again, with the same idempotency key.

**Reorders.** A supplier with ``api = true`` gets a purchase order (``POST {SUPPLIER_BASE_URL}/purchase-orders``,
one line: the supplier's SKU and ``reorder_quantity``) with an ``Idempotency-Key`` derived from the SKU, location,
episode and opening event, so a retry never orders twice. For a supplier without an API the purchasing contact gets
an e-mail (SendGrid, :mod:`consumers.clients.email`) saying what to order from whom; SendGrid cannot deduplicate, so
the send is a ``ctx.once`` step (at most one e-mail per episode, barring a crash between sending and recording).

Settings: ``SUPPLIER_BASE_URL``, ``SUPPLIER_API_KEY`` (needed when a supplier has ``api = true``),
``SENDGRID_API_KEY`` (needed when one has not), ``SENDGRID_BASE_URL`` (default ``https://api.sendgrid.com``),
``SUPPLIER_TIMEOUT_S``, ``SENDGRID_TIMEOUT_S``. Rules: ``[inventory]`` (see ``docs/leads-and-inventory.md``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bus import Consumer, Context, Event, rules
from bus.config import BusSettings
from bus.consumer import Lifespan, Resources
from bus.errors import ConfigError
from bus.ordering import to_unix_ms

from .clients.email import EmailClient, EmailMessage
from .clients.supplier import OrderLine, PurchaseOrder, SupplierClient

__all__ = [
    "InventoryConsumerSettings",
    "InventoryRules",
    "Item",
    "Supplier",
    "apply_level",
    "consumer",
    "make_lifespan",
]

#: Episode state is kept this long (seconds) after the last level seen for a SKU and location.
EPISODE_TTL_S = 400 * 24 * 3600
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")

# KEYS[1] = episode hash. ARGV: 1 = event time (Unix ms), 2 = available, 3 = reorder point, 4 = event key,
# 5 = TTL (s). Returns {action, episode}: action is "reorder" (place the episode's order: a new episode, or a retry
# of the event that opened the current one), "open" (below the point, already ordered), "rearmed", "stale", "ok".
_APPLY = """
local h = KEYS[1]
local state = redis.call('HGET', h, 'state') or 'armed'
local episode = tonumber(redis.call('HGET', h, 'episode') or '0')
if state == 'open' and redis.call('HGET', h, 'opener') == ARGV[4] then return {'reorder', episode} end
local last = tonumber(redis.call('HGET', h, 't') or '-1')
if tonumber(ARGV[1]) < last then return {'stale', episode} end
local available = tonumber(ARGV[2])
local point = tonumber(ARGV[3])
redis.call('HSET', h, 't', ARGV[1], 'available', ARGV[2])
redis.call('EXPIRE', h, ARGV[5])
if available < point then
  if state == 'open' then return {'open', episode} end
  episode = episode + 1
  redis.call('HSET', h, 'state', 'open', 'episode', episode, 'opener', ARGV[4])
  redis.call('HDEL', h, 'order')
  return {'reorder', episode}
end
if available > point and state == 'open' then
  redis.call('HSET', h, 'state', 'armed')
  redis.call('HDEL', h, 'opener')
  return {'rearmed', episode}
end
return {'ok', episode}
"""


class InventoryConsumerSettings(BusSettings):
    """Downstream connections; each is required only if some supplier needs it."""

    supplier_base_url: str = ""
    supplier_api_key: str = ""
    supplier_timeout_s: float = 10.0
    sendgrid_base_url: str = "https://api.sendgrid.com"
    sendgrid_api_key: str = ""
    sendgrid_timeout_s: float = 10.0


class Supplier(BaseModel):
    """``[inventory.suppliers.<name>]``: ``api = true`` orders through the purchase-order API (``account``: our
    customer number there); otherwise the purchasing contact is alerted, with ``contact`` (how to order: a phone
    number, an e-mail, a portal) in the message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api: bool = False
    name: str | None = None
    account: str | None = None
    contact: str | None = None


class Item(BaseModel):
    """``[inventory.items.<SKU>]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reorder_point: int = Field(ge=0)
    reorder_quantity: int = Field(gt=0)
    supplier: str
    supplier_sku: str | None = None
    item_ids: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()


class InventoryRules(BaseModel):
    """``[inventory]``: ``purchasing_contact`` and ``alert_from`` (e-mail addresses for suppliers without an API),
    ``suppliers`` and ``items``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    purchasing_contact: str | None = None
    alert_from: str | None = None
    suppliers: dict[str, Supplier] = Field(default_factory=dict)
    items: dict[str, Item] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> InventoryRules:
        seen: dict[str, str] = {}
        for sku, item in self.items.items():
            if item.supplier not in self.suppliers:
                raise ValueError(f"items.{sku}: supplier {item.supplier!r} is not in [inventory.suppliers]")
            for item_id in item.item_ids:
                if item_id in seen:
                    raise ValueError(f"item id {item_id} is listed for both {seen[item_id]} and {sku}")
                seen[item_id] = sku
        if self.needs_email:
            for key in ("purchasing_contact", "alert_from"):
                value = getattr(self, key)
                if not value or not _EMAIL.fullmatch(value):
                    raise ValueError(f"{key} must be an e-mail address: a supplier without an API is alerted by e-mail")
        return self

    @property
    def needs_api(self) -> bool:
        return any(self.suppliers[item.supplier].api for item in self.items.values())

    @property
    def needs_email(self) -> bool:
        return any(not self.suppliers[item.supplier].api for item in self.items.values())

    def rule_for(self, sku: str | None, item_id: str | None) -> tuple[str, Item] | None:
        """``(SKU, rule)`` for an event's SKU, else its item id; None without a rule."""
        if sku and sku in self.items:
            return sku, self.items[sku]
        if item_id:
            for candidate, item in self.items.items():
                if item_id in item.item_ids:
                    return candidate, item
        return None


@dataclass(frozen=True, slots=True)
class Applied:
    action: str
    episode: int


async def apply_level(
    ctx: Context, sku: str, location: str, available: int, reorder_point: int, event_time: str, event_key: str
) -> Applied:
    """Apply one level to the (SKU, location) episode atomically (see the module docstring)."""
    key = ctx.names.state(ctx.group, f"episode:{sku}:{location}")
    action, episode = await ctx.redis.eval(
        _APPLY, 1, key, to_unix_ms(event_time), available, reorder_point, event_key, EPISODE_TTL_S
    )
    return Applied(action.decode() if isinstance(action, bytes) else str(action), int(episode))


def make_lifespan(
    settings: InventoryConsumerSettings | None = None,
    inventory_rules: InventoryRules | None = None,
    *,
    supplier_transport: httpx.AsyncBaseTransport | None = None,
    email_transport: httpx.AsyncBaseTransport | None = None,
) -> Lifespan:
    """Settings, rules (default: the rules file's ``[inventory]``) and the clients the rules need."""

    @contextlib.asynccontextmanager
    async def lifespan(resources: Resources) -> AsyncIterator[Mapping[str, Any]]:
        config = settings or InventoryConsumerSettings()
        section = inventory_rules or rules.section("inventory", InventoryRules)
        state: dict[str, Any] = {"settings": config, "rules": section, "supplier": None, "email": None}
        async with contextlib.AsyncExitStack() as stack:
            if section.needs_api:
                if not config.supplier_base_url or not config.supplier_api_key:
                    raise ConfigError("a supplier has api = true: set SUPPLIER_BASE_URL and SUPPLIER_API_KEY")
                state["supplier"] = await stack.enter_async_context(
                    SupplierClient(
                        base_url=config.supplier_base_url,
                        api_key=config.supplier_api_key,
                        timeout_s=config.supplier_timeout_s,
                        transport=supplier_transport,
                        limiter=resources.limiter,
                    )
                )
            if section.needs_email:
                if not config.sendgrid_api_key:
                    raise ConfigError("a supplier has no API, so alerts are e-mailed: set SENDGRID_API_KEY")
                state["email"] = await stack.enter_async_context(
                    EmailClient(
                        base_url=config.sendgrid_base_url,
                        api_key=config.sendgrid_api_key,
                        timeout_s=config.sendgrid_timeout_s,
                        transport=email_transport,
                        limiter=resources.limiter,
                    )
                )
            yield state

    return lifespan


consumer = Consumer("inventory", lifespan=make_lifespan())


@consumer.handler("inventory.level_changed")
async def check_level(event: Event, ctx: Context) -> None:
    """Compare the level with the SKU's reorder point; reorder once per low-stock episode."""
    section: InventoryRules = ctx.state["rules"]
    data = event.data
    found = section.rule_for(data.get("sku"), data.get("item_id"))
    location = str(data.get("location_id") or "default")
    available = data.get("available")
    if found is None or not isinstance(available, int) or isinstance(available, bool):
        ctx.log.info("level ignored", extra={"outcome": "skipped", "why": "no reorder rule for this item"})
        return
    sku, item = found
    if item.locations and location not in item.locations:
        ctx.log.info("level ignored", extra={"outcome": "skipped", "why": f"location {location} not in the rule"})
        return
    applied = await apply_level(ctx, sku, location, available, item.reorder_point, event.time, ctx.idempotency_key)
    extra = {"sku": sku, "location": location, "available": available, "episode": applied.episode}
    ctx.note(sku=sku, episode=applied.episode, action=applied.action)
    if applied.action != "reorder":
        ctx.log.info("level applied", extra=extra | {"action": applied.action})
        return
    supplier = section.suppliers[item.supplier]
    note = f"Reorder: {sku} at {location} fell to {available} (reorder point {item.reorder_point})"
    if supplier.api:
        client: SupplierClient = ctx.state["supplier"]
        order = PurchaseOrder(
            reference=f"hookbus-{sku}-{location}-{applied.episode}"[:64],
            lines=[OrderLine(item.supplier_sku or sku, item.reorder_quantity)],
            location_id=location,
            account=supplier.account,
            note=note,
        )
        key = ctx.key_for("reorder", sku, location, str(applied.episode), source=event.source, event_id=event.id)
        submitted = await client.create_purchase_order(order, idempotency_key=key)
        await ctx.redis.hset(ctx.names.state(ctx.group, f"episode:{sku}:{location}"), "order", submitted.id)
        ctx.note(purchase_order=submitted.id)
        ctx.log.info("reorder placed", extra=extra | {"downstream_id": submitted.id, "replayed": submitted.replayed})
        return
    email: EmailClient = ctx.state["email"]
    assert section.purchasing_contact and section.alert_from
    message = EmailMessage(
        to=[section.purchasing_contact],
        sender=section.alert_from,
        sender_name="hookbus",
        subject=f"Reorder needed: {sku} at {location} ({available} left)",
        text=(
            f"{note}.\n\nPlease order {item.reorder_quantity} × {item.supplier_sku or sku} from "
            f"{supplier.name or item.supplier}" + (f" ({supplier.contact})" if supplier.contact else "") + ".\n"
            "This supplier has no ordering API, so hookbus did not order it. You get one alert per low-stock "
            "episode; the next one comes after stock has been above the reorder point again.\n"
        ),
        custom_args={"hookbus_key": ctx.key_for("alert", sku, location, str(applied.episode))},
    )

    async def send() -> str | None:
        return await email.send(message)

    message_id = await ctx.once("alert", send)
    ctx.note(alert_message=message_id)
    await ctx.redis.hset(ctx.names.state(ctx.group, f"episode:{sku}:{location}"), "order", f"alert:{message_id}")
    ctx.log.info("reorder alert sent", extra=extra | {"downstream_id": message_id})

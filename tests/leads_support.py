"""Helpers for the leads and inventory tests: ingest with chosen sources, the HubSpot/supplier/e-mail sandboxes in
process, and the crm/inventory consumers wired to them."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import redis.asyncio as aioredis
from starlette.applications import Starlette

from bus.consumer import Consumer
from consumers import crm, inventory
from consumers.sandboxes import email as email_sandbox
from consumers.sandboxes import hubspot as hubspot_sandbox
from consumers.sandboxes import supplier as supplier_sandbox
from ingest.app import create_app
from ingest.config import IngestSettings
from ingest.sources.base import Source

TOKEN = "sandbox-token"


def ingest_with(
    redis: aioredis.Redis,
    sources: Sequence[Source],
    *,
    consumers: Sequence[Consumer] = (),
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The ingest app serving exactly ``sources`` (by name)."""
    return create_app(
        IngestSettings(), redis=redis, sources={s.name: s for s in sources}, consumers=list(consumers), clock=clock
    )


class Sandbox:
    """A stand-in app in process, and a transport to it."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.transport = httpx.ASGITransport(app=app)

    async def objects(self) -> dict[str, Any]:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://sandbox") as client:
            result: dict[str, Any] = (await client.get("/_sandbox/objects")).json()
            return result

    async def fault(self, **spec: Any) -> None:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://sandbox") as client:
            (await client.post("/_sandbox/faults", json=spec)).raise_for_status()

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://sandbox") as client:
            return await client.post(path, **kwargs)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}"} | kwargs.pop("headers", {})
        async with httpx.AsyncClient(transport=self.transport, base_url="http://sandbox") as client:
            return await client.request(method, path, headers=headers, **kwargs)


def hubspot() -> Sandbox:
    return Sandbox(hubspot_sandbox.create_app(TOKEN))


def supplier(catalog: Sequence[str] | None = None) -> Sandbox:
    return Sandbox(supplier_sandbox.create_app(TOKEN, catalog=catalog))


def email() -> Sandbox:
    return Sandbox(email_sandbox.create_app(TOKEN))


def crm_consumer(sandbox: Sandbox, rules: dict[str, Any] | None = None) -> Consumer:
    settings = crm.CrmSettings(hubspot_base_url="http://hubspot", hubspot_access_token=TOKEN)
    section = crm.CrmRules.model_validate(rules or {})
    return dataclasses.replace(crm.consumer, lifespan=crm.make_lifespan(settings, section, transport=sandbox.transport))


def inventory_consumer(
    rules: dict[str, Any], *, supplier_box: Sandbox | None = None, email_box: Sandbox | None = None
) -> Consumer:
    settings = inventory.InventoryConsumerSettings(
        supplier_base_url="http://supplier",
        supplier_api_key=TOKEN,
        sendgrid_base_url="http://sendgrid",
        sendgrid_api_key=TOKEN,
    )
    section = inventory.InventoryRules.model_validate(rules)
    lifespan = inventory.make_lifespan(
        settings,
        section,
        supplier_transport=supplier_box.transport if supplier_box else None,
        email_transport=email_box.transport if email_box else None,
    )
    return dataclasses.replace(inventory.consumer, lifespan=lifespan)

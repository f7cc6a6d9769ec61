"""Async client for the HubSpot CRM calls the ``crm`` consumer makes.

Authentication: a private app access token, ``Authorization: Bearer <token>``
(https://developers.hubspot.com/docs/api/private-apps). Calls:

- Upsert a contact by e-mail — ``POST /crm/v3/objects/contacts/batch/upsert`` with one input
  ``{"idProperty": "email", "id": "<email key>", "properties": {...}}``
  (https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/upsert-contacts). It creates
  the contact or updates the one with that address, so the same person submitting twice is one contact. The answer
  says which (``results[0].new``).
- ``409 CONFLICT`` — ``{"status": "error", "message": "Contact already exists. Existing ID: 501", "category":
  "CONFLICT"}`` — is what HubSpot answers when a create races another create of the same address, or the address
  is already another contact's (shared case 040; HubSpot/hubspot-api-nodejs#545). The client then updates the
  existing contact instead: ``PATCH /crm/v3/objects/contacts/{id}``; never a dead letter, never a second contact.
- Read a contact's properties — ``GET /crm/v3/objects/contacts/{id}?properties=…`` (the follow-up's stop
  conditions: ``lifecyclestage``, ``hs_sales_email_last_replied``).
- Sequences (Sales/Service Hub Professional+) — ``GET /automation/v4/sequences/enrollments/contact/{contactId}``
  (404: not enrolled) and ``POST /automation/v4/sequences/enrollments?userId=…`` with ``{"contactId", "sequenceId",
  "senderEmail"}`` (https://developers.hubspot.com/docs/api-reference/legacy/automation/sequences/enroll-contact).
- Lists — ``PUT /crm/v3/lists/{listId}/memberships/add`` with ``["<record id>"]``; members already in the list are
  ignored, so it is idempotent (https://developers.hubspot.com/docs/api-reference/2026-03/crm/lists/memberships/
  add-to-list).

Errors follow :mod:`consumers.clients.responses`; HubSpot error bodies carry ``message`` and ``category``
(``VALIDATION_ERROR``, ``INVALID_AUTHENTICATION``, ``RATE_LIMITS``, ``CONFLICT``, ``OBJECT_NOT_FOUND``). Requests go
through :class:`bus.http.InstrumentedTransport` (API name ``hubspot``): the shared rate limit (100 requests per 10 s
by default, https://developers.hubspot.com/docs/api/usage-details#rate-limits), metrics, pauses after a 429.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from bus.errors import PermanentError
from bus.ratelimit import Limiter

from .base import BearerClient
from .responses import json_message, raise_for_status, transport_error

__all__ = ["Contact", "HubSpotClient", "existing_id"]

API = "hubspot"
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")
_message = json_message("message")


@dataclass(frozen=True, slots=True)
class Contact:
    """A HubSpot contact as an API call returned it; ``new`` is true when the call created it."""

    id: str
    new: bool = False
    properties: Mapping[str, Any] = field(default_factory=dict)


def existing_id(response: httpx.Response) -> str | None:
    """The contact id in a ``409 CONFLICT`` "Contact already exists. Existing ID: 501" answer, or None."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    match = _EXISTING_ID.search(str(body.get("message") or ""))
    return match.group(1) if match else None


class HubSpotClient(BearerClient):
    """HubSpot CRM client. ``base_url``: ``https://api.hubapi.com`` or a stand-in; ``access_token``: the private app
    token (never logged); ``transport``: an httpx transport for tests; ``limiter``: the shared rate limiter."""

    api = API

    def __init__(
        self,
        *,
        base_url: str,
        access_token: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        if not access_token:
            raise ValueError("a HubSpot access token is required")
        super().__init__(
            base_url=base_url, token=access_token, timeout_s=timeout_s, transport=transport, limiter=limiter
        )

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(API, exc) from exc

    # -- contacts --

    async def upsert_contact(self, email_key: str, properties: Mapping[str, str]) -> Contact:
        """Create or update the contact whose e-mail is ``email_key`` (case-insensitive at HubSpot)."""
        body = {"inputs": [{"idProperty": "email", "id": email_key, "properties": dict(properties)}]}
        response = await self._request("POST", "/crm/v3/objects/contacts/batch/upsert", json=body)
        if response.status_code == 409:
            return await self._update_existing(response, properties)
        raise_for_status(response, API, _message)
        doc = response.json()
        errors = doc.get("errors") if isinstance(doc, dict) else None
        results = doc.get("results") if isinstance(doc, dict) else None
        if errors and not results:  # 207 Multi-Status with only errors
            first = errors[0] if isinstance(errors[0], dict) else {}
            if first.get("category") == "CONFLICT" and (found := _EXISTING_ID.search(str(first.get("message")))):
                return await self.update_contact(found.group(1), properties)
            raise PermanentError(f"hubspot_validation: {first.get('category')} {first.get('message')}")
        if not isinstance(results, list) or not results or not isinstance(results[0], dict) or "id" not in results[0]:
            raise PermanentError(f"hubspot_unexpected_response: {response.status_code} without results[0].id")
        result = results[0]
        return Contact(id=str(result["id"]), new=bool(result.get("new")), properties=result.get("properties") or {})

    async def _update_existing(self, response: httpx.Response, properties: Mapping[str, str]) -> Contact:
        contact_id = existing_id(response)
        if contact_id is None:
            raise PermanentError(f"hubspot_conflict: 409 {_message(response)} (no existing contact id in it)")
        return await self.update_contact(contact_id, properties)

    async def update_contact(self, contact_id: str, properties: Mapping[str, str]) -> Contact:
        """``PATCH`` the contact's ``properties``."""
        response = await self._request(
            "PATCH", f"/crm/v3/objects/contacts/{quote(contact_id, safe='')}", json={"properties": dict(properties)}
        )
        raise_for_status(response, API, _message)
        doc = response.json()
        return Contact(id=str(doc.get("id", contact_id)), new=False, properties=doc.get("properties") or {})

    async def get_contact(self, contact_id: str, properties: Sequence[str]) -> Contact:
        """The contact with the given ``properties`` (a property without a value comes back as ``None``)."""
        response = await self._request(
            "GET",
            f"/crm/v3/objects/contacts/{quote(contact_id, safe='')}",
            params={"properties": ",".join(properties)},
        )
        raise_for_status(response, API, _message)
        doc = response.json()
        return Contact(id=str(doc.get("id", contact_id)), properties=doc.get("properties") or {})

    # -- follow-up --

    async def sequence_enrollment(self, contact_id: str) -> dict[str, Any] | None:
        """The contact's current sequence enrollment, or None when it is in no sequence (404)."""
        response = await self._request(
            "GET", f"/automation/v4/sequences/enrollments/contact/{quote(contact_id, safe='')}"
        )
        if response.status_code == 404:
            return None
        raise_for_status(response, API, _message)
        doc: dict[str, Any] = response.json()
        return doc

    async def enroll_in_sequence(
        self, *, contact_id: str, sequence_id: str, sender_email: str, user_id: str
    ) -> dict[str, Any]:
        """Enroll the contact in a sequence sent by ``user_id`` from ``sender_email`` (a connected inbox)."""
        response = await self._request(
            "POST",
            "/automation/v4/sequences/enrollments",
            params={"userId": user_id},
            json={"contactId": contact_id, "sequenceId": sequence_id, "senderEmail": sender_email},
        )
        raise_for_status(response, API, _message)
        doc: dict[str, Any] = response.json()
        return doc

    async def add_to_list(self, list_id: str, record_ids: Sequence[str]) -> dict[str, Any]:
        """Add records to a ``MANUAL``/``SNAPSHOT`` list; records already in it are ignored by HubSpot."""
        response = await self._request(
            "PUT", f"/crm/v3/lists/{quote(list_id, safe='')}/memberships/add", json=list(record_ids)
        )
        raise_for_status(response, API, _message)
        doc: dict[str, Any] = response.json()
        return doc

"""Local stand-in for the HubSpot CRM API calls hookbus makes (tests, demo, development — never production).

It behaves like HubSpot where hookbus depends on it (https://developers.hubspot.com/docs/api-reference/):

- ``Authorization: Bearer <token>`` required; otherwise 401 ``INVALID_AUTHENTICATION``.
- Contacts: e-mail is unique and matched case-insensitively. ``POST /crm/v3/objects/contacts/batch/upsert``
  (``idProperty`` must be ``email``, the only unique contact property used here: anything else is HubSpot's 400
  "Unable to perform update/upsert by non-unique 0-1 property"; 1–100 inputs, no duplicate ids) creates or
  updates and says which with ``new``. ``POST /crm/v3/objects/contacts`` answers **409 CONFLICT** "Contact already
  exists. Existing ID: N" for an address that exists (case 040). ``PATCH``/``GET /crm/v3/objects/contacts/{id}``.
  Property values are validated as HubSpot does: unknown properties (``PROPERTY_DOESNT_EXIST``), read-only ones
  (``READ_ONLY_VALUE``), malformed e-mails (``INVALID_EMAIL``), unknown ``lifecyclestage`` options
  (``INVALID_OPTION``) are a 400 ``VALIDATION_ERROR`` whose ``message`` lists them.
- Sequences: ``POST /automation/v4/sequences/enrollments?userId=`` (sequence must exist, the contact must exist and
  be in no sequence: a contact is in at most one sequence at a time) and
  ``GET /automation/v4/sequences/enrollments/contact/{id}`` (404 when not enrolled). A reply unenrolls, as in
  HubSpot: ``POST /_sandbox/contacts/{id}/reply`` simulates one (sets ``hs_sales_email_last_replied``).
- Lists: ``PUT /crm/v3/lists/{listId}/memberships/add`` (known list; records already in it are ignored).
- ``POST /_sandbox/faults`` (see :mod:`consumers.sandboxes.faults`): an injected ``409`` on a contact write names
  the existing contact of that address, as HubSpot's conflict does; ``429`` is HubSpot's ``RATE_LIMITS`` body.
- ``GET /_sandbox/objects``: contacts, enrollments, list memberships and every API request received (method, path,
  body) so tests can count PATCHes; ``POST /_sandbox/reset``.

Contact ids start at 501 (the id case 040 expects for the first contact).
"""

from __future__ import annotations

import copy
import hmac
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import Faults, route_path

DEFAULT_ACCESS_TOKEN = "sandbox-token"
FIRST_CONTACT_ID = 501
PORTAL_ID = 24681357

#: Default contact properties (writable unless in READ_ONLY) and the demo's custom properties.
DEFAULT_PROPERTIES = frozenset(
    {
        "email",
        "firstname",
        "lastname",
        "phone",
        "mobilephone",
        "company",
        "website",
        "jobtitle",
        "city",
        "country",
        "message",
        "lifecyclestage",
        "hs_lead_status",
        "hs_additional_emails",
        "hs_sales_email_last_replied",
        "createdate",
        "lastmodifieddate",
        "hs_object_id",
    }
)
READ_ONLY = frozenset({"createdate", "lastmodifieddate", "hs_object_id", "hs_sales_email_last_replied"})
CUSTOM_PROPERTIES = frozenset(
    {
        "hookbus_lead_source",
        "hookbus_form",
        "hookbus_utm_source",
        "hookbus_utm_medium",
        "hookbus_utm_campaign",
        "hookbus_referrer",
    }
)
LIFECYCLE_STAGES = frozenset(
    {
        "subscriber",
        "lead",
        "marketingqualifiedlead",
        "salesqualifiedlead",
        "opportunity",
        "customer",
        "evangelist",
        "other",
    }
)
DEFAULT_SEQUENCES = {"1001": "New lead follow-up"}
DEFAULT_LISTS = {"2001": "Website leads"}

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, category: str, message: str, **extra: Any) -> JSONResponse:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    return JSONResponse(body | extra, status)


class _Invalid(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


@dataclass
class _State:
    access_token: str
    properties: frozenset[str]
    sequences: dict[str, str]
    lists: dict[str, str]
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    enrollments: dict[str, dict[str, Any]] = field(default_factory=dict)  # contact id → enrollment
    memberships: dict[str, list[str]] = field(default_factory=dict)  # list id → record ids
    requests: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = FIRST_CONTACT_ID
    faults: Faults = field(default_factory=Faults)

    def reset(self) -> None:
        self.contacts.clear()
        self.enrollments.clear()
        self.memberships.clear()
        self.requests.clear()
        self.next_id = FIRST_CONTACT_ID
        self.faults.reset()

    def by_email(self, email: str) -> dict[str, Any] | None:
        wanted = email.strip().lower()
        for contact in self.contacts.values():
            emails = [contact["properties"].get("email") or ""]
            emails += (contact["properties"].get("hs_additional_emails") or "").split(";")
            if wanted in (e.strip().lower() for e in emails if e):
                return contact
        return None

    def create(self, properties: dict[str, str]) -> dict[str, Any]:
        contact_id = str(self.next_id)
        self.next_id += 1
        now = _now()
        contact = {
            "id": contact_id,
            "properties": {**properties, "hs_object_id": contact_id, "createdate": now, "lastmodifieddate": now},
            "createdAt": now,
            "updatedAt": now,
            "archived": False,
        }
        self.contacts[contact_id] = contact
        return contact

    def update(self, contact: dict[str, Any], properties: dict[str, str]) -> None:
        current = contact["properties"]
        for name, value in properties.items():
            if name == "email" and (current.get("email") or "").lower() == value.lower():
                continue  # the same address in other letter case: HubSpot keeps the stored one
            current[name] = value
        contact["updatedAt"] = current["lastmodifieddate"] = _now()


def _validate_properties(state: _State, properties: object) -> dict[str, str]:
    """HubSpot's property validation: a 400 listing every invalid value."""
    if not isinstance(properties, dict):
        raise _Invalid(_error(400, "VALIDATION_ERROR", "Invalid input JSON: properties must be an object"))
    problems = []
    values: dict[str, str] = {}
    for name, value in properties.items():
        if isinstance(value, dict | list):
            problem = ("INVALID_VALUE", f'Property "{name}" must be a string, number or boolean')
        elif name not in state.properties:
            problem = ("PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
        elif name in READ_ONLY:
            problem = ("READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.')
        elif name == "email" and not _EMAIL.fullmatch(str(value)):
            problem = ("INVALID_EMAIL", f"Email address {value} is invalid")
        elif name == "lifecyclestage" and str(value) not in LIFECYCLE_STAGES and value != "":
            problem = ("INVALID_OPTION", f"{value} was not one of the allowed options: {sorted(LIFECYCLE_STAGES)}")
        else:
            values[name] = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            continue
        problems.append(
            {
                "isValid": False,
                "message": problem[1],
                "error": problem[0],
                "name": name,
                "localizedErrorMessage": problem[1],
                "portalId": PORTAL_ID,
            }
        )
    if problems:
        raise _Invalid(
            _error(
                400,
                "VALIDATION_ERROR",
                f"Property values were not valid: {json.dumps(problems, separators=(',', ':'))}",
            )
        )
    return values


def _public(contact: dict[str, Any], wanted: Iterable[str] | None = None) -> dict[str, Any]:
    properties = contact["properties"]
    if wanted is not None:
        names = set(wanted) | {"hs_object_id", "createdate", "lastmodifieddate"}
        properties = {name: properties.get(name) for name in names}
    return {
        "id": contact["id"],
        "properties": copy.deepcopy(properties),
        "createdAt": contact["createdAt"],
        "updatedAt": contact["updatedAt"],
        "archived": False,
    }


def create_app(
    access_token: str = DEFAULT_ACCESS_TOKEN,
    *,
    custom_properties: Iterable[str] = CUSTOM_PROPERTIES,
    sequences: dict[str, str] | None = None,
    lists: dict[str, str] | None = None,
) -> Starlette:
    """A fresh, empty HubSpot stand-in accepting ``Authorization: Bearer {access_token}``."""
    state = _State(
        access_token=access_token,
        properties=DEFAULT_PROPERTIES | frozenset(custom_properties),
        sequences=dict(DEFAULT_SEQUENCES if sequences is None else sequences),
        lists=dict(DEFAULT_LISTS if lists is None else lists),
    )
    expected_auth = f"Bearer {access_token}".encode()

    async def prelude(request: Request) -> tuple[Any, Response | None]:
        """Read and record the request; an early answer for bad JSON, bad credentials or an injected fault."""
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            return None, _error(400, "VALIDATION_ERROR", "Invalid input JSON on line 1")
        path = route_path(request)
        state.requests.append({"method": request.method, "path": path, "body": body})
        auth = request.headers.get("authorization", "")
        if not hmac.compare_digest(auth.encode(), expected_auth):
            return body, _error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
                "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        fault = state.faults.take(path)
        if fault is not None:
            return body, _injected(fault.status, fault.headers, body)
        return body, None

    def _injected(status: int, headers: dict[str, str], body: Any) -> Response:
        if status == 409:
            email = None
            if isinstance(body, dict):
                inputs = body.get("inputs")
                if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
                    email = inputs[0].get("id")
                elif isinstance(body.get("properties"), dict):
                    email = body["properties"].get("email")
            existing = state.by_email(str(email)) if email else None
            if existing is not None:
                response = _error(409, "CONFLICT", f"Contact already exists. Existing ID: {existing['id']}")
            else:
                response = _error(409, "CONFLICT", "Conflict")
        elif status == 429:
            response = _error(
                429,
                "RATE_LIMITS",
                "You have reached your ten_secondly_rolling limit.",
                errorType="RATE_LIMIT",
                policyName="TEN_SECONDLY_ROLLING",
            )
        elif status in (401, 403):
            response = _error(status, "INVALID_AUTHENTICATION" if status == 401 else "MISSING_SCOPES", "Injected")
        elif status == 400:
            response = _error(400, "VALIDATION_ERROR", "Injected validation error")
        else:
            response = _error(status, "INTERNAL_ERROR", f"Injected HTTP {status}")
        response.headers.update(headers)
        return response

    def batch_upsert(request: Request, body: Any) -> Response:
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= 100:
            raise _Invalid(_error(400, "VALIDATION_ERROR", "inputs must be a list of 1 to 100 objects"))
        seen: set[str] = set()
        prepared = []
        for item in inputs:
            if not isinstance(item, dict):
                raise _Invalid(_error(400, "VALIDATION_ERROR", "every input must be an object"))
            id_property, key = item.get("idProperty"), item.get("id")
            if id_property != "email":
                raise _Invalid(
                    _error(
                        400,
                        "VALIDATION_ERROR",
                        f"Unable to perform update/upsert by non-unique 0-1 property {id_property} in portal ID "
                        f"{PORTAL_ID}",
                    )
                )
            if not isinstance(key, str) or not key.strip():
                raise _Invalid(_error(400, "VALIDATION_ERROR", "id is required for every input"))
            if key.lower() in seen:
                raise _Invalid(_error(400, "VALIDATION_ERROR", f"Duplicate IDs found in batch input: [{key}]"))
            seen.add(key.lower())
            properties = _validate_properties(state, item.get("properties", {}))
            if not _EMAIL.fullmatch(key):
                raise _Invalid(_error(400, "VALIDATION_ERROR", f"Email address {key} is invalid"))
            if "email" in properties and properties["email"].lower() != key.lower():
                raise _Invalid(
                    _error(400, "VALIDATION_ERROR", f"email property {properties['email']} does not match id {key}")
                )
            prepared.append((key, properties))
        started = _now()
        results = []
        for key, properties in prepared:
            contact = state.by_email(key)
            if contact is None:
                contact = state.create({"email": key, **properties})
                new = True
            else:
                state.update(contact, properties)
                new = False
            results.append(_public(contact) | {"new": new})
        return JSONResponse({"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": _now()})

    def create_contact(request: Request, body: Any) -> Response:
        properties = _validate_properties(state, (body or {}).get("properties") if isinstance(body, dict) else None)
        email = properties.get("email")
        if email and (existing := state.by_email(email)) is not None:
            return _error(409, "CONFLICT", f"Contact already exists. Existing ID: {existing['id']}")
        return JSONResponse(_public(state.create(properties)), 201)

    def contact(request: Request, body: Any) -> Response:
        contact_id = request.path_params["contact_id"]
        found = state.contacts.get(contact_id)
        if found is None:
            return _error(404, "OBJECT_NOT_FOUND", "resource not found")
        if request.method == "GET":
            wanted = request.query_params.get("properties")
            return JSONResponse(_public(found, wanted.split(",") if wanted else None))
        properties = _validate_properties(state, body.get("properties") if isinstance(body, dict) else None)
        email = properties.get("email")
        if email and (other := state.by_email(email)) is not None and other["id"] != contact_id:
            return _error(409, "CONFLICT", f"Contact already exists. Existing ID: {other['id']}")
        state.update(found, properties)
        return JSONResponse(_public(found))

    def enrollment(request: Request, body: Any) -> Response:
        current = state.enrollments.get(request.path_params["contact_id"])
        if current is None:
            return _error(404, "OBJECT_NOT_FOUND", "No enrollment found for this contact")
        return JSONResponse(current)

    def enroll(request: Request, body: Any) -> Response:
        user_id = request.query_params.get("userId", "")
        if not user_id.isdigit():
            return _error(400, "VALIDATION_ERROR", "userId query parameter is required (a HubSpot user id)")
        if not isinstance(body, dict):
            return _error(400, "VALIDATION_ERROR", "Invalid input JSON")
        missing = [
            k for k in ("contactId", "sequenceId", "senderEmail") if not isinstance(body.get(k), str) or not body[k]
        ]
        if missing:
            return _error(400, "VALIDATION_ERROR", f"Missing required field(s): {', '.join(missing)}")
        if body["sequenceId"] not in state.sequences:
            return _error(404, "OBJECT_NOT_FOUND", f"Sequence {body['sequenceId']} not found")
        target = state.contacts.get(body["contactId"])
        if target is None:
            return _error(404, "OBJECT_NOT_FOUND", f"Contact {body['contactId']} not found")
        if not _EMAIL.fullmatch(body["senderEmail"]):
            return _error(400, "VALIDATION_ERROR", f"senderEmail {body['senderEmail']} is not a connected inbox")
        if body["contactId"] in state.enrollments:
            return _error(400, "VALIDATION_ERROR", f"Contact {body['contactId']} is already enrolled in a sequence")
        now = _now()
        record = {
            "id": str(len(state.enrollments) + 9001),
            "toEmail": target["properties"].get("email"),
            "enrolledAt": now,
            "updatedAt": now,
            "sequenceId": body["sequenceId"],
            "sequenceName": state.sequences[body["sequenceId"]],
            "enrolledBy": user_id,
            "enrolledByEmail": body["senderEmail"],
        }
        state.enrollments[body["contactId"]] = record
        return JSONResponse({k: record[k] for k in ("id", "toEmail", "enrolledAt", "updatedAt")})

    def add_members(request: Request, body: Any) -> Response:
        list_id = request.path_params["list_id"]
        if list_id not in state.lists:
            return _error(404, "OBJECT_NOT_FOUND", f"List {list_id} not found")
        if not isinstance(body, list) or not all(isinstance(v, str | int) for v in body):
            return _error(400, "VALIDATION_ERROR", "body must be an array of record ids")
        members = state.memberships.setdefault(list_id, [])
        added, missing = [], []
        for record in map(str, body):
            if record not in state.contacts:
                missing.append(record)
            elif record not in members:
                members.append(record)
                added.append(record)
        return JSONResponse({"recordIdsAdded": added, "recordIdsMissing": missing})

    def routed(path: str, handler: Callable[[Request, Any], Response], methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            body, early = await prelude(request)
            if early is not None:
                return early
            try:
                return handler(request, body)
            except _Invalid as invalid:
                return invalid.response

        return Route(path, endpoint, methods=methods)

    async def reply(request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        found = state.contacts.get(contact_id)
        if found is None:
            return JSONResponse({"error": "no such contact"}, 404)
        found["properties"]["hs_sales_email_last_replied"] = _now()
        state.enrollments.pop(contact_id, None)  # HubSpot unenrolls a contact who replies
        return JSONResponse({"status": "replied", "contact_id": contact_id})

    async def objects(request: Request) -> Response:
        return JSONResponse(
            {
                "contacts": [_public(c) for c in state.contacts.values()],
                "enrollments": [{"contactId": k, **v} for k, v in state.enrollments.items()],
                "list_memberships": state.memberships,
                "requests": state.requests,
            }
        )

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"status": "reset"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            routed("/crm/v3/objects/contacts/batch/upsert", batch_upsert, ["POST"]),
            routed("/crm/v3/objects/contacts", create_contact, ["POST"]),
            routed("/crm/v3/objects/contacts/{contact_id}", contact, ["GET", "PATCH"]),
            routed("/automation/v4/sequences/enrollments/contact/{contact_id}", enrollment, ["GET"]),
            routed("/automation/v4/sequences/enrollments", enroll, ["POST"]),
            routed("/crm/v3/lists/{list_id}/memberships/add", add_members, ["PUT"]),
            Route("/_sandbox/faults", state.faults.endpoint, methods=["POST"]),
            Route("/_sandbox/contacts/{contact_id}/reply", reply, methods=["POST"]),
            Route("/_sandbox/objects", objects, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.sandbox = state
    return app

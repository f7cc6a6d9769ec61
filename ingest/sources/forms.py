"""Web forms: ``POST /webhooks/forms/{form_id}`` → ``lead.created``.

Each form is configured in the rules file (:mod:`bus.rules`) and becomes its own source named ``forms/<form_id>``::

    [sources.forms.contact]
    secret_env = "FORM_CONTACT_SECRET"     # the environment variable holding the secret(s), comma-separated
    signature = "hmac-sha256"              # or "standard-webhooks"
    signature_header = "X-Hookbus-Signature"
    honeypot = "website"                   # a field humans leave empty
    max_body_bytes = 262144                # 256 KiB (shared case 036)
    default_region = "US"                  # for phone numbers written without +country code
    lead_source = "website-contact"        # the tag the CRM gets (default: the form id)
    list_fields = ["services"]             # always a list, even with one value
    [sources.forms.contact.fields]         # canonical field = the form's field name(s)
    email = "your-email"

Authentication, per form (the sender is the form backend that relays the browser's post, never the browser itself):

- ``signature = "standard-webhooks"``: ``webhook-id``/``webhook-timestamp``/``webhook-signature`` verified by
  :mod:`ingest.sources.standard_webhooks` (replay window, rotation); ``webhook-id`` is the dedupe id.
- ``signature = "hmac-sha256"``: the header ``signature_header`` holds the HMAC-SHA256 of the raw body keyed with
  the secret's UTF-8 bytes, as hex or base64, optionally prefixed ``sha256=`` — the form of GitHub
  (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries), Typeform
  (https://www.typeform.com/developers/webhooks/secure-your-webhooks/) and most form backends. Such a signature has
  no timestamp, hence no replay window and no sender message id: the dedupe id is the SHA-256 of the *normalized*
  lead, remembered for ``dedupe_window_s`` (default 600 s). So a double click, a sender retry, or the same lead
  posted once as a form and once as JSON within 10 minutes is one event (case 039); the trade-off is that an identical
  resubmission inside the window is dropped (harmless: it carries nothing new), while a sender retry arriving after
  the window publishes again (harmless too: the CRM upsert and the follow-up are idempotent per contact).

Body (case 039): ``application/x-www-form-urlencoded`` (``+`` is a space, ``%2B`` a plus; the ``charset`` parameter
is honoured, UTF-8 by default) and ``application/json`` (an object) give the *same* event. A key repeated, or written
``key[]``, becomes a list in its order; a single value stays a string unless the field is in ``list_fields``. Any other
``Content-Type`` (``text/plain``, ``multipart/form-data``) is answered 415 and nothing is published.

Spam: a non-empty honeypot field is answered 200 (bots are not told) and counted in ``hookbus_form_spam_total``;
nothing is published. Bodies over ``max_body_bytes`` are refused with 413 before any of them is verified.

Normalization (``lead.created`` data, subject = ``email_key``):

- ``email``: trimmed, as typed (what the CRM receives for a new contact, case 040); ``email_normalized``: trimmed with
  the domain lower-cased (RFC 5321 §2.4: only the domain is case-insensitive); ``email_key``: trimmed and lower-cased
  whole — the identity of the person for deduplication (case 040; plus-tags and dots are kept, and provider folding
  such as ``googlemail.com`` → ``gmail.com`` happens only where ``email_domain_aliases`` says so). An address that is
  not ``local@domain.tld`` gives ``null`` fields and is kept in ``invalid_email``.
- ``phone``: E.164 (``+15555550100``) when phonenumbers finds it a possible number (with ``default_region`` for
  national formats), else ``null``; ``phone_raw`` keeps what was typed.
- ``utm`` (``source``, ``medium``, ``campaign``, ``term``, ``content``) from the form's hidden ``utm_*`` fields, or
  else from the query string of ``page_url``; ``referrer``, ``page_url``; ``lead_source``; ``form_id``.
- ``fields``: every other submitted field (not the honeypot), e.g. ``{"services": ["cleaning", "windows"]}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from email.message import Message
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import orjson
import phonenumbers
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from bus import rules
from bus.envelope import Event, from_unix
from bus.errors import ConfigError

from .base import (
    Delivery,
    PayloadError,
    SignatureError,
    UnsupportedMediaType,
    header_value,
    hmac_sha256_hex,
)
from .env import secrets_from_env
from .standard_webhooks import SecretEncoding, StandardWebhooksVerifier

__all__ = [
    "CANONICAL_FIELDS",
    "DEFAULT_MAX_BODY_BYTES",
    "FORM_SPAM",
    "FormConfig",
    "FormSource",
    "FormsSection",
    "from_env",
    "hmac_signature",
    "normalize_email",
    "normalize_phone",
]

log = logging.getLogger("hookbus.ingest.forms")

#: 256 KiB: far above any real form post, small enough that spam cannot make ingest buffer much (case 036).
DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_DEDUPE_WINDOW_S = 600
MAX_FIELDS = 1000

FORM_SPAM = Counter(
    "hookbus_form_spam_total",
    "Form posts dropped as spam (honeypot field filled); answered 200, not published.",
    ["form"],
)

#: Canonical lead fields and the form field names looked up for each, first match wins (``fields`` overrides).
CANONICAL_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email", "e-mail", "email_address"),
    "name": ("name", "full_name", "fullname"),
    "first_name": ("first_name", "firstname", "given_name"),
    "last_name": ("last_name", "lastname", "family_name"),
    "phone": ("phone", "telephone", "tel", "phone_number"),
    "company": ("company", "organization", "organisation"),
    "message": ("message", "comments", "comment"),
    "utm_source": ("utm_source",),
    "utm_medium": ("utm_medium",),
    "utm_campaign": ("utm_campaign",),
    "utm_term": ("utm_term",),
    "utm_content": ("utm_content",),
    "referrer": ("referrer", "referer"),
    "page_url": ("page_url", "landing_page"),
}
UTM_KEYS = ("source", "medium", "campaign", "term", "content")

_FORM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_REGION = re.compile(r"[A-Z]{2}")

Value = str | list[str] | Any


class FormConfig(BaseModel):
    """One ``[sources.forms.<form_id>]`` section (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_env: str
    signature: Literal["hmac-sha256", "standard-webhooks"] = "hmac-sha256"
    signature_header: str = "X-Hookbus-Signature"
    secret_encoding: SecretEncoding = "base64"
    tolerance_s: int = Field(default=300, gt=0)
    honeypot: str | None = None
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    default_region: str | None = None
    lead_source: str | None = None
    dedupe_window_s: int = Field(default=DEFAULT_DEDUPE_WINDOW_S, gt=0)
    list_fields: tuple[str, ...] = ()
    fields: dict[str, str | list[str]] = Field(default_factory=dict)
    email_domain_aliases: dict[str, str] = Field(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        unknown = sorted(set(value) - set(CANONICAL_FIELDS))
        if unknown:
            raise ValueError(f"unknown canonical field(s) {unknown}; known: {sorted(CANONICAL_FIELDS)}")
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION.fullmatch(value):
            raise ValueError("default_region must be an ISO 3166-1 alpha-2 code such as 'US' or 'GB'")
        return value

    @field_validator("email_domain_aliases")
    @classmethod
    def _aliases(cls, value: dict[str, str]) -> dict[str, str]:
        return {k.strip().lower(): v.strip().lower() for k, v in value.items()}

    def names_for(self, canonical: str) -> tuple[str, ...]:
        configured = self.fields.get(canonical)
        if configured is None:
            return CANONICAL_FIELDS[canonical]
        return (configured,) if isinstance(configured, str) else tuple(configured)


class FormsSection(RootModel[dict[str, FormConfig]]):
    """``[sources.forms]``: form id → its configuration."""

    @field_validator("root")
    @classmethod
    def _ids(cls, value: dict[str, FormConfig]) -> dict[str, FormConfig]:
        for form_id in value:
            if not _FORM_ID.fullmatch(form_id):
                raise ValueError(f"form id {form_id!r} must be 1-64 letters, digits, '-' or '_'")
        return value


# --- normalization helpers -------------------------------------------------------------------------------------------


def normalize_email(raw: str, aliases: Mapping[str, str] | None = None) -> tuple[str, str, str] | None:
    """``(email, email_normalized, email_key)`` for a typed address, or ``None`` if it is not an address.

    ``"  PAT@Example.com "`` → ``("PAT@Example.com", "PAT@example.com", "pat@example.com")``.
    """
    email = raw.strip()
    if not _EMAIL.fullmatch(email):
        return None
    local, _, domain = email.rpartition("@")
    domain = domain.lower()
    key_domain = (aliases or {}).get(domain, domain)
    return email, f"{local}@{domain}", f"{local.lower()}@{key_domain}"


def normalize_phone(raw: str, default_region: str | None = None) -> str | None:
    """E.164 form of a typed phone number, or ``None`` when it cannot be read as a possible number."""
    text = raw.strip()
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def hmac_signature(secret: str, body: bytes) -> str:
    """The ``sha256=<hex>`` header value a plain-HMAC form sender sets (used by ``hookbus send`` and tests)."""
    return "sha256=" + hmac_sha256_hex(secret.encode("utf-8"), body)


def _content_type(headers: Mapping[str, str]) -> tuple[str, str]:
    """``(media type, charset)`` of the ``Content-Type`` header; ``("", "utf-8")`` without one."""
    value = header_value(headers, "content-type")
    if not value or not value.strip():
        return "", "utf-8"
    message = Message()
    message["content-type"] = value
    charset = message.get_param("charset")
    return message.get_content_type().lower(), charset if isinstance(charset, str) and charset else "utf-8"


def _add(fields: dict[str, Value], key: str, value: Value, *, as_list: bool) -> None:
    if key in fields:
        previous = fields[key]
        fields[key] = [*(previous if isinstance(previous, list) else [previous]), value]
    else:
        fields[key] = [value] if as_list else value


def _parse_form(body: bytes, charset: str) -> dict[str, Value]:
    try:
        text = body.decode(charset)
        pairs = parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict", max_num_fields=MAX_FIELDS)
    except (LookupError, UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"form body cannot be decoded: {exc}") from None
    fields: dict[str, Value] = {}
    for key, value in pairs:
        bracketed = key.endswith("[]")
        _add(fields, key[:-2] if bracketed else key, value, as_list=bracketed)
    return fields


def _scalar(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value  # strings, and nested objects kept as they are


def _parse_json(body: bytes) -> dict[str, Value]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"form body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PayloadError("a JSON form body must be an object")
    if len(doc) > MAX_FIELDS:
        raise PayloadError(f"a form post may have at most {MAX_FIELDS} fields")
    fields: dict[str, Value] = {}
    for key, value in doc.items():
        name = key[:-2] if key.endswith("[]") else key
        fields[name] = [_scalar(v) for v in value] if isinstance(value, list) else _scalar(value)
    return fields


def _text(value: Value) -> str | None:
    """A canonical field's text: the last value of a list, stripped; ``None`` when empty."""
    if isinstance(value, list):
        value = value[-1] if value else ""
    if not isinstance(value, str):
        return None
    return value.strip() or None


# --- the source ------------------------------------------------------------------------------------------------------


class FormSource:
    """One configured web form, served at ``POST /webhooks/forms/<form_id>``.

    ``secrets`` are the active secrets (several during rotation); ``clock`` gives the event time of posts whose
    signature carries none (plain HMAC).
    """

    def __init__(
        self,
        form_id: str,
        config: FormConfig,
        secrets: tuple[str, ...],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _FORM_ID.fullmatch(form_id):
            raise ConfigError(f"form id {form_id!r} must be 1-64 letters, digits, '-' or '_'")
        if not secrets:
            raise ConfigError(f"form {form_id!r}: no secret in ${config.secret_env}")
        self.form_id = form_id
        self.name = f"forms/{form_id}"
        self.config = config
        self.max_body_bytes = config.max_body_bytes
        self._clock = clock
        self._standard: StandardWebhooksVerifier | None = None
        self._hmac_keys: tuple[bytes, ...] = ()
        if config.signature == "standard-webhooks":
            try:
                self._standard = StandardWebhooksVerifier(
                    secrets, encoding=config.secret_encoding, tolerance_s=config.tolerance_s
                )
            except ConfigError as exc:
                raise ConfigError(f"form {form_id!r} (${config.secret_env}): {exc}") from None
        else:
            self._hmac_keys = tuple(s.encode("utf-8") for s in secrets)

    def __repr__(self) -> str:
        return f"FormSource({self.form_id!r}, signature={self.config.signature!r})"

    # -- signature --

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        if self._standard is not None:
            self._standard.verify(headers, body, now)
            return
        value = header_value(headers, self.config.signature_header)
        if not value:
            raise SignatureError(f"missing {self.config.signature_header} header")
        tokens = [t.removeprefix("sha256=") for t in re.split(r"[\s,]+", value.strip()) if t]
        found = False
        for key in self._hmac_keys:
            expected_hex = hmac_sha256_hex(key, body)
            expected_b64 = base64.b64encode(bytes.fromhex(expected_hex))
            for token in tokens:
                candidate = token.encode("utf-8", "replace")
                found |= hmac.compare_digest(expected_hex.encode(), candidate.lower())
                found |= hmac.compare_digest(expected_b64, candidate)
        if not found:
            raise SignatureError(f"no {self.config.signature_header} signature matches the payload")

    def signed_at(self, headers: Mapping[str, str]) -> float:
        """The ``webhook-timestamp`` of a Standard Webhooks post; 0 for plain HMAC (its signature has no time)."""
        if self._standard is None:
            return 0.0
        return float(self._standard.message(headers).timestamp)

    # -- normalization --

    def parse(self, body: bytes) -> Delivery:
        """Without headers the body type is unknown: JSON if it looks like an object, else form-encoded."""
        content_type = "application/json" if body.lstrip()[:1] == b"{" else "application/x-www-form-urlencoded"
        return self.parse_request({"content-type": content_type}, body)

    def parse_request(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        mime, charset = _content_type(headers)
        if mime == "application/x-www-form-urlencoded":
            fields = _parse_form(body, charset)
        elif mime == "application/json" or mime.endswith("+json"):
            fields = _parse_json(body)
        else:
            raise UnsupportedMediaType(
                f"form posts must be application/x-www-form-urlencoded or application/json, not {mime or 'untyped'}"
            )
        honeypot = self.config.honeypot
        if honeypot and _text(fields.get(honeypot, "")):
            FORM_SPAM.labels(self.form_id).inc()
            log.info("form spam dropped (honeypot filled)", extra={"source": self.name, "honeypot": honeypot})
            return Delivery(event_id="", provider_type="spam:honeypot")
        data = self._normalize(fields)
        if self._standard is not None:
            message = self._standard.message(headers)
            event_id, when, ttl = message.msg_id, float(message.timestamp), None
        else:
            digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
            event_id, when, ttl = f"sha256-{digest}", self._clock(), self.config.dedupe_window_s
        event = Event(
            id=event_id,
            source=self.name,
            type="lead.created",
            time=from_unix(when),
            data=data,
            subject=data["email_key"],
        )
        return Delivery(event_id=event_id, provider_type="form.submitted", events=(event,), dedupe_ttl_s=ttl)

    def _normalize(self, fields: dict[str, Value]) -> dict[str, Any]:
        config = self.config
        for name in config.list_fields:
            if name in fields and not isinstance(fields[name], list):
                fields[name] = [fields[name]]
        used: set[str] = {config.honeypot} if config.honeypot else set()
        canonical: dict[str, str | None] = {}
        for field_name in CANONICAL_FIELDS:
            canonical[field_name] = None
            for candidate in config.names_for(field_name):
                if candidate in fields:
                    used.add(candidate)
                    canonical[field_name] = _text(fields[candidate])
                    if canonical[field_name] is not None:
                        break

        email_raw = canonical["email"]
        email = normalize_email(email_raw, config.email_domain_aliases) if email_raw else None
        phone_raw = canonical["phone"]
        first, last, name = canonical["first_name"], canonical["last_name"], canonical["name"]
        if name is None and (first or last):
            name = " ".join(part for part in (first, last) if part)
        utm = {key: canonical[f"utm_{key}"] for key in UTM_KEYS}
        page_url = canonical["page_url"]
        if page_url and not all(utm.values()):
            query = dict(parse_qsl(urlsplit(page_url).query))
            for key in UTM_KEYS:
                utm[key] = utm[key] or (query.get(f"utm_{key}") or "").strip() or None
        data: dict[str, Any] = {
            "form_id": self.form_id,
            "lead_source": config.lead_source or self.form_id,
            "email": email[0] if email else None,
            "email_normalized": email[1] if email else None,
            "email_key": email[2] if email else None,
            "name": name,
            "first_name": first,
            "last_name": last,
            "phone": normalize_phone(phone_raw, config.default_region) if phone_raw else None,
            "phone_raw": phone_raw,
            "company": canonical["company"],
            "message": canonical["message"],
            "utm": utm,
            "referrer": canonical["referrer"],
            "page_url": page_url,
            "fields": {k: v for k, v in fields.items() if k not in used},
        }
        if email_raw and email is None:
            data["invalid_email"] = email_raw
        return data


def forms_config() -> dict[str, FormConfig]:
    """The ``[sources.forms]`` section of the rules file."""
    return rules.section("sources.forms", FormsSection).root


def from_env() -> list[FormSource]:
    """One source per ``[sources.forms.<form_id>]`` whose secret is set; forms without a secret are skipped (their
    route answers 404) with a warning."""
    sources = []
    for form_id, config in forms_config().items():
        secrets = secrets_from_env(config.secret_env)
        if not secrets:
            log.warning(
                "form configured without its secret; its route answers 404",
                extra={"source": f"forms/{form_id}", "secret_env": config.secret_env},
            )
            continue
        sources.append(FormSource(form_id, config, secrets))
    return sources

"""Async client for the QuickBooks Online Accounting API (the few calls hookbus makes).

API reference: https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/salesreceipt and
https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/refundreceipt.

Requests::

    POST {base_url}/v3/company/{realm_id}/salesreceipt?requestid={request_id}&minorversion=75
    POST {base_url}/v3/company/{realm_id}/refundreceipt?requestid={request_id}&minorversion=75
    Authorization: Bearer <access token>      Accept: application/json      Content-Type: application/json

The bearer token is a fixed access token (a sandbox, a short test), or comes from the OAuth 2.0 refresh-token grant
at Intuit's token endpoint (:func:`intuit_tokens`, :mod:`consumers.clients.oauth`): access tokens live one hour and
are renewed before they expire, the refresh token rotates and the newest one is kept in Redis for every process.

``base_url`` is ``https://quickbooks.api.intuit.com`` (production) or ``https://sandbox-quickbooks.api.intuit.com``
(Intuit's developer sandbox), or the local stand-in in :mod:`consumers.sandboxes.quickbooks`.

``requestid`` is QuickBooks' idempotency key: a repeated request with the same ``requestid`` returns the original
response instead of creating a second object, so callers pass a key derived from the event id and can retry safely
(case 015: a worker crash between the API call and XACK must not create a second receipt).

Amounts are ``Decimal`` throughout. They are written as JSON numbers with :func:`bus.money.json_number` (an int
when whole, else a float whose shortest repr is exactly the decimal, checked) and responses are parsed with
``json.loads(..., parse_float=Decimal)``, so ``TotalAmt`` comes back exact.

Failures map to the worker's exceptions (:mod:`bus.errors`):

====================================  ===========================================================================
400 (``ValidationFault`` …)           :class:`QuickBooksValidationError` (``PermanentError``): dead-letter
401                                   with a refresh token: refreshed and the request sent once more; a second
                                      401 (or any 401 with a fixed token) is :class:`QuickBooksAuthError`
401, 403                              :class:`QuickBooksAuthError` (``RetryLater``): the token may be refreshed
408, 429, 5xx                         ``RetryLater`` with ``delay`` from ``Retry-After`` (seconds or HTTP-date)
other 4xx                             ``PermanentError``
connection errors, timeouts           ``RetryLater`` (safe: the retry carries the same ``requestid``)
====================================  ===========================================================================

QuickBooks faults look like ``{"Fault": {"Error": [{"Message", "Detail", "code", "element"}], "type":
"ValidationFault"}, "time": ...}``; authentication faults use lower-case keys (``{"fault": {"error": [{"message",
"detail", "code"}], "type": "AUTHENTICATION"}}``) and some gateways answer XML; all are handled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from bus.errors import PermanentError, RetryLater
from bus.http import InstrumentedTransport
from bus.money import json_number, normalize_currency
from bus.ratelimit import Limiter
from bus.retry_after import retry_after_delay

from .oauth import BearerAuth, RefreshingToken, StaticToken, TokenSource

__all__ = [
    "INTUIT_TOKEN_URL",
    "MINOR_VERSION",
    "CreatedObject",
    "QuickBooksAuthError",
    "QuickBooksClient",
    "QuickBooksValidationError",
    "RefundReceipt",
    "SalesReceipt",
    "dumps",
    "intuit_tokens",
    "loads",
]

#: QuickBooks API minor version sent with every request, see
#: https://developer.intuit.com/app/developer/qbo/docs/learn/explore-the-quickbooks-online-api/minor-versions
MINOR_VERSION = "75"

_RETRYABLE_STATUSES = frozenset({408, 429})

#: Intuit's OAuth 2.0 token endpoint (https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-
#: authorization/oauth-2.0), the same for production and Intuit's developer sandbox.
INTUIT_TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"


def intuit_tokens(
    *,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    token_url: str = INTUIT_TOKEN_URL,
    redis: Any = None,
    key: str = "",
    timeout_s: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RefreshingToken:
    """Access tokens from Intuit's refresh-token grant (HTTP Basic client authentication; refresh tokens rotate),
    shared through ``redis`` under ``key``. See :class:`consumers.clients.oauth.RefreshingToken`."""
    return RefreshingToken(
        api="quickbooks",
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
        auth_method="client_secret_basic",
        redis=redis,
        key=key,
        timeout_s=timeout_s,
        transport=transport,
    )


# --------------------------------------------------------------------------------------------------- JSON helpers
def _json_default(value: object) -> int | float:
    if isinstance(value, Decimal):
        # int when whole (1500, never 1500.0); otherwise float(d): json.dumps writes the shortest repr, which reads
        # back as exactly d. That holds for every decimal of at most 15 significant digits (9,999,999,999,999.99),
        # i.e. all amounts we book; "below 2**53" is the integer bound, and for decimals it is those 15 digits.
        # No float arithmetic happens: json_number checks Decimal(repr(float(d))) == d and raises ValueError if not.
        return json_number(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (``{"Amount":19.99}``) with ``Decimal`` values written as exact JSON numbers."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON with non-integer numbers as ``Decimal`` (``19.99`` → ``Decimal("19.99")``), integers as ``int``."""
    return json.loads(data, parse_float=Decimal)


# ------------------------------------------------------------------------------------------------------ entities
@dataclass(frozen=True, slots=True, kw_only=True)
class _Receipt:
    amount: Decimal
    currency: str
    txn_date: date
    description: str
    private_note: str
    customer_name: str | None = None
    customer_email: str | None = None
    doc_number: str | None = None
    item_ref: str = "1"

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, Decimal | int):
            raise TypeError(f"amount must be a Decimal, not {type(self.amount).__name__}")
        if not isinstance(self.txn_date, date):
            raise TypeError(f"txn_date must be a date, not {type(self.txn_date).__name__}")

    def to_json(self) -> dict[str, Any]:
        """The request body (amounts still ``Decimal``; :func:`dumps` writes them)."""
        body: dict[str, Any] = {
            "Line": [
                {
                    "Amount": Decimal(self.amount),
                    "DetailType": "SalesItemLineDetail",
                    "Description": self.description,
                    "SalesItemLineDetail": {"ItemRef": {"value": self.item_ref}},
                }
            ],
            "CurrencyRef": {"value": normalize_currency(self.currency)},
            "TxnDate": self.txn_date.isoformat(),
            "PrivateNote": self.private_note,
        }
        if self.customer_name:
            body["CustomerMemo"] = {"value": self.customer_name}
        if self.customer_email:
            body["BillEmail"] = {"Address": self.customer_email}
        if self.doc_number:
            body["DocNumber"] = self.doc_number
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class SalesReceipt(_Receipt):
    """A QuickBooks SalesReceipt with one sales line (a payment received at the time of sale).

    - ``amount``: major units, exact (``Decimal("19.99")`` USD, ``Decimal("1500")`` JPY) — see :mod:`bus.money`.
    - ``currency``: ISO 4217 code (any case), written as ``CurrencyRef.value``.
    - ``txn_date``: the transaction date, written as ``TxnDate`` ``YYYY-MM-DD``.
    - ``description``: the line's ``Description``; ``private_note``: ``PrivateNote`` (not shown to the customer;
      4000 characters max), a good place for the source event id.
    - ``customer_name`` → ``CustomerMemo.value``; ``customer_email`` → ``BillEmail.Address``; ``doc_number`` →
      ``DocNumber`` (21 characters max); ``item_ref`` → the line's ``SalesItemLineDetail.ItemRef.value``
      (``"1"`` is the "Services" item of a new company).
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundReceipt(_Receipt):
    """A QuickBooks RefundReceipt (money paid back). Same fields as :class:`SalesReceipt` plus
    ``deposit_account_ref`` → ``DepositToAccountRef.value``, the account the refund is paid from (required by
    QuickBooks; ``"35"`` is "Checking" in Intuit's sample company)."""

    deposit_account_ref: str = "35"

    def to_json(self) -> dict[str, Any]:
        body = _Receipt.to_json(self)
        body["DepositToAccountRef"] = {"value": self.deposit_account_ref}
        return body


@dataclass(frozen=True, slots=True)
class CreatedObject:
    """A created QuickBooks object: ``id`` (QuickBooks ``Id``), ``total`` (``TotalAmt``, exact) and ``raw``, the
    whole parsed response (``{"SalesReceipt": {...}, "time": "..."}``, non-integer numbers as ``Decimal``)."""

    id: str
    total: Decimal
    raw: dict[str, Any]


# -------------------------------------------------------------------------------------------------------- errors
class QuickBooksValidationError(PermanentError):
    """QuickBooks rejected the request (HTTP 400, usually a ``ValidationFault``): retrying the same body cannot
    succeed. ``fault_type`` and ``errors`` (the fault's error objects) are kept for the dead-letter record."""

    def __init__(self, reason: str, *, fault_type: str | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(reason)
        self.fault_type = fault_type
        self.errors = errors or []


class QuickBooksAuthError(RetryLater):
    """HTTP 401/403 from QuickBooks (a 401 only after the refresh and second attempt that a refresh token allows).
    Retried rather than dead-lettered: the token may have been renewed by the next attempt (by another process, or
    ``QuickBooksClient.set_access_token``). A 403 that persists (missing scope, lapsed subscription) ends in the
    dead-letter stream after the last delivery."""


def _fault(body: object) -> tuple[str | None, list[dict[str, Any]]]:
    """``(type, errors)`` of a QuickBooks fault body in either key case; ``(None, [])`` if it is not one."""
    if not isinstance(body, dict):
        return None, []
    fault = body.get("Fault", body.get("fault"))
    if not isinstance(fault, dict):
        return None, []
    raw_errors = fault.get("Error", fault.get("error"))
    errors = [e for e in raw_errors if isinstance(e, dict)] if isinstance(raw_errors, list) else []
    fault_type = fault.get("type")
    return (str(fault_type) if fault_type is not None else None), errors


def _describe(fault_type: str | None, errors: list[dict[str, Any]]) -> str:
    """``ValidationFault code=2020 message=… detail=…; …`` for a reason string."""
    parts = []
    for error in errors:
        message = error.get("Message", error.get("message"))
        detail = error.get("Detail", error.get("detail"))
        parts.append(f"code={error.get('code')} message={message} detail={detail}")
    text = "; ".join(parts) or "no fault detail"
    return f"{fault_type or 'unknown fault'} {text}"


# -------------------------------------------------------------------------------------------------------- client
class QuickBooksClient:
    """QuickBooks Online Accounting API client for one company (``realm_id``).

    ``base_url``: API root without ``/v3`` (e.g. ``https://quickbooks.api.intuit.com``); ``access_token``: a fixed
    OAuth 2.0 bearer token (never logged; replace it with :meth:`set_access_token`), or ``tokens``: where tokens come
    from (:func:`intuit_tokens`; the client closes it); ``timeout_s``: seconds for connect, read, write and pool each;
    ``transport``: an httpx transport for tests (``httpx.ASGITransport``, ``httpx.MockTransport``). Use
    ``async with QuickBooksClient(...) as qbo:`` or call :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        base_url: str,
        realm_id: str,
        access_token: str = "",
        tokens: TokenSource | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        if not realm_id:
            raise ValueError("realm_id is required")
        self.realm_id = realm_id
        self._tokens: list[TokenSource] = [tokens or StaticToken(access_token)]
        self._auth = BearerAuth(self._tokens[0])
        self._http = httpx.AsyncClient(
            auth=self._auth,
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            # The rate limit is per realm (500/min, 10 concurrent), shared with every other process through Redis.
            transport=InstrumentedTransport("quickbooks", inner=transport, limiter=limiter, account=realm_id),
            headers={"Accept": "application/json", "Content-Type": "application/json"},
        )

    def __repr__(self) -> str:
        return f"QuickBooksClient(base_url={str(self._http.base_url)!r}, realm_id={self.realm_id!r})"

    def set_access_token(self, access_token: str) -> None:
        """Use this fixed bearer token from the next request on (instead of the token source given so far)."""
        self._tokens.append(StaticToken(access_token))
        self._auth.tokens = self._tokens[-1]

    async def __aenter__(self) -> QuickBooksClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (and the token source's)."""
        await self._http.aclose()
        for tokens in self._tokens:
            await tokens.aclose()

    async def create_sales_receipt(self, receipt: SalesReceipt, *, request_id: str) -> CreatedObject:
        """Create a SalesReceipt (``POST /v3/company/{realm}/salesreceipt``); idempotent per ``request_id``."""
        return await self._create("salesreceipt", "SalesReceipt", receipt.to_json(), request_id)

    async def create_refund_receipt(self, receipt: RefundReceipt, *, request_id: str) -> CreatedObject:
        """Create a RefundReceipt (``POST /v3/company/{realm}/refundreceipt``); idempotent per ``request_id``."""
        return await self._create("refundreceipt", "RefundReceipt", receipt.to_json(), request_id)

    async def _create(self, path: str, entity: str, body: dict[str, Any], request_id: str) -> CreatedObject:
        if not request_id:
            raise ValueError("request_id is required: it is what makes a retried create idempotent")
        try:
            content = dumps(body)
        except ValueError as exc:
            raise PermanentError(f"quickbooks_amount_not_representable: {exc}") from exc
        url = f"/v3/company/{quote(self.realm_id, safe='')}/{path}"
        try:
            response = await self._http.post(
                url,
                params={"requestid": request_id, "minorversion": MINOR_VERSION},
                content=content,
            )
        except httpx.TransportError as exc:  # includes httpx.TimeoutException
            raise RetryLater(f"quickbooks_transport_error: {type(exc).__name__}: {exc}") from exc
        return self._handle(response, entity)

    @staticmethod
    def _handle(response: httpx.Response, entity: str) -> CreatedObject:
        status = response.status_code
        try:
            body = loads(response.content) if response.content else None
        except ValueError:  # not JSON (XML or an HTML error page from a gateway)
            body = None
        fault_type, errors = _fault(body)

        if 200 <= status < 300 and fault_type is None:
            obj = body.get(entity) if isinstance(body, dict) else None
            if not isinstance(obj, dict) or "Id" not in obj or "TotalAmt" not in obj:
                # The object may exist; a retry with the same requestid returns it without creating a second one.
                raise RetryLater(f"quickbooks_unexpected_response: {status} without {entity}.Id/TotalAmt")
            total = obj["TotalAmt"]
            return CreatedObject(id=str(obj["Id"]), total=Decimal(total), raw=body)

        detail = _describe(fault_type, errors)
        if status == 400 or 200 <= status < 300:
            raise QuickBooksValidationError(
                f"quickbooks_validation: {status} {detail}", fault_type=fault_type, errors=errors
            )
        if status in (401, 403):
            raise QuickBooksAuthError(f"quickbooks_auth: {status} {detail}")
        if status in _RETRYABLE_STATUSES or status >= 500:
            delay = retry_after_delay(response.headers.get("Retry-After"))
            kind = "quickbooks_throttled" if status == 429 else "quickbooks_unavailable"
            raise RetryLater(f"{kind}: {status} {detail}", delay=delay)
        raise PermanentError(f"quickbooks_http_{status}: {detail}")

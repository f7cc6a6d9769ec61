"""QuickBooksClient against the QuickBooks stand-in app, in process through httpx.ASGITransport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import httpx
import pytest
from starlette.applications import Starlette

from bus.errors import PermanentError, RetryLater
from consumers.clients.quickbooks import (
    CreatedObject,
    QuickBooksAuthError,
    QuickBooksClient,
    QuickBooksValidationError,
    RefundReceipt,
    SalesReceipt,
)
from consumers.sandboxes.quickbooks import create_app

BASE_URL = "http://qbo.test"
REALM = "9130357766900000"
TOKEN = "sandbox-token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app() -> Starlette:
    return create_app(access_token=TOKEN)


@pytest.fixture
async def admin(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client:
        yield client


@pytest.fixture
async def qbo(app: Starlette) -> AsyncIterator[QuickBooksClient]:
    async with QuickBooksClient(
        base_url=BASE_URL, realm_id=REALM, access_token=TOKEN, transport=httpx.ASGITransport(app=app)
    ) as client:
        yield client


def receipt(amount: str, currency: str, **extra: object) -> SalesReceipt:
    return SalesReceipt(
        amount=Decimal(amount),
        currency=currency,
        txn_date=date(2026, 1, 1),
        description="Invoice in_hb_0001",
        private_note="hookbus stripe evt_test_hb_0001",
        **extra,  # type: ignore[arg-type]
    )


async def stored(admin: httpx.AsyncClient) -> dict[str, list[dict[str, object]]]:
    response = await admin.get("/_sandbox/objects")
    assert response.status_code == 200
    return response.json(parse_float=Decimal)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("amount", "currency", "wire"),
    [
        ("19.99", "USD", '"Amount":19.99,'),
        ("1500", "JPY", '"Amount":1500,'),
        ("1.234", "KWD", '"Amount":1.234,'),
        # case 018: what the accounting API must receive
        ("8000", "jpy", '"Amount":8000,'),
        ("55000", "krw", '"Amount":55000,'),
        ("42.00", "usd", '"Amount":42,'),
        ("15990", "clp", '"Amount":15990,'),
    ],
)
async def test_sales_receipt_exact_amounts(
    qbo: QuickBooksClient, admin: httpx.AsyncClient, amount: str, currency: str, wire: str
) -> None:
    created = await qbo.create_sales_receipt(receipt(amount, currency), request_id=f"hb-{currency}")
    assert isinstance(created, CreatedObject)
    assert created.id == "1"
    assert isinstance(created.total, Decimal) and created.total == Decimal(amount)
    entity = created.raw["SalesReceipt"]
    assert entity["Id"] == "1" and entity["SyncToken"] == "0" and "CreateTime" in entity["MetaData"]
    assert entity["CurrencyRef"] == {"value": currency.upper()}

    objects = await stored(admin)
    assert len(objects["salesreceipts"]) == 1 and objects["refundreceipts"] == []
    raw_body = objects["salesreceipts"][0]["raw_body"]
    assert isinstance(raw_body, str)
    assert wire in raw_body
    assert ".0," not in raw_body and "e+" not in raw_body.lower()
    assert objects["salesreceipts"][0]["requestid"] == f"hb-{currency}"


@pytest.mark.anyio
async def test_request_shape() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = {"SalesReceipt": {"Id": "7", "TotalAmt": 19.99}, "time": "2026-01-01T00:00:00.000-08:00"}
        return httpx.Response(200, json=body)

    async with QuickBooksClient(
        base_url="https://sandbox-quickbooks.api.intuit.com/",
        realm_id=REALM,
        access_token="tok",
        transport=httpx.MockTransport(handler),
    ) as client:
        created = await client.create_sales_receipt(
            receipt("19.99", "usd", customer_name="Ada", customer_email="ada@example.com", doc_number="in_hb_0001"),
            request_id="stripe:evt_test_hb_0001",
        )
    assert created.id == "7" and created.total == Decimal("19.99")
    request = seen[0]
    assert request.method == "POST"
    assert request.url.path == f"/v3/company/{REALM}/salesreceipt"
    assert request.url.params["requestid"] == "stripe:evt_test_hb_0001"
    assert request.url.params["minorversion"] == "75"
    assert request.headers["authorization"] == "Bearer tok"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content, parse_float=Decimal) == {
        "Line": [
            {
                "Amount": Decimal("19.99"),
                "DetailType": "SalesItemLineDetail",
                "Description": "Invoice in_hb_0001",
                "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
            }
        ],
        "CurrencyRef": {"value": "USD"},
        "TxnDate": "2026-01-01",
        "PrivateNote": "hookbus stripe evt_test_hb_0001",
        "CustomerMemo": {"value": "Ada"},
        "BillEmail": {"Address": "ada@example.com"},
        "DocNumber": "in_hb_0001",
    }
    assert "tok" not in repr(client)


@pytest.mark.anyio
async def test_refund_receipt(qbo: QuickBooksClient, admin: httpx.AsyncClient) -> None:
    refund = RefundReceipt(
        amount=Decimal("10.00"),
        currency="usd",
        txn_date=date(2026, 1, 2),
        description="Refund re_hb_A",
        private_note="hookbus stripe evt_R1 re_hb_A",
    )
    created = await qbo.create_refund_receipt(refund, request_id="stripe:re_hb_A")
    assert created.total == Decimal("10.00")
    assert created.raw["RefundReceipt"]["DepositToAccountRef"] == {"value": "35"}
    objects = await stored(admin)
    assert [o["Id"] for o in objects["refundreceipts"]] == [created.id]
    assert objects["salesreceipts"] == []


@pytest.mark.anyio
async def test_requestid_replay_returns_the_first_object(qbo: QuickBooksClient, admin: httpx.AsyncClient) -> None:
    first = await qbo.create_sales_receipt(receipt("42.00", "USD"), request_id="stripe:evt_test_hb_0001")
    again = await qbo.create_sales_receipt(receipt("42.00", "USD"), request_id="stripe:evt_test_hb_0001")
    assert again.id == first.id and again.total == first.total == Decimal("42.00")
    assert again.raw == first.raw
    assert len((await stored(admin))["salesreceipts"]) == 1

    other = await qbo.create_sales_receipt(receipt("42.00", "USD"), request_id="stripe:evt_test_hb_0002")
    assert other.id != first.id
    assert len((await stored(admin))["salesreceipts"]) == 2


@pytest.mark.anyio
async def test_wrong_token_is_an_auth_error(app: Starlette, admin: httpx.AsyncClient) -> None:
    async with QuickBooksClient(
        base_url=BASE_URL, realm_id=REALM, access_token="wrong-token-123", transport=httpx.ASGITransport(app=app)
    ) as client:
        with pytest.raises(QuickBooksAuthError) as info:
            await client.create_sales_receipt(receipt("19.99", "USD"), request_id="r1")
        assert isinstance(info.value, RetryLater)
        assert "401" in info.value.reason and "3200" in info.value.reason
        assert "wrong-token-123" not in info.value.reason

        client.set_access_token(TOKEN)  # after a refresh the same client works
        created = await client.create_sales_receipt(receipt("19.99", "USD"), request_id="r1")
        assert created.total == Decimal("19.99")
    assert len((await stored(admin))["salesreceipts"]) == 1


@pytest.mark.anyio
async def test_missing_token_is_401(admin: httpx.AsyncClient) -> None:
    response = await admin.post(f"/v3/company/{REALM}/salesreceipt", json={})
    assert response.status_code == 401
    assert response.json()["fault"]["type"] == "AUTHENTICATION"


@pytest.mark.anyio
async def test_validation_fault_is_permanent(qbo: QuickBooksClient, admin: httpx.AsyncClient) -> None:
    with pytest.raises(QuickBooksValidationError) as info:
        await qbo.create_sales_receipt(receipt("-1.00", "USD"), request_id="neg")
    assert isinstance(info.value, PermanentError)
    assert info.value.fault_type == "ValidationFault"
    assert "400" in info.value.reason and "code=6000" in info.value.reason and "Line[0].Amount" in info.value.reason
    assert (await stored(admin))["salesreceipts"] == []

    with pytest.raises(QuickBooksValidationError, match="DocNumber"):
        await qbo.create_sales_receipt(receipt("1.00", "USD", doc_number="x" * 22), request_id="long")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body", "element"),
    [
        ("salesreceipt", {"CurrencyRef": {"value": "USD"}}, "Line"),
        ("salesreceipt", {"Line": [], "CurrencyRef": {"value": "USD"}}, "Line"),
        ("salesreceipt", {"Line": [{"DetailType": "SalesItemLineDetail"}], "CurrencyRef": {"value": "USD"}}, "Amount"),
        ("salesreceipt", {"Line": [{"Amount": 1, "DetailType": "Nope"}], "CurrencyRef": {"value": "USD"}}, "Detail"),
        ("salesreceipt", {"Line": [{"Amount": 1, "DetailType": "SalesItemLineDetail"}]}, "CurrencyRef"),
        (
            "salesreceipt",
            {"Line": [{"Amount": "1", "DetailType": "SalesItemLineDetail"}], "CurrencyRef": {"value": "USD"}},
            "Amount",
        ),
        (
            "refundreceipt",
            {"Line": [{"Amount": 1, "DetailType": "SalesItemLineDetail"}], "CurrencyRef": {"value": "USD"}},
            "DepositToAccountRef",
        ),
    ],
)
async def test_sandbox_validation(admin: httpx.AsyncClient, path: str, body: dict[str, object], element: str) -> None:
    response = await admin.post(f"/v3/company/{REALM}/{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400
    fault = response.json()["Fault"]
    assert fault["type"] == "ValidationFault"
    assert element in fault["Error"][0]["Detail"]


@pytest.mark.anyio
async def test_throttled_with_retry_after(qbo: QuickBooksClient, admin: httpx.AsyncClient) -> None:
    response = await admin.post("/_sandbox/faults", json={"status": 429, "count": 2, "retry_after": "1"})
    assert response.status_code == 200
    for _ in range(2):
        with pytest.raises(RetryLater) as info:
            await qbo.create_sales_receipt(receipt("19.99", "USD"), request_id="throttled")
        assert not isinstance(info.value, QuickBooksAuthError)
        assert info.value.delay == 1.0
        assert "429" in info.value.reason
    created = await qbo.create_sales_receipt(receipt("19.99", "USD"), request_id="throttled")
    assert created.id == "1"
    assert len((await stored(admin))["salesreceipts"]) == 1


@pytest.mark.anyio
async def test_server_error_without_retry_after(qbo: QuickBooksClient, admin: httpx.AsyncClient) -> None:
    await admin.post("/_sandbox/faults", json={"status": 503, "count": 1})
    with pytest.raises(RetryLater) as info:
        await qbo.create_sales_receipt(receipt("19.99", "USD"), request_id="x")
    assert info.value.delay is None and "503" in info.value.reason


@pytest.mark.anyio
async def test_http_date_retry_after_and_garbage() -> None:
    headers = iter([{"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}, {"Retry-After": "soon"}])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers=next(headers), text="<html>slow down</html>")

    async with QuickBooksClient(
        base_url=BASE_URL, realm_id=REALM, access_token=TOKEN, transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(RetryLater) as past:
            await client.create_sales_receipt(receipt("1.00", "USD"), request_id="a")
        assert past.value.delay == 0.0
        with pytest.raises(RetryLater) as garbage:
            await client.create_sales_receipt(receipt("1.00", "USD"), request_id="a")
        assert garbage.value.delay is None


@pytest.mark.anyio
@pytest.mark.parametrize("exc", [httpx.ConnectError("connection refused"), httpx.ReadTimeout("timed out")])
async def test_transport_errors_retry(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    async with QuickBooksClient(
        base_url=BASE_URL, realm_id=REALM, access_token=TOKEN, transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(RetryLater) as info:
            await client.create_sales_receipt(receipt("19.99", "USD"), request_id="r")
    assert type(info.value) is RetryLater
    assert type(exc).__name__ in info.value.reason


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "kind"), [(404, PermanentError), (422, PermanentError), (408, RetryLater)])
async def test_other_statuses(status: int, kind: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"Fault": {"Error": [{"Message": "m", "Detail": "d", "code": "1"}]}})

    async with QuickBooksClient(
        base_url=BASE_URL, realm_id=REALM, access_token=TOKEN, transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(kind) as info:
            await client.create_sales_receipt(receipt("19.99", "USD"), request_id="r")
    assert str(status) in info.value.reason  # type: ignore[attr-defined]
    assert not isinstance(info.value, QuickBooksValidationError)


@pytest.mark.anyio
async def test_ok_without_entity_is_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<IntuitResponse/>")

    async with QuickBooksClient(
        base_url=BASE_URL, realm_id=REALM, access_token=TOKEN, transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(RetryLater, match="quickbooks_unexpected_response"):
            await client.create_sales_receipt(receipt("19.99", "USD"), request_id="r")


@pytest.mark.anyio
async def test_unrepresentable_amount_is_permanent(qbo: QuickBooksClient) -> None:
    with pytest.raises(PermanentError, match="quickbooks_amount_not_representable"):
        await qbo.create_sales_receipt(receipt("12345678901234567.89", "USD"), request_id="big")


def test_float_amount_is_refused() -> None:
    with pytest.raises(TypeError):
        SalesReceipt(
            amount=19.99,  # type: ignore[arg-type]
            currency="USD",
            txn_date=date(2026, 1, 1),
            description="d",
            private_note="p",
        )


@pytest.mark.anyio
async def test_sandbox_admin_routes(qbo: QuickBooksClient, admin: httpx.AsyncClient) -> None:
    assert (await admin.get("/healthz")).json() == {"status": "ok"}
    await qbo.create_sales_receipt(receipt("19.99", "USD"), request_id="r")
    assert len((await stored(admin))["salesreceipts"]) == 1
    assert (await admin.post("/_sandbox/reset")).status_code == 200
    assert (await stored(admin)) == {"salesreceipts": [], "refundreceipts": []}
    created = await qbo.create_sales_receipt(receipt("19.99", "USD"), request_id="r")  # requestid forgotten too
    assert created.id == "1"
    assert (await admin.post("/_sandbox/faults", json={"status": 200})).status_code == 400

"""The rules-file sections of the leads and inventory integrations (deploy/hookbus.example.toml validates), and the
``hookbus send`` senders: each signs a delivery that its source accepts and normalizes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from bus import rules
from bus.errors import ConfigError
from consumers.crm import CrmRules
from consumers.inventory import InventoryRules
from ingest.senders import SENDERS
from ingest.sources import configured_sources
from ingest.sources.forms import FormsSection
from ingest.sources.generic import StandardSourcesSection
from ingest.sources.shopify import ShopifyRules

from .conftest import REPO

EXAMPLE = REPO / "deploy" / "hookbus.example.toml"


@pytest.fixture
def example_rules(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HOOKBUS_CONFIG", str(EXAMPLE))
    rules.reload()
    yield EXAMPLE
    rules.reload()


def test_example_rules_file_sections_validate(example_rules: Path) -> None:
    forms = rules.section("sources.forms", FormsSection).root
    assert forms["contact"].max_body_bytes == 262144 and forms["quote"].signature == "standard-webhooks"
    assert rules.section("sources.standard", StandardSourcesSection).root["webinar"].types == {
        "registrant.created": "lead.created"
    }
    assert rules.section("sources.shopify", ShopifyRules).topics == ("inventory_levels/update",)
    assert rules.section("crm", CrmRules).follow_up.mode == "sequence"
    inventory = rules.section("inventory", InventoryRules)
    assert inventory.items["MUG-11OZ"].reorder_point == 10 and inventory.needs_api and inventory.needs_email


@pytest.fixture
def configured(example_rules: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORM_CONTACT_SECRET", "contact-secret-for-tests")
    monkeypatch.setenv("FORM_QUOTE_SECRET", "whsec_aG9va2J1cy1zdGFuZGFyZC13ZWJob29rcy1rZXkhISE=")
    monkeypatch.setenv("WEBINAR_WEBHOOK_SECRET", "whsec_aG9va2J1cy1zdGFuZGFyZC13ZWJob29rcy1rZXktMiE=")
    monkeypatch.setenv("SHOPIFY_WEBHOOK_SECRET", "shpss_test_secret")
    monkeypatch.setenv("INVENTORY_WEBHOOK_SECRET", "whsec_aG9va2J1cy1zdGFuZGFyZC13ZWJob29rcy1rZXktMiE=")
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)


@pytest.mark.parametrize(
    ("sender", "event_type", "options", "source", "expected_type"),
    [
        (
            "forms",
            "lead",
            {"form": "contact", "email": "Pat@Example.com", "services": "a,b"},
            "forms/contact",
            "lead.created",
        ),
        ("forms", "lead", {"form": "quote", "format": "json"}, "forms/quote", "lead.created"),
        ("forms", "spam", {"form": "contact"}, "forms/contact", None),
        ("shopify", "inventory_levels/update", {"available": "3"}, "shopify", "inventory.level_changed"),
        ("shopify", "orders/create", {}, "shopify", None),  # orders/create is not enabled in the example file
        ("inventory", "inventory.level_changed", {"sku": "BEANS-1KG"}, "inventory", "inventory.level_changed"),
        ("standard", "registrant.created", {"email": "a@b.co"}, "webinar", "lead.created"),
    ],
)
def test_senders_sign_what_their_source_accepts(
    configured: None, sender: str, event_type: str, options: dict[str, str], source: str, expected_type: str | None
) -> None:
    assert event_type in SENDERS[sender].event_types
    hook = SENDERS[sender].webhook(event_type, options)
    sources = configured_sources()
    assert hook.path == f"/webhooks/{source}"
    target = sources[source]
    headers = Headers(headers=dict(hook.headers))
    target.verify(headers, hook.body, time.time())
    delivery = target.parse_request(headers, hook.body)  # type: ignore[attr-defined]
    assert [e.type for e in delivery.events] == ([expected_type] if expected_type else [])
    if sender == "forms" and event_type == "lead" and options.get("services"):
        assert delivery.events[0].data["fields"]["services"] == ["a", "b"]
        assert delivery.events[0].data["email_key"] == "pat@example.com"


def test_configured_sources_from_the_example(configured: None) -> None:
    assert {"forms/contact", "forms/quote", "inventory", "shopify", "webinar"} <= set(configured_sources())


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'x = "\xff"\n', "not valid TOML: not UTF-8 at byte 5"),
        (b"x = \n", "not valid TOML: Invalid value"),
    ],
)
def test_an_unreadable_rules_file_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, expected: str
) -> None:
    path = tmp_path / "hookbus.toml"
    path.write_bytes(content)
    monkeypatch.setenv("HOOKBUS_CONFIG", str(path))
    rules.reload()
    try:
        with pytest.raises(ConfigError) as caught:
            rules.section("sources.forms", FormsSection)
        assert str(caught.value).startswith(f"{path}: {expected}")
    finally:
        rules.reload()

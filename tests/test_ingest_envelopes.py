"""Ingest's envelope encoding gives the bytes of Event.to_json() for the event carrying ingest's attributes."""

from __future__ import annotations

import dataclasses
import random

import pytest

from bus.envelope import Event, from_unix
from ingest.envelopes import envelope_json
from ingest.sources.stripe import _rfc3339

BASE = Event("evt_1", "stripe", "payment.succeeded", "2026-01-01T00:00:00.000Z", {"amount": 1, "é": "ü"}, "pi_1")


@pytest.mark.parametrize(
    "event",
    [
        BASE,
        dataclasses.replace(BASE, subject=None),
        dataclasses.replace(BASE, extensions={"traceparent": "00-ab-cd-01"}),
        dataclasses.replace(BASE, extensions={"receivedtime": "earlier", "other": "x"}),
        dataclasses.replace(BASE, data={}),
    ],
    ids=["plain", "no-subject", "own-extension", "same-extension", "empty-data"],
)
@pytest.mark.parametrize("extensions", [{}, {"receivedtime": "2026-01-01T00:00:01.234Z"}, {"id": "clash"}])
def test_same_bytes_as_an_event_carrying_the_extensions(event: Event, extensions: dict[str, str]) -> None:
    expected = dataclasses.replace(event, extensions={**event.extensions, **extensions}).to_json()
    assert envelope_json(event, extensions) == expected


def test_stripe_times_format_as_from_unix() -> None:
    rng = random.Random(7)
    for seconds in [0, 59, 86_399, 951_782_400, 1_767_225_600, 253_402_300_799, 1.5, 2_000_000_000.25] + [
        rng.randrange(0, 253_402_300_800) for _ in range(2000)
    ]:
        assert _rfc3339(seconds) == from_unix(seconds)
    with pytest.raises(ValueError):
        _rfc3339(253_402_300_800)

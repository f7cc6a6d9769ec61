"""Fast unit tests: backoff schedule, retention rule, dead-letter record format, envelope, settings, exports.

Where Redis is needed, fakeredis stands in (it has no Lua, so the scripts are tested on the real Valkey elsewhere).
"""

from __future__ import annotations

import random

import fakeredis
import pytest

import bus
from bus.config import BusSettings
from bus.deadletter import DeadLetter
from bus.envelope import Event, utc_rfc3339_to_unix_s
from bus.errors import ConfigError, EnvelopeError
from bus.naming import Names, idempotency_key
from bus.retention import GroupProgress, group_progress, trim_bound
from bus.retry import RetryPolicy


def test_exported_members_are_exactly_the_public_api() -> None:
    public = {name for name in dir(bus) if not name.startswith("_") and name[0].isupper() or name == "idempotency_key"}
    assert sorted(bus.__all__) == bus.__all__
    assert public <= set(bus.__all__)


# -- backoff ---------------------------------------------------------------------------------------------------


def test_backoff_grows_by_factor_and_is_capped() -> None:
    policy = RetryPolicy(base_s=1, factor=2, cap_s=30, jitter=0, max_attempts=10)
    assert [policy.delay_s(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_backoff_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(base_s=10, factor=1, cap_s=10, jitter=0.2)
    rng = random.Random(7)
    delays = [policy.delay_s(1, rng=rng) for _ in range(500)]
    assert min(delays) >= 8 and max(delays) <= 12
    assert max(delays) - min(delays) > 2  # it does spread


def test_default_schedule_and_exhaustion() -> None:
    policy = RetryPolicy(jitter=0)
    assert [policy.delay_s(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 32, 64]
    assert not policy.exhausted(7) and policy.exhausted(8)


@pytest.mark.parametrize(
    "kwargs", [{"base_s": -1}, {"factor": 0.5}, {"cap_s": 0.5, "base_s": 1}, {"jitter": 1.0}, {"max_attempts": 0}]
)
def test_inconsistent_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# -- retention -------------------------------------------------------------------------------------------------

NOW = 1_000_000


def test_retention_bound_is_capped_by_pending_and_undelivered_entries() -> None:
    done = GroupProgress(last_delivered=(NOW - 10, 0), oldest_pending=None)
    behind = GroupProgress(last_delivered=(NOW - 500, 3), oldest_pending=None)
    pending = GroupProgress(last_delivered=(NOW - 10, 0), oldest_pending=(NOW - 800, 1))
    assert trim_bound([done], now_ms=NOW, retention_ms=100) == (NOW - 100, 0)
    assert trim_bound([done, behind], now_ms=NOW, retention_ms=100) == (NOW - 500, 3)
    assert trim_bound([done, pending], now_ms=NOW, retention_ms=100) == (NOW - 800, 1)


def test_retention_by_length_and_by_time_takes_the_stricter_limit() -> None:
    done = GroupProgress(last_delivered=(NOW, 0), oldest_pending=None)
    assert trim_bound([done], now_ms=NOW, retention_ms=1000, length_bound=(NOW - 10, 0)) == (NOW - 10, 0)
    assert trim_bound([done], now_ms=NOW, retention_ms=10, length_bound=(NOW - 1000, 0)) == (NOW - 10, 0)


def test_no_retention_or_a_fresh_group_trims_nothing() -> None:
    assert trim_bound([], now_ms=NOW, retention_ms=None) is None
    fresh = GroupProgress(last_delivered=(0, 0), oldest_pending=None)
    assert trim_bound([fresh], now_ms=NOW, retention_ms=1) is None


@pytest.mark.anyio
async def test_group_progress_reads_positions_and_pending() -> None:
    r = fakeredis.FakeAsyncRedis()
    for n in range(1, 4):
        await r.xadd("s", {"event": b"{}"}, id=f"{n}-0")
    await r.xgroup_create("s", "reader", id="0")
    await r.xgroup_create("s", "idle", id="0")
    await r.xreadgroup("reader", "c", {"s": ">"}, count=2)
    await r.xack("s", "reader", "1-0")
    progress = {p.last_delivered: p.oldest_pending for p in await group_progress(r, "s")}
    assert progress == {(2, 0): (2, 0), (0, 0): None}
    assert trim_bound(await group_progress(r, "s"), now_ms=10**13, retention_ms=1) is None  # "idle" read nothing


# -- dead-letter record ----------------------------------------------------------------------------------------


def test_dead_letter_record_round_trips_through_stream_fields() -> None:
    record = DeadLetter(
        event=b'{"id":"evt_1"}',
        stream="hookbus:stream:payment.succeeded",
        entry_id="1767225600000-0",
        group="accounting",
        consumer="host-42",
        error_type="QuickBooksValidationError",
        reason="ValidationFault 2020: Required param missing",
        attempts=3,
        first_failure_ms=1767225600000,
        last_failure_ms=1767225660000,
    )
    fields = {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in record.to_fields().items()}
    assert set(fields) == {
        b"event",
        b"stream",
        b"entry_id",
        b"group",
        b"consumer",
        b"error_type",
        b"reason",
        b"attempts",
        b"first_failure_ms",
        b"last_failure_ms",
    }
    assert fields[b"attempts"] == b"3"
    assert DeadLetter.from_fields(fields) == record


@pytest.mark.anyio
async def test_dead_letter_record_survives_a_real_xadd_on_fakeredis() -> None:
    r = fakeredis.FakeAsyncRedis()
    record = DeadLetter(b"\xff\x00raw", "s", "1-0", "g", "c", "EnvelopeError", "not JSON", 1, 5, 6)
    await r.xadd("dlq", record.to_fields())  # type: ignore[arg-type]
    (_, fields), *_ = await r.xrange("dlq")
    assert DeadLetter.from_fields(fields) == record


# -- envelope, keys, settings ----------------------------------------------------------------------------------


def test_envelope_round_trip_keeps_unicode_subject_and_extensions() -> None:
    event = Event(
        id="evt_1",
        source="stripe",
        type="payment.succeeded",
        time="2026-01-01T00:00:00.000Z",
        data={"amount": 1999, "currency": "USD", "name": "Zoë"},
        subject="pi_1",
        extensions={"receivedtime": "x"},
    )
    assert Event.from_fields(event.to_fields()) == event


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"specversion":"1.0"}',
        b'{"specversion":"0.3","id":"a","source":"s","type":"t","time":"x","data":{}}',
        b'{"specversion":"1.0","id":"","source":"s","type":"t","time":"x","data":{}}',
        b'{"specversion":"1.0","id":"a","source":"s","type":"t","time":"x","data":[]}',
    ],
)
def test_invalid_envelopes_raise_envelope_error(raw: bytes) -> None:
    with pytest.raises(EnvelopeError):
        Event.from_json(raw)


def test_idempotency_key_is_stable_and_scoped() -> None:
    key = idempotency_key("accounting", "stripe", "evt_1")
    assert key == idempotency_key("accounting", "stripe", "evt_1")
    assert key != idempotency_key("crm", "stripe", "evt_1")
    assert key != idempotency_key("accounting", "stripe", "evt_1", "step")
    assert len(key) == 36


def test_names_under_a_prefix() -> None:
    names = Names("acme")
    assert names.stream("payment.succeeded") == "acme:stream:payment.succeeded"
    assert names.event_type_of("acme:stream:payment.succeeded") == "payment.succeeded"
    assert names.dlq("accounting") == "acme:dlq:accounting"
    assert names.group_of_dlq("acme:dlq:accounting") == "accounting"


def test_settings_read_file_variants(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "url"
    secret.write_text("redis://secret-host:6379/0\n")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL_FILE", str(secret))
    assert BusSettings().redis_url == "redis://secret-host:6379/0"
    monkeypatch.setenv("REDIS_URL", "redis://direct:6379/0")
    assert BusSettings().redis_url == "redis://direct:6379/0"  # a direct value wins
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("REDIS_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="REDIS_URL_FILE"):
        BusSettings()


@pytest.mark.parametrize(
    ("reply", "unavailable"),
    [
        ("BUSY Valkey is busy running a script", True),
        ("OOM command not allowed when used memory > 'maxmemory'", True),
        ("READONLY You can't write against a read only replica.", True),
        ("LOADING Valkey is loading the dataset in memory", True),
        ("NOGROUP No such key 's' or consumer group 'g'", False),
        ("ERR wrong number of arguments", False),
    ],
)
def test_error_replies_that_mean_an_outage(reply: str, unavailable: bool) -> None:
    from redis.exceptions import ResponseError

    from bus.connection import is_unavailable

    assert is_unavailable(ResponseError(reply)) is unavailable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00.000Z", 1767225600.0),
        ("2026-01-01T00:00:00.999Z", 1767225600.999),
        ("2026-01-01T00:00:01.500Z", 1767225601.5),  # a new second after a cached one
        ("2026-01-01T01:00:00.250+01:00", 1767225600.25),  # other offsets take the general parse
        ("2026-01-01T00:00:00.5Z", 1767225600.5),
    ],
)
def test_received_time_parse_exact(text: str, expected: float) -> None:
    assert utc_rfc3339_to_unix_s(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text", ["2026-01-01T00:00:00.abcZ", "2026-13-01T00:00:00.000Z", "2026-01-01T00:00:00"])
def test_received_time_parse_refuses_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        utc_rfc3339_to_unix_s(text)


def test_refusing_replies_are_unavailable_however_redis_py_words_them() -> None:
    # redis-py maps OOM, READONLY, TRYAGAIN… to classes of its own and drops the code from the message.
    from redis._parsers.base import BaseParser

    from bus.connection import is_unavailable

    for reply in (
        "OOM command not allowed",
        "READONLY replica",
        "TRYAGAIN later",
        "MASTERDOWN link down",
        "CLUSTERDOWN down",
        "BUSY script",
        "LOADING dataset",
        "MISCONF rdb",
    ):
        assert is_unavailable(BaseParser.parse_error(reply)), reply
    for reply in ("ERR unknown command", "WRONGTYPE Operation", "NOGROUP No such key", "NOSCRIPT No matching"):
        assert not is_unavailable(BaseParser.parse_error(reply)), reply


def test_from_unix_refuses_what_it_cannot_represent() -> None:
    from bus.envelope import from_unix

    assert from_unix(1767225600) == "2026-01-01T00:00:00.000Z"
    for seconds in (10**17, 2**63, -(10**15), float("inf")):
        with pytest.raises(ValueError):
            from_unix(seconds)

"""Ingest's body-read deadlines: one timer for many reads, exact expiry, other cancellations left alone."""

from __future__ import annotations

import asyncio

import pytest

from ingest.deadlines import Deadlines

pytestmark = pytest.mark.anyio


async def _read(deadlines: Deadlines, wait_s: float) -> str:
    ticket = deadlines.begin()
    try:
        await asyncio.sleep(wait_s)
    except asyncio.CancelledError:
        if deadlines.expired(ticket):
            return "timed out"
        raise
    finally:
        deadlines.end(ticket)
    return "read"


async def test_only_reads_past_their_deadline_are_cancelled() -> None:
    deadlines = Deadlines(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(_read(deadlines, 0.02), _read(deadlines, 5), _read(deadlines, 0.05))
    assert results == ["read", "timed out", "read"]
    assert 0.1 <= loop.time() - started < 1.0
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_each_read_gets_its_own_full_timeout() -> None:
    deadlines = Deadlines(0.15)
    first = asyncio.create_task(_read(deadlines, 5))
    await asyncio.sleep(0.1)
    second = asyncio.create_task(_read(deadlines, 0.1))  # would be cut short by a timer set for the first read only
    assert await second == "read"
    assert await first == "timed out"


async def test_a_cancellation_from_elsewhere_is_not_a_timeout() -> None:
    deadlines = Deadlines(10)
    task = asyncio.create_task(_read(deadlines, 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_ended_reads_do_not_pile_up_behind_a_slow_one() -> None:
    deadlines = Deadlines(10)
    slow = asyncio.create_task(_read(deadlines, 5))
    await asyncio.sleep(0)
    for _ in range(1000):
        await _read(deadlines, 0)
    assert len(deadlines._tickets) <= 64
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow

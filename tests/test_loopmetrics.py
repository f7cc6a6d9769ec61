"""bus.loopmetrics exposes exactly what prometheus-client's own Counter and Histogram would, for the same values."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from bus.loopmetrics import LoopCounter, LoopHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0)
# Values on, between, below and beyond the bucket bounds.
VALUES = (0.0, 0.001, 0.0010001, 0.005, 0.01, 0.5, 1.0, 7.0, 0.0999)


def samples(registry: CollectorRegistry) -> list[str]:
    lines = generate_latest(registry).decode().splitlines()
    return sorted(line for line in lines if line and "_created" not in line)


def test_histogram_exposition_matches_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = LoopHistogram("t_seconds", "Time.", ["group", "type"], buckets=BUCKETS, registry=ours)
    reference = Histogram("t_seconds", "Time.", ["group", "type"], buckets=BUCKETS, registry=theirs)
    for n, value in enumerate(VALUES):
        labels = ("g", "a" if n % 2 else "b")
        mine.labels(*labels).observe(value)
        reference.labels(*labels).observe(value)
    mine.labels("g", "untouched")
    reference.labels("g", "untouched")
    assert samples(ours) == samples(theirs)


def test_counter_exposition_matches_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = LoopCounter("t_handled_total", "Handled.", ["outcome"], registry=ours)
    reference = Counter("t_handled_total", "Handled.", ["outcome"], registry=theirs)
    for counter in (mine, reference):
        counter.labels("acked").inc()
        counter.labels("acked").inc(2.5)
        counter.labels("retry")
    assert samples(ours) == samples(theirs)
    assert ours.get_sample_value("t_handled_total", {"outcome": "acked"}) == 3.5


def test_misuse_is_refused_like_prometheus_client() -> None:
    registry = CollectorRegistry()
    counter = LoopCounter("t_total", "T.", ["a"], registry=registry)
    with pytest.raises(ValueError):
        counter.labels("x").inc(-1)
    with pytest.raises(ValueError):
        counter.labels("x", "y")
    with pytest.raises(ValueError):
        LoopCounter("t_without_suffix", "T.", ["a"], registry=registry)
    with pytest.raises(ValueError):
        LoopHistogram("h_seconds", "H.", ["a"], buckets=(1.0, 0.5), registry=registry)

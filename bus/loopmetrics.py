"""Counters and histograms for the worker's per-event hot path, exposed through prometheus-client.

prometheus-client's :class:`~prometheus_client.Histogram` takes a lock per value it updates (the sum, then a bucket),
which makes an ``observe`` cost ~0.6 µs; a worker records two histograms and a counter per event, a fifth of what
it spends on an event with a no-op handler. The metrics here are updated only from the event loop's thread, so
they keep plain numbers and need no lock (an ``observe`` is a ``bisect`` and two additions), and are exposed by a
custom collector (https://prometheus.github.io/client_python/collector/custom/) registered with the default
registry: a scrape, served from prometheus-client's own thread, reads them as they are. The exposition is the
same as prometheus-client's (``_bucket`` with cumulative ``le`` buckets, ``_count``, ``_sum``; ``_total`` for
counters), without the ``_created`` series.

Only for code that runs on one event loop thread; anything else uses prometheus-client's classes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


class HistogramChild:
    """One labelled series of a :class:`LoopHistogram`."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        #: Observations per bucket (not cumulative); the last is the ``+Inf`` bucket's own.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Record ``value`` (in the metric's unit, e.g. seconds). A bucket counts values ≤ its upper bound."""
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value


class CounterChild:
    """One labelled series of a :class:`LoopCounter`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (≥ 0). Raises ValueError for a negative amount, as prometheus-client does."""
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


Child = TypeVar("Child", "HistogramChild", "CounterChild")


class _Family(Generic[Child]):
    """Labelled series made by ``new_child`` on first use, registered with ``registry`` (None: not registered)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry | None,
        new_child: Callable[[], Child],
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._new_child = new_child
        self._children: dict[tuple[str, ...], Child] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> Child:
        """The series of ``values`` (one per label name, in order), created at zero on first use. Raises ValueError
        for a wrong number of values."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected label values for {self.labelnames}, got {values}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child


class LoopHistogram(_Family[HistogramChild]):
    """A histogram with labels: ``LoopHistogram(name, doc, labelnames, buckets).labels(*values).observe(v)``.

    ``buckets`` are the finite upper bounds, increasing (``+Inf`` is implied). Raises ValueError for unsorted
    buckets or a wrong number of label values."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        bounds = [float(b) for b in buckets if b != float("inf")]
        if bounds != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be increasing")
        self.bounds = tuple(bounds)
        super().__init__(name, documentation, labelnames, registry, lambda: HistogramChild(self.bounds))

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for key, child in list(self._children.items()):
            cumulative, buckets = 0, []
            for edge, count in zip(edges, list(child.counts), strict=True):
                cumulative += count
                buckets.append((edge, cumulative))
            family.add_metric(list(key), buckets, child.sum)
        yield family


class LoopCounter(_Family[CounterChild]):
    """A counter with labels: ``LoopCounter(name, doc, labelnames).labels(*values).inc()``. ``name`` ends in
    ``_total`` (the exposition's sample name); raises ValueError for a wrong number of label values."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, registry: CollectorRegistry | None = REGISTRY
    ) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"{name}: a counter's name ends in _total")
        super().__init__(name, documentation, labelnames, registry, CounterChild)

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self._children.items()):
            family.add_metric(list(key), child.value)
        yield family

"""The publisher API (events produced by handlers or scripts) against redis-py doing the least it could.

- single: ``await publisher.publish([event])`` one after the other, against ``await redis.xadd(stream, fields)``;
- batch: ``await publisher.publish_many(...)`` of 100 events (one script each, one round trip), against a redis-py
  ``pipeline(transaction=False)`` of 100 XADDs.

The same envelope bytes, the same client settings (:func:`bus.connection.connect`), uvloop, in this process;
rounds alternate between the two. hookbus does more per event: its script also writes the event's trace record.

    python -m bench.publish [--rounds 3] [--single 3000] [--batches 100]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from bus.connection import connect
from bus.envelope import Event
from bus.naming import Names
from bus.publisher import Publisher

from . import loadgen
from .common import Series, Valkey, emit, table, verdict
from .worker_rate import STREAM, envelopes

BATCH = 100


async def _rates(url: str, *, rounds: int, single: int, batches: int) -> dict[str, Series]:
    client = connect(url, socket_timeout_s=5)
    publisher = Publisher(client, Names())
    payloads = envelopes(single + batches * BATCH)
    events = [Event.from_json(p) for p in payloads]
    fields = [{"event": p} for p in payloads]
    rates = {k: Series() for k in ("publish", "xadd", "publish_many", "pipeline")}

    async def timed(name: str, run: Any, count: int) -> None:
        started = time.perf_counter()
        await run()
        rates[name].add(count / (time.perf_counter() - started))

    async def one_by_one_publish() -> None:
        for event in events[:single]:
            await publisher.publish([event])

    async def one_by_one_xadd() -> None:
        for entry in fields[:single]:
            await client.xadd(STREAM, entry)

    async def batched_publish() -> None:
        for b in range(batches):
            await publisher.publish_many([([e], None) for e in events[b * BATCH : (b + 1) * BATCH]])

    async def batched_pipeline() -> None:
        for b in range(batches):
            async with client.pipeline(transaction=False) as pipe:
                for entry in fields[b * BATCH : (b + 1) * BATCH]:
                    pipe.xadd(STREAM, entry)
                await pipe.execute()

    try:
        await one_by_one_publish()  # warm-up: connections, script load
        await one_by_one_xadd()
        for r in range(rounds):
            pairs = [("publish", one_by_one_publish, "xadd", one_by_one_xadd, single)]
            pairs.append(("publish_many", batched_publish, "pipeline", batched_pipeline, batches * BATCH))
            for first, run_first, second, run_second, count in pairs:
                order = [(first, run_first), (second, run_second)]
                for name, run in order if r % 2 == 0 else reversed(order):
                    await client.delete(STREAM)
                    await timed(name, run, count)
    finally:
        await client.aclose()
    return rates


def measure(*, rounds: int = 3, single: int = 3000, batches: int = 100) -> dict[str, Any]:
    with Valkey() as valkey:
        rates = loadgen._uvloop_run(_rates(valkey.url, rounds=rounds, single=single, batches=batches))
    ratios = {
        "publish/xadd": Series([p / x for p, x in zip(rates["publish"].values, rates["xadd"].values, strict=True)]),
        "publish_many/pipeline": Series(
            [p / x for p, x in zip(rates["publish_many"].values, rates["pipeline"].values, strict=True)]
        ),
    }
    return {
        "rounds": rounds,
        "events_per_s": {k: v.as_json(0) for k, v in rates.items()},
        "ratios": {k: v.as_json(3) for k, v in ratios.items()},
        "_series": {"rates": rates, "ratios": ratios},
    }


LABELS = {
    "publish": "Publisher.publish, one at a time",
    "xadd": "redis-py XADD, one at a time",
    "publish_many": f"Publisher.publish_many, {BATCH} per call",
    "pipeline": f"redis-py pipeline of {BATCH} XADDs",
}
TARGETS = {"publish/xadd": 0.9, "publish_many/pipeline": 0.8}


def report(result: dict[str, Any]) -> str:
    rates, ratios = result["_series"]["rates"], result["_series"]["ratios"]
    rows = [[LABELS[k], f"{v.median:,.0f}", v.spread()] for k, v in rates.items()]
    lines = ["publisher API", table(["producer", "events/s", "spread"], rows)]
    for key, series in ratios.items():
        target = TARGETS[key]
        lines.append(
            f"{key} = {series.median:.2f}× (rounds {series.spread(2)}) (target ≥ {target}: "
            f"{verdict(series.median, target)})"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single", type=int, default=3000, help="events published one at a time per round")
    parser.add_argument("--batches", type=int, default=100, help=f"batches of {BATCH} per round")
    args = parser.parse_args(argv)
    result = measure(rounds=args.rounds, single=args.single, batches=args.batches)
    print(report(result))
    emit("publish", {k: v for k, v in result.items() if not k.startswith("_")})


if __name__ == "__main__":
    main()

"""Benchmark 4: how throughput grows with processes on this machine.

- worker: the pre-filled stream of :mod:`bench.worker_rate` drained by 1, 2 and 4 hookbus worker processes of one
  group (no-op handler);
- ingest: hookbus ingest with 1 and 2 uvicorn workers, measured in alternation as in :mod:`bench.ingest_rate`.

On 2 cores the curve flattens where the processes, Valkey and the load generator together need more than 2 cores:
that is the machine's limit, not a lock.

    python -m bench.scale [--seconds 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from . import ingest_rate, worker_rate
from .common import Series, Valkey, emit, table, verdict

WORKER_PROCS = (1, 2, 4)


def measure(*, seconds: float = 3.0, rounds: int = 2, events: int = 200_000) -> dict[str, Any]:
    workers = {n: Series() for n in WORKER_PROCS}
    with Valkey() as valkey:
        worker_rate.prefill(valkey.client, events)
        for r in range(rounds):
            order = WORKER_PROCS if r % 2 == 0 else tuple(reversed(WORKER_PROCS))
            for n in order:
                rate, *_ = worker_rate.run_one(valkey, "hookbus", procs=n, total=events, seconds=seconds)
                workers[n].add(rate)
    ingest = ingest_rate.measure(rounds=rounds, duration_s=seconds, servers=("hookbus@1", "hookbus@2"))
    one, two = (ingest["_series"]["rate"][k] for k in ("hookbus@1", "hookbus@2"))
    ingest_ratio = Series([b / a for a, b in zip(one.values, two.values, strict=True)])
    return {
        "worker_events_per_s": {str(n): s.as_json(0) for n, s in workers.items()},
        "worker_speedup": {str(n): round(workers[n].median / workers[1].median, 3) for n in WORKER_PROCS},
        "ingest_req_per_s": {"1": one.as_json(0), "2": two.as_json(0)},
        "ingest_2_over_1": ingest_ratio.as_json(3),
        "generator": ingest["generator"],
        "_series": {"workers": workers, "ingest": (one, two, ingest_ratio)},
    }


def report(result: dict[str, Any]) -> str:
    workers = result["_series"]["workers"]
    one, two, ratio = result["_series"]["ingest"]
    rows = [
        [f"hookbus worker × {n}", f"{s.median:,.0f} events/s", s.spread(), f"{s.median / workers[1].median:.2f}×"]
        for n, s in workers.items()
    ]
    rows += [
        ["hookbus ingest, 1 uvicorn worker", f"{one.median:,.0f} req/s", one.spread(), "1.00×"],
        ["hookbus ingest, 2 uvicorn workers", f"{two.median:,.0f} req/s", two.spread(), f"{ratio.median:.2f}×"],
    ]
    return "\n".join(
        [
            "scale curve on this machine",
            table(["processes", "throughput", "spread", "vs 1"], rows),
            f"ingest 2 workers / 1 worker = {ratio.median:.2f}× (rounds {ratio.spread(2)}) "
            f"(target ≥ 1.5: {verdict(ratio.median, 1.5)})",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    result = measure(seconds=args.seconds, rounds=args.rounds)
    print(report(result))
    emit("scale", {k: v for k, v in result.items() if not k.startswith("_")})


if __name__ == "__main__":
    main()

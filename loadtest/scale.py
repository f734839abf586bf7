"""``scale``: what several workers cost and carry, against one, measured in the same run
(issue 17's benchmarks; docs/scaling.md).

* **per-worker cost**: the same total fan-out (``--rooms`` rooms of one VP9 ``L3T3_KEY``
  publisher and ``--subscribers`` each) on ``sfu serve`` with 1 worker, then with 2, for
  ``--rounds`` rounds (the order alternating); the server's CPU per forwarded packet (all
  its processes), and the ratio 2 workers / 1 per round and its median (goal: within 10 %);
* **a split room**: one room of 1 publisher and N subscribers on 1 worker, then of 2 x N
  on 2 workers with ``room_participants_per_worker: 1`` (cascading: each subscriber stays on
  the worker its WebSocket reached); loss and p99 latency of each, and whether each held
  (loss <= 0.5 %, p99 <= 50 ms).

::

    python -m loadtest scale
    python -m loadtest scale --subscribers 16 --rounds 3 --split 24
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from .bench import DURATION, bench, held


async def _step(**kwargs: Any) -> dict[str, Any]:
    result = await bench(**kwargs)
    rows = result["steps"]
    return dict(rows[-1]) if rows else {}


async def scale(
    subscribers: int, rooms: int, rounds: int, split: int, duration: float
) -> dict[str, Any]:
    ratios = []
    costs: list[dict[str, Any]] = []
    for round_ in range(rounds):
        order = (1, 2) if round_ % 2 == 0 else (2, 1)
        figures: dict[int, float | None] = {}
        for workers in order:
            row = await _step(
                max_subscribers=subscribers,
                step=subscribers,
                duration=duration,
                workers=workers,
                rooms=rooms,
            )
            figures[workers] = row.get("us_per_packet")
        one, two = figures[1], figures[2]
        ratio = round(two / one, 3) if one and two else None
        costs.append({"round": round_ + 1, "one_worker": one, "two_workers": two, "ratio": ratio})
        if ratio is not None:
            ratios.append(ratio)
        print(
            f"per-worker cost, round {round_ + 1}: 1 worker {one} us/packet, 2 workers {two}"
            f" us/packet: x{ratio}",
            flush=True,
        )
    single = await _step(max_subscribers=split, step=split, duration=duration)
    spread = await _step(
        max_subscribers=2 * split,
        step=2 * split,
        duration=duration,
        workers=2,
        room_participants_per_worker=1,
    )
    split_room: dict[str, Any] = {
        "one_worker": {k: single.get(k) for k in ("subscribers", "loss_percent", "p99_ms")},
        "two_workers": {k: spread.get(k) for k in ("subscribers", "loss_percent", "p99_ms")},
        "one_worker_held": bool(single) and held(single),
        "two_workers_held": bool(spread) and held(spread),
    }
    out: dict[str, Any] = {
        "per_worker_cost": costs,
        "median_ratio": statistics.median(ratios) if ratios else None,
        "split_room": split_room,
    }
    print(
        f"per-worker cost: median 2 workers / 1 worker = x{out['median_ratio']} over "
        f"{len(ratios)} rounds (goal <= x1.10)\n"
        f"split room: 1 worker, N={split}: loss {single.get('loss_percent')}%, p99 "
        f"{single.get('p99_ms')} ms, held {split_room['one_worker_held']}; 2 workers, "
        f"N={2 * split}: loss {spread.get('loss_percent')}%, p99 {spread.get('p99_ms')} ms, "
        f"held {split_room['two_workers_held']}",
        flush=True,
    )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscribers", type=int, default=16, help="per room (16)")
    parser.add_argument("--rooms", type=int, default=2, help="for the per-worker cost (2)")
    parser.add_argument("--rounds", type=int, default=2, help="of the per-worker cost (2)")
    parser.add_argument("--split", type=int, default=24, help="N of the split room (24)")
    parser.add_argument("--duration", type=float, default=DURATION, help="seconds per step")


def command(args: argparse.Namespace) -> int:
    asyncio.run(scale(args.subscribers, args.rooms, args.rounds, args.split, args.duration))
    return 0

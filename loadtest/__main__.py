"""Load tests for the SFU with simulated peers over the real signaling and real UDP.

python -m loadtest run loadtest/scenarios/small.yaml        # a scenario file
python -m loadtest run --subscribers 10 --window 640x360    # or flags
python -m loadtest bench --max-subscribers 40               # fan-out until it breaks
python -m loadtest nack-storm --transport-cc                # a subscriber NACKing everything
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from pydantic import ValidationError

from .report import table, write
from .run import default_output, run_scenario
from .scenario import Profile, Scenario, load_scenario


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.scenario:
            scenario = load_scenario(args.scenario)
        else:
            scenario = Scenario(
                url=args.url,
                rooms=args.rooms,
                publishers_per_room=args.publishers,
                codec=args.codec,
                duration=args.duration,
                ramp_up=args.ramp_up,
                processes=args.processes,
                profiles=[
                    Profile(
                        name="default",
                        subscribers_per_room=args.subscribers,
                        window=_size(args.window) if args.window else None,
                        downlink_kbps=args.downlink_kbps,
                    )
                ],
            )
        if args.url and args.scenario:
            scenario = scenario.model_copy(update={"url": args.url})
    except (ValidationError, OSError, ValueError) as exc:
        print(f"loadtest: invalid scenario: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(run_scenario(scenario))
    out = default_output(scenario)
    json_path, html_path = write(report, out)
    print(table(report))
    print(f"report: {json_path}  plot: {html_path}")
    return 1 if report["errors"] else 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import bench

    result = asyncio.run(
        bench(max_subscribers=args.max_subscribers, step=args.step, duration=args.duration)
    )
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


def _nack_storm(args: argparse.Namespace) -> int:
    from .nack_storm import nack_storm

    result = asyncio.run(
        nack_storm(args.transport_cc, rate=args.rate, quiet=args.quiet, duration=args.duration)
    )
    print(json.dumps(result, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario and report what every subscriber got")
    run.add_argument("scenario", nargs="?", help="a YAML scenario (loadtest/scenarios/)")
    run.add_argument("--url", help="a running server; default: start one for the run")
    run.add_argument("--rooms", type=int, default=1)
    run.add_argument("--publishers", type=int, default=1)
    run.add_argument("--subscribers", type=int, default=4)
    run.add_argument("--window", help="rendered size of remote videos, e.g. 640x360")
    run.add_argument("--downlink-kbps", type=int, help="put subscribers behind a shaped link")
    run.add_argument("--codec", default="VP9", choices=["VP9", "VP8", "AV1"])
    run.add_argument("--duration", type=float, default=10.0, help="seconds (capped at 300)")
    run.add_argument("--ramp-up", type=float, default=10.0, help="peers started per second")
    run.add_argument("--processes", type=int, default=2)
    run.set_defaults(func=_run)
    bench = sub.add_parser("bench", help="fan-out from one VP9 publisher until it breaks")
    bench.add_argument("--max-subscribers", type=int, default=64)
    bench.add_argument("--step", type=int, default=0, help="0: 1, 2, 4, 8, then +8")
    bench.add_argument("--duration", type=float, default=8.0, help="seconds per step")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=_bench)
    storm = sub.add_parser("nack-storm", help="a subscriber NACKs its whole history: the cost")
    storm.add_argument("--transport-cc", action="store_true", help="the attacker keeps it")
    storm.add_argument("--rate", type=float, default=1000.0, help="NACK packets a second")
    storm.add_argument("--quiet", type=float, default=4.0, help="seconds before the storm")
    storm.add_argument("--duration", type=float, default=6.0, help="seconds of storm")
    storm.set_defaults(func=_nack_storm)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

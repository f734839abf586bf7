"""Load tests and benchmarks of the SFU: one command, ``python -m loadtest COMMAND``
(installed as ``sfu-loadtest``); ``python -m loadtest COMMAND --help`` tells more of each.

examples:
  python -m loadtest run loadtest/scenarios/small.yaml
  python -m loadtest run --subscribers 10 --window 640x360
  python -m loadtest bench --max-subscribers 40
  python -m loadtest profile --profile
  python -m loadtest nack-storm --transport-cc
"""

# Each command is a module with ``add_arguments(parser)`` and ``command(args) -> int``,
# imported only when its command runs.  Three more commands, not listed, are the child
# processes the others start: ``worker`` (run, bandwidth: one load generator), ``udp-relay``
# (bench: the plain UDP relay it compares with) and ``nack-attacker`` (nack-storm).

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast


@dataclass(frozen=True)
class Command:
    module: str
    #: one line for ``--help``; None: an internal command (a child process), not listed
    help: str | None
    add_arguments: str = "add_arguments"
    command: str = "command"


COMMANDS = {
    "run": Command("loadtest.run", "a scenario (YAML or flags) of simulated peers; a report"),
    "bench": Command("loadtest.bench", "fan-out from one VP9 publisher, N up until it breaks"),
    "profile": Command("loadtest.profile_forwarding", "the forwarding hot path in process"),
    "feedback-cost": Command("loadtest.feedback_cost", "transport feedback's CPU cost in process"),
    "cascade-cost": Command("loadtest.cascade_cost", "a cascaded hop beside one forward"),
    "scale": Command("loadtest.scale", "2 workers beside 1: per-packet cost, a split room"),
    "bandwidth": Command("loadtest.bandwidth", "a subscriber on a shaped link, rate scheduled"),
    "browser-bandwidth": Command("loadtest.browser_bandwidth", "the same, Chromium subscribing"),
    "nack-storm": Command("loadtest.nack_storm", "a subscriber NACKing all: what it costs"),
    "capture": Command("loadtest.capture", "record a capture from Chromium"),
    "recording-figures": Command("loadtest.recording_figures", "layered recording vs a ladder"),
    "record-chromium": Command("loadtest.record_chromium", "a layered recording of Chromium"),
    "worker": Command("loadtest.worker", None),
    "udp-relay": Command("loadtest.baseline", None),
    "nack-attacker": Command(
        "loadtest.nack_storm", None, "add_attacker_arguments", "attacker_command"
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        formatter = argparse.RawDescriptionHelpFormatter
        if spec.help is None:  # not listed
            command = sub.add_parser(name, formatter_class=formatter)
        else:
            command = sub.add_parser(name, help=spec.help, formatter_class=formatter)
        if argv and argv[0] == name:
            module = importlib.import_module(spec.module)
            command.description = module.__doc__
            getattr(module, spec.add_arguments)(command)
            command.set_defaults(func=getattr(module, spec.command))
    args = parser.parse_args(argv)
    run = cast(Callable[[argparse.Namespace], int], args.func)
    return run(args)

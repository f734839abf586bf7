"""The gate of a load test run (pure functions of the report data): each profile's figures
against the thresholds it must meet (:class:`loadtest.scenario.Thresholds`: the scenario's,
the profile's own, ``run``'s ``--max-...`` flags).

A figure that is missing where it is needed (no latency sample, no video painted) misses its
threshold; a run with no switch of spatial layer meets the switch-paint threshold.  Latency
and loss are the steady window's (:mod:`loadtest.steady`) when the run has one, the whole
run's otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .scenario import Thresholds

#: the flags of ``run`` (loadtest.run.add_arguments), key -> (option strings, help)
FLAGS: dict[str, tuple[tuple[str, ...], str]] = {
    "max_p99_latency_ms": (("--max-p99-latency-ms",), "p99 latency, ms"),
    # (argparse formats help text: %% is a per cent sign)
    "max_loss_percent": (("--max-loss", "--max-loss-percent"), "loss, %%"),
    "max_freezes_per_minute": (("--max-freezes-per-minute",), "freezes per minute of video"),
    "max_first_frame_s": (("--max-first-frame-s",), "p95 time to first frame, s"),
    "max_dropped_share": (("--max-dropped-share",), "dropped pictures' share, 0..1"),
    "max_switch_paint_ms": (("--max-switch-paint-ms",), "p95 switch-paint latency, ms"),
}


@dataclass(frozen=True)
class Check:
    """One threshold of one profile, and whether the run met it."""

    profile: str
    key: str
    label: str
    unit: str
    limit: float
    value: float | None
    met: bool
    #: where the figure comes from ("steady window", "whole run"), or why there is none
    note: str = ""

    def line(self) -> str:
        unit = self.unit if not self.unit or self.unit.startswith("/") else f" {self.unit}"
        note = f" ({self.note})" if self.note else ""
        if self.value is None:
            figure = f"{self.label}: no figure, max {self.limit:g}{unit}"
        else:
            sign = "<=" if self.met else ">"
            figure = f"{self.label} {self.value:g}{unit} {sign} {self.limit:g}{unit}"
        return f"{'met' if self.met else 'MISSED'} {self.profile}: {figure}{note}"


def add_flags(parser: argparse.ArgumentParser) -> None:
    """``run``'s threshold flags (each over the scenario's for every profile)."""
    group = parser.add_argument_group(
        "thresholds", "exit 3 when a profile misses one (over the scenario's thresholds:)"
    )
    for key, (options, text) in FLAGS.items():
        group.add_argument(*options, dest=key, type=float, metavar="N", help=f"max {text}")


def flag_thresholds(args: argparse.Namespace) -> Thresholds:
    """The thresholds given as flags (validated as a scenario's are)."""
    return Thresholds.model_validate(
        {key: getattr(args, key, None) for key in FLAGS if getattr(args, key, None) is not None}
    )


def _steady_or_whole(
    report: dict[str, Any], name: str, pick: Callable[[dict[str, Any]], float | None]
) -> tuple[float | None, str]:
    steady = (report.get("steady") or {}).get("profiles", {}).get(name)
    if steady is not None:
        return pick(steady), "steady window"
    return pick(report["profiles"][name]), "whole run"


def _check(
    checks: list[Check],
    profile: str,
    limits: Thresholds,
    key: str,
    label: str,
    unit: str,
    value: float | None,
    note: str = "",
) -> None:
    limit = getattr(limits, key)
    if limit is not None:
        met = value is not None and value <= limit
        checks.append(Check(profile, key, label, unit, limit, value, met, note))


def evaluate(report: dict[str, Any], limits: dict[str, Thresholds]) -> list[Check]:
    """Every threshold set for a profile that had subscribers, checked against the report
    (``loadtest.run.summarize``'s); ``limits``: each profile's thresholds, by name."""
    checks: list[Check] = []
    for name, profile in report["profiles"].items():
        mine = limits.get(name)
        if mine is None or not profile.get("subscribers"):
            continue
        if mine.max_p99_latency_ms is not None:
            value, note = _steady_or_whole(report, name, lambda p: p["latency_ms"]["p99"])
            _check(checks, name, mine, "max_p99_latency_ms", "p99 latency", "ms", value, note)
        if mine.max_loss_percent is not None:
            value, note = _steady_or_whole(report, name, lambda p: p["loss_percent"])
            _check(checks, name, mine, "max_loss_percent", "loss", "%", value, note)
        freezes = profile.get("freezes_per_minute")
        note = "" if freezes is not None else "no video painted"
        _check(checks, name, mine, "max_freezes_per_minute", "freezes", "/min", freezes, note)
        first = profile.get("first_frame_s") or {}
        unpainted = first.get("videos", 0) - first.get("painted", 0)
        if unpainted > 0:  # a video never painted misses it, whatever the others did
            note = f"{unpainted} of {first['videos']} videos never painted"
            _check(checks, name, mine, "max_first_frame_s", "p95 first frame", "s", None, note)
        else:
            p95 = first.get("p95")
            _check(checks, name, mine, "max_first_frame_s", "p95 first frame", "s", p95)
        share = profile.get("dropped_share")
        note = "" if share is not None else "no picture decoded or dropped"
        _check(checks, name, mine, "max_dropped_share", "dropped share", "", share, note)
        paint = profile.get("switch_paint_ms") or {}
        limit = mine.max_switch_paint_ms
        if limit is not None and not paint.get("count"):
            label = "p95 switch paint"
            checks.append(
                Check(name, "max_switch_paint_ms", label, "ms", limit, None, True, "no switch")
            )
        else:
            p95 = paint.get("p95")
            _check(checks, name, mine, "max_switch_paint_ms", "p95 switch paint", "ms", p95)
    return checks


def summary(checks: list[Check]) -> dict[str, Any]:
    """The checks for the report's JSON."""
    return {
        "checked": len(checks),
        "missed": sum(1 for c in checks if not c.met),
        "checks": [asdict(c) for c in checks],
    }


def lines(checks: list[Check]) -> list[str]:
    """What ``run`` prints: a headline, then every threshold missed."""
    if not checks:
        return []
    missed = [c for c in checks if not c.met]
    if not missed:
        return [f"thresholds: all {len(checks)} met"]
    return [f"thresholds: {len(missed)} of {len(checks)} missed"] + [
        "  " + c.line() for c in missed
    ]

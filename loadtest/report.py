"""The load test report: a terminal table per profile, a JSON file, a self-contained HTML plot."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .thresholds import Check
from .thresholds import lines as threshold_lines


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows`` (the first: the headings) as aligned lines, a rule under the headings."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _figure(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(report: dict[str, Any]) -> str:
    rows = [
        (
            "profile",
            "subs",
            "window",
            "cap",
            "layers",
            "kbit/s",
            "loss%",
            "freezes",
            "undecodable",
            "p50 ms",
            "p95 ms",
            "p99 ms",
        )
    ]
    for name, p in report["profiles"].items():
        lat = p["latency_ms"]
        rows.append(
            (
                name,
                str(p["subscribers"]),
                "x".join(map(str, p["window"])) if p["window"] else "-",
                f"{p['downlink_kbps']}k" if p["downlink_kbps"] else "-",
                ",".join(p["layers"]) or "-",
                f"{p['bitrate_kbps']:.0f}",
                f"{p['loss_percent']:.2f}",
                str(p["freezes"]),
                str(p["frames_undecodable"]),
                *(f"{lat[q]:.1f}" if lat[q] is not None else "-" for q in ("p50", "p95", "p99")),
            )
        )
    lines = _columns(rows)
    viewer = [
        (
            "profile",
            "videos painted",
            "first frame p50/p95 s",
            "freezes/min",
            "dropped %",
            "switch paint p50/p95 ms",
            "switches",
        )
    ]
    for name, p in report["profiles"].items():
        if "first_frame_s" not in p:
            continue
        first, paint = p["first_frame_s"], p["switch_paint_ms"]
        share, per_minute = p["dropped_share"], p["freezes_per_minute"]
        viewer.append(
            (
                name,
                f"{first['painted']}/{first['videos']}",
                f"{_figure(first['p50'], 2)}/{_figure(first['p95'], 2)}",
                _figure(per_minute, 2),
                _figure(100 * share if share is not None else None, 2),
                f"{_figure(paint['p50'], 0)}/{_figure(paint['p95'], 0)}",
                str(paint["count"]),
            )
        )
    if len(viewer) > 1:
        lines += ["", "what the viewers saw (receiver_report figures):", *_columns(viewer)]
    server = report["server"]
    gen = report["generator"]
    lines.append("")
    if "cpu_percent" in server:
        lines.append(
            f"server: {server['cpu_percent']}% of one core, max RSS {server['max_rss_mb']} MB"
        )
    lines.append(
        f"load generator: {gen['cpu_percent_of_one_core']}% of one core "
        f"in {gen['processes']} processes"
    )
    if report["errors"]:
        lines.append(f"errors: {report['errors'][:5]}")
    return "\n".join(lines)


#: the charts' size and margins (pixels)
_W, _H = 640, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 28, 44
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
_CAP_COLOR = "#e41a1c"


def _nice_step(span: float, ticks: int = 5) -> float:
    """A tick step of 1, 2 or 5 times a power of ten giving about ``ticks`` ticks."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _tick(value: float, step: float) -> str:
    return f"{value:.0f}" if step >= 1 else f"{value:.{max(0, -math.floor(math.log10(step)))}f}"


def _chart(
    title: str,
    series: list[tuple[str, list[tuple[float, float]]]],
    y_label: str,
    x_label: str = "time since start (s)",
    cap: tuple[float, str] | None = None,
) -> str:
    """A line chart as inline SVG: both axes with ticks and their labels (the quantity and
    its unit), a legend, and ``cap`` (value, label) as a dashed horizontal line."""
    x_max = max((x for _, pts in series for x, _ in pts), default=1.0) or 1.0
    y_max = max((y for _, pts in series for _, y in pts), default=1.0)
    if cap is not None:
        y_max = max(y_max, cap[0])
    x_step, y_step = _nice_step(x_max), _nice_step(y_max * 1.05 or 1.0)
    x_top = x_step * math.ceil(x_max / x_step)
    y_top = y_step * math.ceil((y_max * 1.05 or 1.0) / y_step)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + plot_w * x / x_top

    def py(y: float) -> float:
        return _TOP + plot_h * (1 - y / y_top)

    parts = []
    for i in range(round(y_top / y_step) + 1):
        y = i * y_step
        parts.append(
            f'<line x1="{_LEFT}" y1="{py(y):.1f}" x2="{_W - _RIGHT}" y2="{py(y):.1f}" '
            f'stroke="#e6e6e6"/><text class="y-tick" x="{_LEFT - 6}" y="{py(y) + 4:.1f}" '
            f'font-size="10" text-anchor="end">{_tick(y, y_step)}</text>'
        )
    for i in range(round(x_top / x_step) + 1):
        x = i * x_step
        parts.append(
            f'<line x1="{px(x):.1f}" y1="{_TOP + plot_h}" x2="{px(x):.1f}" '
            f'y2="{_TOP + plot_h + 4}" stroke="#888"/><text class="x-tick" x="{px(x):.1f}" '
            f'y="{_TOP + plot_h + 16}" font-size="10" text-anchor="middle">'
            f"{_tick(x, x_step)}</text>"
        )
    parts.append(
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_W - _RIGHT}" y2="{_TOP + plot_h}" '
        f'stroke="#888"/><line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}" '
        f'stroke="#888"/>'
        f'<text class="x-label" x="{_LEFT + plot_w / 2:.1f}" y="{_H - 6}" font-size="12" '
        f'text-anchor="middle">{html.escape(x_label)}</text>'
        f'<text class="y-label" x="0" y="0" font-size="12" text-anchor="middle" '
        f'transform="translate(14 {_TOP + plot_h / 2:.1f}) rotate(-90)">'
        f"{html.escape(y_label)}</text>"
    )
    for i, (_, pts) in enumerate(series):
        if pts:
            coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            parts.append(
                f'<polyline fill="none" stroke="{_COLORS[i % len(_COLORS)]}" '
                f'stroke-width="1.5" points="{coords}"/>'
            )
    if cap is not None:
        value, label = cap
        parts.append(
            f'<line class="cap" x1="{_LEFT}" y1="{py(value):.1f}" x2="{_W - _RIGHT}" '
            f'y2="{py(value):.1f}" stroke="{_CAP_COLOR}" stroke-width="1.5" '
            f'stroke-dasharray="6 4" data-value="{value:g}"/>'
            f'<text class="cap-label" x="{_W - _RIGHT - 4}" y="{py(value) - 4:.1f}" '
            f'font-size="11" text-anchor="end" fill="{_CAP_COLOR}">{html.escape(label)}</text>'
        )
    parts += [
        f'<text x="{_LEFT + 6 + 110 * i}" y="16" fill="{_COLORS[i % len(_COLORS)]}" '
        f'font-size="11">{html.escape(name)}</text>'
        for i, (name, _) in enumerate(series)
    ]
    return (
        f"<h3>{html.escape(title)}</h3><svg width='{_W}' height='{_H}' "
        f"xmlns='http://www.w3.org/2000/svg'>{''.join(parts)}</svg>"
    )


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(report, indent=1))
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for sub in report["subscribers"]:
        by_profile.setdefault(sub["profile"], []).append(sub)
    charts = []
    for name, subs in by_profile.items():
        layers = [
            (s["name"], [(t, sid + tid / 10) for t, sid, tid in s["layers"]]) for s in subs[:6]
        ]
        rates = [
            (s["name"], [(t, 8 * b / 1000) for t, b in s["bytes_per_second"]]) for s in subs[:6]
        ]
        cap_kbps = report["profiles"].get(name, {}).get("downlink_kbps")
        cap = (float(cap_kbps), f"downlink cap {cap_kbps} kbit/s") if cap_kbps else None
        since = "time since the subscriber started (s)"
        charts.append(
            _chart(f"{name}: layer received", layers, "layer (spatial + temporal / 10)", since)
        )
        charts.append(
            _chart(f"{name}: bitrate received", rates, "RTP bitrate (kbit/s)", since, cap)
        )
    samples = report["server"].get("samples", [])
    if len(samples) > 1:
        cpu = [
            (b["t"], 100 * (b["cpu"] - a["cpu"]) / max(1e-6, b["t"] - a["t"]))
            for a, b in zip(samples, samples[1:], strict=False)
        ]
        since = "time since the run started (s)"
        charts.append(_chart("server CPU", [("server", cpu)], "CPU (% of one core)", since))
        rss = [(s["t"], s["rss_mb"]) for s in samples]
        charts.append(_chart("server RSS", [("server", rss)], "RSS (MB)", since))
    text = table(report)
    checks = [Check(**c) for c in report.get("thresholds", {}).get("checks", [])]
    if checks:
        text += "\n" + "\n".join(threshold_lines(checks))
    page = (
        "<!doctype html><meta charset='utf-8'><title>SFU load test</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1rem}pre{background:#f4f4f4;"
        "padding:.5rem;overflow-x:auto}</style><h1>SFU load test</h1>"
        f"<pre>{html.escape(text)}</pre>{''.join(charts)}"
    )
    html_path = out / "report.html"
    html_path.write_text(page)
    return json_path, html_path

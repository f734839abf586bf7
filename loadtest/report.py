"""The load test report: a terminal table per profile, a JSON file, a self-contained HTML plot."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any


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
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
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


def _polyline(
    points: list[tuple[float, float]], x_max: float, y_max: float, w: int, h: int, color: str
) -> str:
    if not points:
        return ""
    coords = " ".join(
        f"{40 + (w - 50) * x / max(x_max, 1e-9):.1f},{h - 20 - (h - 30) * y / max(y_max, 1e-9):.1f}"
        for x, y in points
    )
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>'


def _chart(title: str, series: list[tuple[str, list[tuple[float, float]]]], y_label: str) -> str:
    w, h = 640, 220
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    x_max = max((x for _, pts in series for x, _ in pts), default=1.0)
    y_max = max((y for _, pts in series for _, y in pts), default=1.0) * 1.1 or 1.0
    lines = [
        _polyline(pts, x_max, y_max, w, h, colors[i % len(colors)])
        for i, (_, pts) in enumerate(series)
    ]
    legend = "".join(
        f'<text x="{50 + 110 * i}" y="14" fill="{colors[i % len(colors)]}" font-size="11">'
        f"{html.escape(name)}</text>"
        for i, (name, _) in enumerate(series)
    )
    axis = (
        f'<line x1="40" y1="{h - 20}" x2="{w - 10}" y2="{h - 20}" stroke="#888"/>'
        f'<line x1="40" y1="10" x2="40" y2="{h - 20}" stroke="#888"/>'
        f'<text x="2" y="24" font-size="10">{y_max:.0f}</text>'
        f'<text x="{w - 60}" y="{h - 4}" font-size="10">{x_max:.0f} s</text>'
        f'<text x="44" y="{h - 4}" font-size="10">{html.escape(y_label)}</text>'
    )
    return (
        f"<h3>{html.escape(title)}</h3><svg width='{w}' height='{h}' "
        f"xmlns='http://www.w3.org/2000/svg'>{axis}{''.join(lines)}{legend}</svg>"
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
        charts.append(_chart(f"{name}: layer received (S + T/10)", layers, "layer"))
        charts.append(_chart(f"{name}: bitrate received", rates, "kbit/s"))
    samples = report["server"].get("samples", [])
    if len(samples) > 1:
        cpu = [
            (b["t"], 100 * (b["cpu"] - a["cpu"]) / max(1e-6, b["t"] - a["t"]))
            for a, b in zip(samples, samples[1:], strict=False)
        ]
        charts.append(_chart("server CPU", [("% of one core", cpu)], "%"))
        charts.append(
            _chart("server RSS", [("MB", [(s["t"], s["rss_mb"]) for s in samples])], "MB")
        )
    page = (
        "<!doctype html><meta charset='utf-8'><title>SFU load test</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1rem}pre{background:#f4f4f4;"
        "padding:.5rem}</style><h1>SFU load test</h1>"
        f"<pre>{html.escape(table(report))}</pre>{''.join(charts)}"
    )
    html_path = out / "report.html"
    html_path.write_text(page)
    return json_path, html_path

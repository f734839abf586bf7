"""The load test's report figures of what the viewers saw, its gate (thresholds from the
scenario and the command line, checked with exact figures; the scenario schema's errors; the
exit code), and its plot (axes named with their units, the downlink cap drawn)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from loadtest.cli import main
from loadtest.report import table, write
from loadtest.run import exit_code, gate, summarize, viewer_figures
from loadtest.scenario import Profile, Scenario, Thresholds, load_scenario
from loadtest.thresholds import Check, evaluate, lines

SVG = "{http://www.w3.org/2000/svg}"


def video(
    first: float | None,
    decoded: int = 300,
    dropped: int = 0,
    freezes: int = 0,
    seconds: float = 30.0,
    paints: tuple[float, ...] = (),
) -> dict[str, Any]:
    """One video's figures as a worker reports them (loadtest.viewer.PictureTally.result)."""
    return {
        "track_id": "t",
        "frames_decoded": decoded,
        "frames_dropped": dropped,
        "freeze_count": freezes,
        "total_freezes_duration": 0.5 * freezes,
        "jitter_buffer_delay": 0.0,
        "first_frame_s": first,
        "video_seconds": seconds,
        "frame_width": 640,
        "frame_height": 360,
        "switch_paints_s": list(paints),
    }


def subscriber(name: str, profile: str, videos: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "profile": profile,
        "room": "room0",
        "received": 1000,
        "lost": 0,
        "freezes": 0,
        "frames_decodable": 300,
        "frames_undecodable": 0,
        "frames_incomplete": 0,
        "keyframe_requests": 0,
        "arrivals": [],
        "bytes_per_second": [(s, 50_000 + 1000 * s) for s in range(10)],
        "layers": [(s, 1, 2) for s in range(10)],
        "first_media": 1.0,
        "videos": videos,
    }


def scenario(**thresholds: float) -> Scenario:
    return Scenario(
        profiles=[
            Profile(name="speaker", window=(1280, 720)),
            Profile(name="capped", window=(640, 360), downlink_kbps=700),
        ],
        thresholds=Thresholds(**thresholds),
    )


def report_of(subs: list[dict[str, Any]], sc: Scenario | None = None) -> dict[str, Any]:
    results = [{"publishers": [], "subscribers": subs, "errors": [], "cpu_seconds": 1.0}]
    server = {"samples": [{"t": t, "at": t, "cpu": 0.1 * t, "rss_mb": 80.0} for t in range(5)]}
    return summarize(sc or scenario(), results, server, 10.0)


def test_viewer_figures_per_profile() -> None:
    subs = [
        subscriber("a", "speaker", [video(0.8, dropped=100, freezes=1, paints=(0.05, 0.25))]),
        subscriber("b", "speaker", [video(1.2, decoded=100, freezes=2, paints=(0.01,))]),
        subscriber("c", "speaker", [video(None, decoded=0, seconds=0.0)]),
    ]
    figures = viewer_figures(subs)
    assert figures == {
        # nearest rank over the videos painted: index int(q * n) of the sorted values
        "first_frame_s": {"p50": 1.2, "p95": 1.2, "painted": 2, "videos": 3},
        "frames_decoded": 400,
        "frames_dropped": 100,
        "dropped_share": 0.2,
        "freeze_count": 3,
        "freezes_duration_s": 1.5,
        "video_minutes": 1.0,
        "freezes_per_minute": 3.0,
        "switch_paint_ms": {"p50": 50.0, "p95": 250.0, "count": 3},
    }
    empty = viewer_figures([])
    assert empty["dropped_share"] is None and empty["freezes_per_minute"] is None
    assert empty["first_frame_s"] == {"p50": None, "p95": None, "painted": 0, "videos": 0}
    # in the run's report, beside what it had
    report = report_of(subs)
    speaker = report["profiles"]["speaker"]
    assert speaker["dropped_share"] == 0.2 and speaker["latency_ms"]["p99"] is None
    assert report["profiles"]["capped"]["subscribers"] == 0


def clean_report() -> dict[str, Any]:
    """A speaker profile: p99 40 ms (whole run), loss 0, 1.5 freezes/min, first frames
    0.5 .. 0.9 s, 1 % dropped, switch paints 20 and 80 ms."""
    firsts = [0.5, 0.6, 0.7, 0.8, 0.9]
    subs = [subscriber(f"s{i}", "speaker", [video(f, seconds=24.0)]) for i, f in enumerate(firsts)]
    subs[0]["videos"][0]["frames_dropped"] = 3  # of 1503
    subs[0]["videos"][0]["switch_paints_s"] = [0.02, 0.08]
    subs[1]["videos"][0]["freeze_count"] = 3  # over 2 minutes of video
    report = report_of(subs)
    report["profiles"]["speaker"]["latency_ms"] = {"p50": 10.0, "p95": 30.0, "p99": 40.0}
    return report


def test_thresholds_checked_with_exact_figures() -> None:
    report = clean_report()
    speaker = report["profiles"]["speaker"]
    assert speaker["freezes_per_minute"] == 1.5
    assert speaker["first_frame_s"] == {"p50": 0.7, "p95": 0.9, "painted": 5, "videos": 5}
    assert speaker["dropped_share"] == 0.002
    assert speaker["switch_paint_ms"] == {"p50": 80.0, "p95": 80.0, "count": 2}
    limits = Thresholds(
        max_p99_latency_ms=40,  # equal: met
        max_loss_percent=0,
        max_freezes_per_minute=1.4,  # 1.5: missed
        max_first_frame_s=0.9,
        max_dropped_share=0.001,  # 0.002: missed
        max_switch_paint_ms=79.9,  # 80: missed
    )
    checks = evaluate(report, {"speaker": limits, "capped": limits})  # capped: no subscriber
    assert [(c.key, c.value, c.met, c.note) for c in checks] == [
        ("max_p99_latency_ms", 40.0, True, "whole run"),
        ("max_loss_percent", 0.0, True, "whole run"),
        ("max_freezes_per_minute", 1.5, False, ""),
        ("max_first_frame_s", 0.9, True, ""),
        ("max_dropped_share", 0.002, False, ""),
        ("max_switch_paint_ms", 80.0, False, ""),
    ]
    assert lines(checks) == [
        "thresholds: 3 of 6 missed",
        "  MISSED speaker: freezes 1.5/min > 1.4/min",
        "  MISSED speaker: dropped share 0.002 > 0.001",
        "  MISSED speaker: p95 switch paint 80 ms > 79.9 ms",
    ]
    assert lines(evaluate(report, {"speaker": Thresholds(max_loss_percent=1)})) == [
        "thresholds: all 1 met"
    ]
    assert lines([]) == []


def test_latency_and_loss_from_the_steady_window_when_there_is_one() -> None:
    report = clean_report()
    report["steady"] = {
        "profiles": {"speaker": {"latency_ms": {"p99": 60.5}, "loss_percent": 0.25}}
    }
    limits = Thresholds(max_p99_latency_ms=50, max_loss_percent=0.25)
    checks = evaluate(report, {"speaker": limits})
    assert checks == [
        Check(
            "speaker", "max_p99_latency_ms", "p99 latency", "ms", 50, 60.5, False, "steady window"
        ),
        Check("speaker", "max_loss_percent", "loss", "%", 0.25, 0.25, True, "steady window"),
    ]
    assert checks[0].line() == "MISSED speaker: p99 latency 60.5 ms > 50 ms (steady window)"


def test_missing_figures() -> None:
    subs = [
        subscriber("a", "speaker", [video(0.5)]),
        subscriber("b", "speaker", [video(None, decoded=0, seconds=0.0)]),  # never painted
    ]
    report = report_of(subs)  # no latency sample, no switch
    limits = Thresholds(max_p99_latency_ms=100, max_first_frame_s=5, max_switch_paint_ms=100)
    checks = evaluate(report, {"speaker": limits})
    assert [(c.key, c.value, c.met, c.note) for c in checks] == [
        ("max_p99_latency_ms", None, False, "whole run"),
        ("max_first_frame_s", None, False, "1 of 2 videos never painted"),
        ("max_switch_paint_ms", None, True, "no switch"),  # nothing to judge
    ]
    assert checks[1].line() == (
        "MISSED speaker: p95 first frame: no figure, max 5 s (1 of 2 videos never painted)"
    )
    nothing = report_of([subscriber("a", "speaker", [])])
    checks = evaluate(nothing, {"speaker": Thresholds(max_freezes_per_minute=1)})
    assert [(c.value, c.met, c.note) for c in checks] == [(None, False, "no video painted")]


def test_thresholds_flags_over_profile_over_scenario() -> None:
    sc = Scenario(
        profiles=[
            Profile(name="a", thresholds=Thresholds(max_loss_percent=5)),
            Profile(name="b"),
        ],
        thresholds=Thresholds(max_loss_percent=1, max_p99_latency_ms=100),
    )
    a, b = sc.profiles
    assert sc.thresholds_for(a) == Thresholds(max_loss_percent=5, max_p99_latency_ms=100)
    assert sc.thresholds_for(b) == Thresholds(max_loss_percent=1, max_p99_latency_ms=100)
    flags = Thresholds(max_p99_latency_ms=50, max_dropped_share=0.1)
    assert sc.thresholds_for(a, flags) == Thresholds(
        max_loss_percent=5, max_p99_latency_ms=50, max_dropped_share=0.1
    )


def test_gate_and_exit_code() -> None:
    report = clean_report()
    sc = scenario(max_freezes_per_minute=2)
    assert exit_code(report, gate(sc, report)) == 0
    assert report["thresholds"]["missed"] == 0 and report["thresholds"]["checked"] == 1
    assert report["thresholds"]["limits"]["speaker"] == {"max_freezes_per_minute": 2.0}
    checks = gate(sc, report, Thresholds(max_freezes_per_minute=1))
    assert exit_code(report, checks) == 3
    assert report["thresholds"]["missed"] == 1
    assert report["thresholds"]["checks"][0]["value"] == 1.5
    report["errors"] = ["a worker failed"]
    assert exit_code(report, checks) == 1
    assert exit_code({"errors": []}, []) == 0


def test_scenario_thresholds_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "thresholds: {max_p99_latency_ms: 80, max_loss_percent: 0.5}\n"
        "profiles:\n"
        "  - {name: grid, window: [426, 240], thresholds: {max_first_frame_s: 3}}\n"
    )
    sc = load_scenario(path)
    assert sc.thresholds_for(sc.profiles[0]) == Thresholds(
        max_p99_latency_ms=80, max_loss_percent=0.5, max_first_frame_s=3
    )
    # the committed scenarios validate, thresholds included
    scenarios = Path(__file__).parent.parent / "loadtest" / "scenarios"
    for committed in scenarios.glob("*.yaml"):
        load_scenario(committed)


@pytest.mark.parametrize(
    ("thresholds", "where", "says"),
    [
        ({"max_p99_latency": 80}, ("thresholds", "max_p99_latency"), "Extra inputs"),
        ({"max_loss_percent": -1}, ("thresholds", "max_loss_percent"), "greater than or equal"),
        ({"max_loss_percent": 101}, ("thresholds", "max_loss_percent"), "less than or equal"),
        ({"max_dropped_share": 1.5}, ("thresholds", "max_dropped_share"), "less than or equal"),
        ({"max_first_frame_s": 0}, ("thresholds", "max_first_frame_s"), "greater than 0"),
        ({"max_switch_paint_ms": "fast"}, ("thresholds", "max_switch_paint_ms"), "valid number"),
    ],
)
def test_scenario_threshold_errors(
    thresholds: dict[str, Any], where: tuple[str, ...], says: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        Scenario.model_validate({"thresholds": thresholds})
    (error,) = raised.value.errors()
    assert error["loc"] == where and says in error["msg"]
    # a profile's own thresholds are checked alike
    profile = {"name": "p", "thresholds": thresholds}
    with pytest.raises(ValidationError) as raised:
        Scenario.model_validate({"profiles": [profile]})
    (error,) = raised.value.errors()
    assert error["loc"] == ("profiles", 0, *where) and says in error["msg"]


def test_invalid_threshold_flags_stop_the_run_before_it_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--max-loss", "-1", "--max-p99-latency-ms", "80"]) == 2
    err = capsys.readouterr().err
    assert "invalid scenario" in err and "max_loss_percent" in err


def test_threshold_flags() -> None:
    import argparse

    from loadtest.run import add_arguments
    from loadtest.thresholds import flag_thresholds

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--max-p99-latency-ms=80",
            "--max-loss=0.5",
            "--max-freezes-per-minute=1",
            "--max-first-frame-s=2.5",
            "--max-dropped-share=0.05",
            "--max-switch-paint-ms=300",
        ]
    )
    assert flag_thresholds(args) == Thresholds(
        max_p99_latency_ms=80,
        max_loss_percent=0.5,
        max_freezes_per_minute=1,
        max_first_frame_s=2.5,
        max_dropped_share=0.05,
        max_switch_paint_ms=300,
    )
    assert parser.parse_args(["--max-loss-percent", "2"]).max_loss_percent == 2.0
    assert flag_thresholds(parser.parse_args([])) == Thresholds()


def svgs(page: str) -> dict[str, ET.Element]:
    """Each chart of the report page, parsed, by its title."""
    charts = re.findall(r"<h3>(.*?)</h3>(<svg.*?</svg>)", page, re.S)
    return {title: ET.fromstring(svg) for title, svg in charts}


def texts(svg: ET.Element, cls: str) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text") if t.get("class") == cls]


def test_the_plot_names_its_axes_units_and_draws_the_cap(tmp_path: Path) -> None:
    subs = [
        subscriber("s0", "speaker", [video(0.5)]),
        subscriber("c0", "capped", [video(0.7)]),
    ]
    report = report_of(subs)
    report["profiles"]["capped"]["downlink_kbps"] = 700
    gate(scenario(max_dropped_share=0.5), report)
    json_path, html_path = write(report, tmp_path)
    assert json_path.exists() and html_path.exists()
    page = html_path.read_text()
    charts = svgs(page)
    assert sorted(charts) == [
        "capped: bitrate received",
        "capped: layer received",
        "server CPU",
        "server RSS",
        "speaker: bitrate received",
        "speaker: layer received",
    ]
    for title, svg in charts.items():  # every axis says what it is and in what unit
        (x_label,) = texts(svg, "x-label")
        (y_label,) = texts(svg, "y-label")
        assert re.search(r"\(s\)$", x_label), (title, x_label)
        assert re.search(r"\((kbit/s|% of one core|MB)\)$", y_label) or "layer" in y_label
        assert len(texts(svg, "x-tick")) >= 3 and len(texts(svg, "y-tick")) >= 3
    rate = charts["capped: bitrate received"]
    assert texts(rate, "x-label") == ["time since the subscriber started (s)"]
    assert texts(rate, "y-label") == ["RTP bitrate (kbit/s)"]
    (cap,) = [line for line in rate.iter(f"{SVG}line") if line.get("class") == "cap"]
    assert cap.get("data-value") == "700"
    assert texts(rate, "cap-label") == ["downlink cap 700 kbit/s"]
    # the cap line sits at 700 on the y axis: between the ticks that bound it
    ticks = [
        (float(t.text or ""), float(t.get("y") or 0) - 4)
        for t in rate.iter(f"{SVG}text")
        if t.get("class") == "y-tick"
    ]
    (lo_value, lo_y), (hi_value, hi_y) = ticks[0], ticks[-1]
    expected = lo_y + (hi_y - lo_y) * (700 - lo_value) / (hi_value - lo_value)
    assert float(cap.get("y1") or 0) == pytest.approx(expected, abs=0.2)
    assert max(v for v, _ in ticks) >= 700  # the cap is inside the chart
    # no cap where the profile has none
    speaker = charts["speaker: bitrate received"]
    assert not [line for line in speaker.iter(f"{SVG}line") if line.get("class") == "cap"]
    # the page's table has the viewers' figures and the gate's verdict
    assert "first frame p50/p95 s" in page and "thresholds: all 2 met" in page


def test_the_table_has_the_viewer_figures() -> None:
    text = table(clean_report())
    assert "what the viewers saw" in text
    row = next(line for line in text.splitlines()[::-1] if line.startswith("speaker"))
    assert row.split() == ["speaker", "5/5", "0.70/0.90", "1.50", "0.20", "80/80", "2"]

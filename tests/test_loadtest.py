"""The load tester: its one command line (``python -m loadtest COMMAND``), and against the
real server a small scenario, with a subscriber behind a real shaped link (network namespace
+ tc), and the report's content."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.bandwidth import parse_schedule
from loadtest.bench import bench
from loadtest.cli import COMMANDS, main
from loadtest.report import table, write
from loadtest.run import exit_code, gate, run_scenario
from loadtest.scenario import load_scenario
from loadtest.thresholds import lines as threshold_lines

SCENARIOS = Path(__file__).parent.parent / "loadtest" / "scenarios"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_its_arguments(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    assert f"usage: python -m loadtest {name}" in capsys.readouterr().out


def test_help_lists_the_commands_not_the_child_processes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert (f"    {name} " in out or f"    {name}\n" in out) == (command.help is not None)


def test_profile_runs_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--runs", "1", "--loops", "1", "--subscribers", "2"]) == 0
    assert "us/forwarded packet" in capsys.readouterr().out


def test_feedback_cost_runs_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["feedback-cost", "--runs", "1", "--seconds", "2"]) == 0
    out = capsys.readouterr().out
    assert "us/report" in out and "us/reported packet" in out


def test_schedule_argument() -> None:
    assert parse_schedule("4:2500,4.5:400") == [(4.0, 2500), (4.5, 400)]


async def test_small_scenario_report(namespaces: None, tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "small.yaml")
    report = await run_scenario(scenario, quiet=True)
    assert report["errors"] == []
    profiles = report["profiles"]
    speaker, grid, capped = profiles["speaker"], profiles["grid3x3"], profiles["capped"]
    assert (speaker["subscribers"], grid["subscribers"], capped["subscribers"]) == (1, 2, 1)

    # small windows receive the low spatial layer, large ones the top
    assert speaker["top_spatial"] == 2
    assert grid["top_spatial"] == 0
    assert grid["bitrate_kbps"] < 0.5 * speaker["bitrate_kbps"]
    # every frame complete and decodable, no freeze, where the link is not limited
    for p in (speaker, grid):
        assert p["frames_decodable"] > 100
        assert p["frames_undecodable"] == 0 and p["frames_incomplete"] <= 1
        assert p["freezes"] == 0 and p["loss_percent"] == 0
        assert p["latency_ms"]["p99"] is not None and p["latency_ms"]["p99"] < 100
    # the capped subscriber stays under its cap and still gets pictures
    assert 0 < capped["max_bitrate_kbps"] <= capped["downlink_kbps"] * 1.05
    assert capped["frames_decodable"] > 0

    # what the viewers saw (loadtest.viewer), and reported every second
    for name, p in profiles.items():
        first = p["first_frame_s"]
        figures = {k: p.get(k) for k in ("first_frame_s", "switch_paint_ms", "dropped_share")}
        assert first["painted"] == first["videos"] == p["subscribers"], (name, figures)
        assert 0 < first["p50"] <= first["p95"] < 10, (name, figures)
        assert p["frames_decoded"] > 0 and 0 <= p["dropped_share"] <= 1, (name, figures)
        assert p["freezes_per_minute"] is not None and p["freezes_per_minute"] >= 0, name
        paint = p["switch_paint_ms"]
        # an up-switch waits for a keyframe, which takes longer over the 700 kbit/s link
        assert paint["count"] == 0 or 0 <= paint["p50"] <= paint["p95"] < 10_000, (name, figures)
    for p in (speaker, grid):  # a clean link: every picture painted, none dropped, no freeze
        assert p["frames_decoded"] > 100
        assert p["dropped_share"] == 0 and p["freeze_count"] == 0
    for sub in report["subscribers"]:
        assert sub["receiver_reports_sent"] >= 5, sub["name"]
        (video,) = sub["videos"]
        assert video["frame_width"] and video["frame_height"], sub["name"]
    # the scenario's thresholds, checked as `run` does
    checks = gate(scenario, report)
    assert checks and exit_code(report, checks) == 0, threshold_lines(checks)

    # server and generator figures, and the report files
    assert report["server"]["cpu_percent"] > 0 and report["server"]["max_rss_mb"] > 10
    assert report["generator"]["cpu_percent_of_one_core"] > 0
    json_path, html_path = write(report, tmp_path)
    assert json_path.stat().st_size > 1000
    assert "<svg" in html_path.read_text()
    text = table(report)
    assert "grid3x3" in text and "p99 ms" in text


@pytest.mark.integration
async def test_bench_step_over_the_steady_window(capsys: pytest.CaptureFixture[str]) -> None:
    """One short bench step (the server, two subscribers, then the UDP relay): its figures
    come from the steady window, with the packets, layers, generator CPU and loop lag."""
    result = await bench(max_subscribers=2, step=2, duration=7.0)
    (row,) = result["steps"]
    assert 1.5 <= row["steady_seconds"] <= 5.0  # 7 s less connecting, 1 s settling, 1 s margin
    assert row["latency_samples"] > 50 and row["p99_ms"] is not None
    assert 150 < row["packets_per_subscriber_second"] < 300  # the capture sends ~270/s
    assert max(row["layers"], key=row["layers"].get) == "S2T2"  # a 1280x720 window
    assert row["server_ms_per_subscriber_second"] > 0
    assert row["generator_ms_per_subscriber_second"] > 0
    lag = row["loop_lag"]
    assert sum(lag["counts"]) > 30 and lag["max_ms"] is not None and lag["p99_ms"] is not None
    assert row["baseline_us_per_packet"] > 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("N=  2  loss")
    assert "packets/s per subscriber" in lines[1] and "server loop lag: p99" in lines[2]


def test_worker_result_travels_whole_as_a_file(tmp_path: Path) -> None:
    from loadtest.worker import read_result, result_path, write_result

    spec = tmp_path / "spec.json"
    big = {"arrivals": [[i, i * 0.5] for i in range(200_000)]}  # several MB
    write_result(spec, big)
    assert read_result(spec) == big
    assert not result_path(spec).exists()  # taken once
    assert read_result(spec) is None
    result_path(spec).write_text('{"cut short')
    assert read_result(spec) is None

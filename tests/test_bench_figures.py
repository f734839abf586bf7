"""The bench's figures from exact report data: the latency matcher (a capture loops, so the
same payload is sent again each loop), the steady window and what is counted in it, a
step's row and its lines."""

from __future__ import annotations

from collections import Counter

import pytest

from loadtest.bench import format_row, held, step_row
from loadtest.run import latencies
from loadtest.steady import (
    cpu_per_second,
    layer_shares,
    merged_loop_lag,
    steady_window,
    subscriber_figures,
    whole_seconds,
)

LOOP = 4.97  # the VP9 capture's length: each payload is sent again this much later


def test_latency_of_a_packet_sent_again_one_loop_later_after_the_log_ended() -> None:
    # key 7 sent at 100.0 and again at 104.97 (the next loop); the publisher's worker handed
    # in its log at 104.5, so the second send is not in it. The first arrival is the first
    # send's (10 ms); the second arrives at 104.98, after the log's last send: its own send
    # is not in the log, and the log's latest send of key 7 is one loop earlier.
    publisher = {"sent_log": [(7, 100.0), (8, 100.02), (9, 104.5)]}
    arrivals = [[7, 100.01], [8, 100.05], [7, 100.0 + LOOP + 0.01]]
    assert latencies([publisher], arrivals) == pytest.approx([0.01, 0.03])  # not 4.98 s


def test_latency_takes_the_latest_send_before_the_arrival() -> None:
    publisher = {"sent_log": [(7, 100.0), (7, 100.0 + LOOP), (9, 106.0)]}
    arrivals = [[7, 100.002], [7, 100.0 + LOOP + 0.004], [5, 101.0]]  # key 5: never sent
    assert latencies([publisher], arrivals) == pytest.approx([0.002, 0.004])


def test_latency_counts_arrivals_in_the_window_only() -> None:
    publisher = {"sent_log": [(1, 10.0), (2, 11.0), (3, 12.0), (4, 20.0)]}
    arrivals = [[1, 10.09], [2, 11.005], [3, 12.2]]
    assert latencies([publisher], arrivals, (11.0, 12.1)) == pytest.approx([0.005])


def test_latency_log_end_is_the_earliest_of_the_publishers() -> None:
    early = {"sent_log": [(1, 10.0), (2, 11.0)]}
    late = {"sent_log": [(3, 10.5), (4, 15.0)]}
    assert latencies([early, late], [[1, 10.01], [3, 12.0]]) == pytest.approx([0.01])


def test_steady_window() -> None:
    assert steady_window([10.0, 11.5, 10.2], 24.0) == (12.5, 23.0)
    assert steady_window([10.0, None], 24.0) is None  # a subscriber got nothing
    assert steady_window([], 24.0) is None
    assert steady_window([10.0, 22.5], 24.0) is None  # nothing left
    assert steady_window([10.0], 24.0, settle=2.0, margin=3.0) == (12.0, 21.0)


def test_whole_seconds_inside_the_window() -> None:
    # seconds since started=100.3: second s covers [100.3 + s, 101.3 + s)
    per_second = [(0, 50), (1, 200), (2, 210), (3, 205), (4, 190), (5, 20)]
    # window [101.0, 104.5]: seconds 1 ([101.3, 102.3)) and 2, 3 ([103.3, 104.3)); not 4
    assert whole_seconds(per_second, 100.3, (101.0, 104.5)) == (615, 3)
    assert whole_seconds(per_second, 100.3, (101.3, 104.3)) == (615, 3)  # bounds inclusive
    # a second inside the window with no entry counts, as zero
    assert whole_seconds([(1, 10), (3, 10)], 100.0, (101.0, 104.0)) == (20, 3)
    assert whole_seconds(per_second, 100.3, (101.0, 101.5)) == (0, 0)


def test_subscriber_figures_and_layer_shares() -> None:
    sub = {
        "started": 100.0,
        "packets_per_second": [(0, 100), (1, 200), (2, 200), (3, 200)],
        "lost_per_second": [(0, 9), (2, 1)],
        "frame_layers": [
            [100.5, 0, 0],  # before the window
            [101.1, 2, 2],
            [101.2, 2, 1],
            [101.3, 2, 2],
            [101.4, 1, 0],
            [103.5, 2, 0],  # after the window
        ],
    }
    figures = subscriber_figures(sub, (101.0, 103.0))
    assert (figures["packets"], figures["lost"], figures["seconds"]) == (400, 1, 2)
    assert figures["frames_by_layer"] == Counter({"S2T2": 2, "S2T1": 1, "S1T0": 1})
    assert list(layer_shares(figures["frames_by_layer"]).items()) == [
        ("S2T2", 0.5),
        ("S2T1", 0.25),
        ("S1T0", 0.25),
    ]
    assert layer_shares(Counter()) == {}


def test_cpu_per_second_between_samples_inside_the_window() -> None:
    samples = [(9.0, 0.0), (10.5, 1.0), (11.5, 1.5), (12.5, 2.0), (13.5, 4.0)]
    assert cpu_per_second(samples, (10.0, 13.0)) == pytest.approx(0.5)  # 10.5 -> 12.5
    assert cpu_per_second(samples, (10.0, 11.0)) is None  # one sample inside


def _report(steady: dict | None) -> dict:
    return {"steady": steady, "errors": []}


STEADY = {
    "seconds": 8.0,
    "server_cpu_per_second": 0.4,
    "generator_cpu_per_second": 0.6,
    "profiles": {
        "fanout": {
            "loss_percent": 0.1,
            "latency_ms": {"p50": 3.0, "p95": 9.0, "p99": 20.0},
            "latency_samples": 4000,
            "packets_per_subscriber_second": 200.0,
            "layers": {"S2T2": 0.4, "S2T1": 0.2, "S2T0": 0.2, "S1T0": 0.2},
        }
    },
    "loop_lag": {
        "bounds_ms": [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0],
        "counts": [300, 80, 15, 4, 1, 0, 0, 0, 0],
        "max_ms": 12.5,
        "p99_ms": 10.0,
    },
}


def test_step_row_from_the_steady_figures() -> None:
    row = step_row(8, _report(STEADY))
    assert row["us_per_packet"] == pytest.approx(1e6 * 0.4 / 1600)  # 250 us
    assert row["packets_per_second"] == 1600 and row["delivered"] == 12800
    assert row["server_ms_per_subscriber_second"] == 50.0
    assert row["generator_ms_per_subscriber_second"] == 75.0
    assert row["server_cpu_percent"] == 40.0 and row["generator_cpu_percent"] == 60.0
    assert (row["loss_percent"], row["p99_ms"]) == (0.1, 20.0)
    assert held(row)
    text = format_row(row, {"us_per_packet": 25.0})
    first, second, third = text.splitlines()
    assert first.startswith("N=  8  loss  0.10%  p99 20.0 ms")  # compare.sh reads this line
    assert "(UDP relay 25.00, x10.00)" in first
    assert "200.0 packets/s per subscriber" in second and "S2T2 40%" in second
    assert "server 50.0, generator 75.0" in second
    assert "p99 <10 ms, max 12.5 ms" in third and "<1:300" in third and ">=200:0" in third


def test_step_fails_without_a_steady_window_or_over_the_bounds() -> None:
    row = step_row(8, _report(None))
    assert row["us_per_packet"] is None and not held(row)
    assert "no steady window" in format_row(row, None)
    slow = {**STEADY, "profiles": {"fanout": {**STEADY["profiles"]["fanout"]}}}
    slow["profiles"]["fanout"]["latency_ms"] = {"p50": 3.0, "p95": 9.0, "p99": 50.1}
    assert not held(step_row(8, _report(slow)))
    lossy = {**STEADY, "profiles": {"fanout": {**STEADY["profiles"]["fanout"]}}}
    lossy["profiles"]["fanout"]["loss_percent"] = 0.51
    assert not held(step_row(8, _report(lossy)))


def _snapshot(by_second: list[list[float]]) -> dict:
    return {
        "bounds_ms": [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0],
        "max_ms": max((m for _, m in by_second), default=0.0),
        "max_ms_by_second": by_second,
    }


def test_generator_processes_loop_lag_merged_over_the_window() -> None:
    zero = [0] * 9
    one = (
        [
            {"at": 9.0, "counts": zero},
            {"at": 10.0, "counts": [40, 5, 0, 0, 0, 0, 0, 0, 0]},
            {"at": 20.0, "counts": [540, 50, 10, 0, 0, 0, 0, 0, 0]},
        ],
        _snapshot([[9, 1.5], [15, 4.0]]),  # second 9 is before the window: out
    )
    two = (
        [
            {"at": 10.5, "counts": [50, 0, 0, 0, 0, 0, 0, 0, 0]},
            {"at": 19.5, "counts": [400, 80, 10, 5, 5, 0, 0, 0, 0]},
        ],
        _snapshot([[12, 18.0], [19, 30.0]]),
    )
    merged = merged_loop_lag([one, two], (10.0, 20.0))
    assert merged is not None
    assert merged["counts"] == [850, 125, 20, 5, 5, 0, 0, 0, 0]
    assert merged["max_ms"] == 18.0  # [19, 30.0] ends past 19.5: not a whole second inside
    assert merged["p99_ms"] == 5.0  # 995 of 1005 samples under 5 ms
    # a process without two samples in the window: no figure rather than a partial one
    assert merged_loop_lag([one, (two[0][:1], two[1])], (10.0, 20.0)) is None
    assert merged_loop_lag([], (10.0, 20.0)) is None


def test_step_row_prints_the_generators_loop_lag() -> None:
    steady = {**STEADY, "generator_loop_lag": {**STEADY["loop_lag"], "p99_ms": 5.0}}
    text = format_row(step_row(8, _report(steady)), None)
    assert "generator loop lag: p99 <5 ms, max 12.5 ms" in text.splitlines()[-1]


async def test_scale_prints_ratios_of_the_same_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`loadtest scale`: the per-worker cost is a ratio of two steps of the same run, per
    round and as a median; the split room's verdicts are the bench's own."""
    from loadtest import scale as scale_module

    calls: list[dict[str, object]] = []
    cost = {1: [50.0, 60.0], 2: [55.0, 63.0]}

    async def fake_bench(**kwargs: object) -> dict[str, object]:
        calls.append(kwargs)
        workers = int(kwargs.get("workers", 1))  # type: ignore[call-overload]
        if kwargs.get("room_participants_per_worker") or kwargs["max_subscribers"] == 24:
            p99 = 60.0 if workers == 2 else 20.0
            return {
                "steps": [
                    {
                        "subscribers": kwargs["max_subscribers"],
                        "loss_percent": 0.0,
                        "p99_ms": p99,
                        "us_per_packet": 70.0,
                    }
                ]
            }
        us = cost[workers].pop(0)
        return {"steps": [{"us_per_packet": us, "loss_percent": 0.0, "p99_ms": 10.0}]}

    monkeypatch.setattr(scale_module, "bench", fake_bench)
    out = await scale_module.scale(subscribers=16, rooms=2, rounds=2, split=24, duration=8)
    assert [c["ratio"] for c in out["per_worker_cost"]] == [1.1, 1.05]
    assert out["median_ratio"] == pytest.approx(1.075)
    # the order alternates between rounds
    assert [c.get("workers") for c in calls[:4]] == [1, 2, 2, 1]
    assert out["split_room"]["one_worker_held"] is True
    assert out["split_room"]["two_workers_held"] is False  # p99 60 ms > 50
    assert calls[-1]["room_participants_per_worker"] == 1 and calls[-1]["max_subscribers"] == 48
    assert "median 2 workers / 1 worker = x1.075" in capsys.readouterr().out

"""Bandwidth-aware forwarding on a real shaped link: a subscriber in its own network
namespace behind tc, 2.5 Mbit/s -> 400 kbit/s -> 2.5 Mbit/s, against a replayed VP9 L3T3_KEY
publisher. Generous bounds here; `python -m loadtest bandwidth` prints the figures."""

from __future__ import annotations

from loadtest.bandwidth import figures, run_schedule

SCHEDULE = [(10.0, 2500), (14.0, 400), (14.0, 2500)]


async def test_layers_follow_a_shaped_link(namespaces: None) -> None:
    run = await run_schedule(SCHEDULE)
    result = figures(run)
    print("\n", result)
    samples = run["samples"]
    drop, rise = run["changes"][0]["t"], run["changes"][1]["t"]
    assert [c["kbps"] for c in run["changes"]] == [400, 2500]

    # before the drop: the top layer
    before = [s for s in samples if drop - 4 <= s["t"] < drop]
    assert before and all(s["spatial"] == 2 for s in before), before

    # after the drop: the forwarded rate fits the link, a lower spatial layer, still decoding
    fit = result["changes"][0]["time_to_fit"]
    assert fit is not None and fit <= 5.0, result
    low = [s for s in samples if drop + 6 <= s["t"] < rise]
    assert low and all(s["spatial"] < 2 for s in low)
    assert sum(s["forwarded"] for s in low) / len(low) <= 400_000
    assert sum(1 for s in low if s["paused"]) <= len(low) // 4

    # after the recovery: back to the top layer
    recover = result["changes"][1]["time_to_recover"]
    assert recover is not None and recover <= 10.0, result

    # the subscriber kept decoding: bounded freezes, no storm of keyframe requests
    sub = run["subscriber"]
    assert sub["frames_decodable"] > 500
    assert sub["freezes"] <= 4 and sub["longest_gap"] < 3.0, sub["longest_gap"]
    assert result["plis_per_second"] <= 1.0
    # no spatial oscillation at steady bandwidth (the second half of each phase: ~19 s)
    assert result["spatial_switches_steady"] <= 2, result

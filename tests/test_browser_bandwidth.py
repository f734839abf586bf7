"""Bandwidth-aware forwarding to real Chromium on a real shaped link: the demo page, receive
only, runs in its own network namespace behind tc (2.5 Mbit/s -> 400 kbit/s -> 2.5 Mbit/s),
against a replayed VP9 L3T3_KEY publisher. Generous bounds here;
`python -m loadtest browser-bandwidth` prints the figures."""

from __future__ import annotations

import pytest
from support.browser import require_chromium

from loadtest.browser_bandwidth import figures, phase_figures, run_schedule

require_chromium()

# the high phase starts at the page's first decoded frame; the last one is longer than the
# bound on the recovery
SCHEDULE = [(10.0, 2500), (12.0, 400), (16.0, 2500)]


@pytest.mark.timeout(150)
async def test_chromium_follows_a_shaped_link(namespaces: None) -> None:
    run = await run_schedule(SCHEDULE)
    result = figures(run)
    print("\n", {k: v for k, v in result.items() if k != "phases"})
    for phase in result["phases"]:
        print(phase)
    samples = run["samples"]
    assert [c["kbps"] for c in run["changes"]] == [400, 2500]
    drop, rise = run["changes"][0]["t"], run["changes"][1]["t"]

    # Chromium really is behind the shaped link: its end of the media path is in the
    # namespace, and the media went through the shaper
    namespace = run["namespace"]
    assert namespace["candidate_pair"][0] == namespace["peer_address"], namespace
    assert "chromium" in namespace["processes"], namespace
    assert namespace["shaper"]["bytes"] > 2_000_000, namespace

    # before the drop: the top layer, decoded at 1280 wide
    before = [s for s in samples if drop - 4 <= s["t"] < drop]
    assert before and all(s["spatial"] == 2 for s in before), before
    assert all(s["page"]["frameWidth"] == 1280 for s in before), [s["page"] for s in before]

    # after the drop: a lower spatial layer whose rate fits the link; the page keeps decoding,
    # smaller
    down = result["changes"][0]
    assert down["time_to_switch_down"] is not None and down["time_to_switch_down"] <= 5, down
    assert down["page_width_drop"] is not None and down["page_width_drop"] <= 8, down
    low = [s for s in samples if drop + 6 <= s["t"] < rise]
    assert low and all(s["spatial"] < 2 for s in low), low
    assert sum(s["forwarded"] for s in low) / len(low) <= 400_000
    assert all(s["page"]["frameWidth"] < 1280 for s in low), [s["page"] for s in low]
    decoded = low[-1]["page"]["framesDecoded"] - low[0]["page"]["framesDecoded"]
    seconds = low[-1]["t"] - low[0]["t"]
    assert decoded >= 3 * seconds, (decoded, seconds)  # S1T0 is 7.5 fps
    assert phase_figures(low)["longest_stall_s"] <= 2.0, phase_figures(low)

    # after the rise: back to the top layer, and 1280 wide on the page
    up = result["changes"][1]
    assert up["time_to_recover"] is not None and up["time_to_recover"] <= 15, up
    assert up["page_width_1280"] is not None and up["page_width_1280"] <= 15, up

    # no storm of keyframe requests; freezes bounded (Chromium's own count)
    assert result["plis_per_second"] <= 1.0, result
    whole = result["page"]
    assert whole["freeze_count"] <= 4 and whole["freezes_s"] < 6.0, whole

"""The receiver-CPU fit and the viewer's reports, fed exact report sequences."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sfu import protocol as m
from sfu.quality.cpu_fit import ReceiverCpuFit, capped, ladder
from sfu.quality.viewer import RoomQuality, ViewerFigures, ViewerQuality


class Viewer:
    """A viewer reporting once a second: ``fps`` frames decoded, ``share`` x as many dropped,
    at the level the cap lets through (from ``wanted``)."""

    def __init__(self, fit: ReceiverCpuFit, wanted: tuple[int, int] = (2, 2)) -> None:
        self.fit = fit
        self.wanted = wanted
        self.now = 0.0
        self.decoded = 0
        self.dropped = 0
        self.caps: list[tuple[float, tuple[int, int] | None]] = []

    def run(self, seconds: int, share: float, fps: int = 30) -> tuple[int, int] | None:
        cap = self.fit.cap
        for _ in range(seconds):
            self.now += 1.0
            self.decoded += fps
            self.dropped += round(fps * share)
            level = capped(self.wanted, cap)
            new = self.fit.on_report(self.now, self.decoded, self.dropped, level, 3, 3)
            if new != cap:
                self.caps.append((self.now, new))
            cap = new
        return cap


def test_ladder_steps_spatial_first_then_temporal() -> None:
    assert ladder(3, 3) == [(2, 2), (1, 2), (0, 2), (0, 1), (0, 0)]
    assert ladder(1, 3) == [(0, 2), (0, 1), (0, 0)]
    assert ladder(1, 1) == [(0, 0)]


def test_a_viewer_that_keeps_up_is_never_capped() -> None:
    viewer = Viewer(ReceiverCpuFit())
    assert viewer.run(60, share=0.1) is None
    assert viewer.caps == []
    assert viewer.fit.dropped_share == pytest.approx(0.1)


def test_overload_steps_down_one_rung_per_window_to_the_bottom() -> None:
    viewer = Viewer(ReceiverCpuFit(threshold=0.25, window=4.0))
    viewer.run(20, share=0.4)
    # the first verdict needs a full window (4 s between the first report and the last),
    # each step a new one
    assert viewer.caps == [(5.0, (1, 2)), (9.0, (0, 2)), (13.0, (0, 1)), (17.0, (0, 0))]
    assert viewer.fit.steps_down == 4


def test_just_above_and_just_below_the_threshold() -> None:
    below = Viewer(ReceiverCpuFit(threshold=0.25))
    assert below.run(12, share=0.2) is None
    above = Viewer(ReceiverCpuFit(threshold=0.25))
    assert above.run(5, share=0.3) == (1, 2)


def test_the_step_is_from_the_level_received_not_from_the_top() -> None:
    # the window already holds the viewer at (1, 1): the cap must lower that
    viewer = Viewer(ReceiverCpuFit(), wanted=(1, 1))
    cap = viewer.run(5, share=0.5)
    assert cap == (0, 2)
    assert capped((1, 1), cap) == (0, 1)


def test_recovery_one_rung_per_hold_once_the_drops_stop() -> None:
    viewer = Viewer(ReceiverCpuFit(window=4.0, hold=8.0))
    viewer.run(9, share=0.5)
    assert viewer.fit.cap == (0, 2)  # two steps: at 5 s and 9 s
    viewer.caps.clear()
    viewer.run(40, share=0.0)
    # up after the hold (8 s after the last step, with a clean window judged), and again
    # one hold after that, until no cap is left
    assert viewer.caps == [(17.0, (1, 2)), (25.0, None)]


def test_an_up_step_that_fails_doubles_the_hold() -> None:
    fit = ReceiverCpuFit(window=4.0, hold=8.0)
    viewer = Viewer(fit)
    viewer.run(5, share=0.5)
    assert fit.cap == (1, 2)
    viewer.run(8, share=0.0)
    assert fit.cap is None and viewer.caps[-1] == (13.0, None)  # tried at 5 + 8
    viewer.run(5, share=0.5)  # overloaded again at once: the up-step failed
    assert fit.cap == (1, 2) and fit.hold == 16.0 and viewer.caps[-1] == (17.0, (1, 2))
    viewer.caps.clear()
    viewer.run(20, share=0.0)
    assert viewer.caps == [(33.0, None)]  # 16 s after the down-step at 17
    viewer.run(4, share=0.5)  # failed again
    assert fit.hold == 32.0
    viewer.run(200, share=0.0)
    assert fit.cap is None
    fit_hold_before = fit.hold
    viewer.run(4, share=0.5)  # an overload long after the last up-step: start afresh
    assert fit.cap == (1, 2) and fit.hold == 8.0 < fit_hold_before


def test_a_paused_or_starting_video_is_not_judged() -> None:
    fit = ReceiverCpuFit()
    # one frame decoded, one dropped per second: too few frames to say anything
    viewer = Viewer(fit)
    assert viewer.run(20, share=1.0, fps=1) is None
    assert fit.dropped_share is None


def test_absurd_or_reset_counters_change_nothing() -> None:
    fit = ReceiverCpuFit()
    assert fit.on_report(1.0, 30, 0, (2, 2), 3, 3) is None
    # a million frames in a second: not believed, and nothing learnt from it
    assert fit.on_report(2.0, 1_000_000, 900_000, (2, 2), 3, 3) is None
    assert fit.rejected == 1
    # counters going back (a new receiver): history starts again, no verdict
    assert fit.on_report(3.0, 10, 5, (2, 2), 3, 3) is None
    assert fit.rejected == 2
    assert fit.on_report(4.0, 40, 5, (2, 2), 3, 3) is None
    # the same time twice
    assert fit.on_report(4.0, 70, 60, (2, 2), 3, 3) is None
    assert fit.rejected == 3


def test_at_the_lowest_level_the_cap_stays() -> None:
    viewer = Viewer(ReceiverCpuFit(), wanted=(0, 0))
    assert viewer.run(12, share=0.9) is None  # nothing lower to give


def test_viewer_quality_deltas_first_frame_and_rate() -> None:
    viewer = ViewerQuality()
    first = viewer.on_report(
        1.0,
        ViewerFigures(frames_decoded=30, frames_dropped=0, freeze_count=0),
        current=(2, 2),
        spatial_layers=3,
        temporal_layers=3,
        first_frame=0.8,
        switch_paints=[0.12],
    )
    assert first is not None and first.first_frame == 0.8 and first.switch_paints == [0.12]
    assert first.decoded == 0  # no previous report to count from
    # too soon after the last one: not used
    assert (
        viewer.on_report(
            1.2, ViewerFigures(60, 0), current=(2, 2), spatial_layers=3, temporal_layers=3
        )
        is None
    )
    second = viewer.on_report(
        2.0,
        ViewerFigures(
            frames_decoded=58, frames_dropped=3, freeze_count=1, total_freezes_duration=0.4
        ),
        current=(2, 2),
        spatial_layers=3,
        temporal_layers=3,
        first_frame=0.9,  # sent again: counted once
    )
    assert second is not None
    assert (second.decoded, second.dropped, second.freezes) == (28, 3, 1)
    assert second.first_frame is None
    stats = viewer.stats(2.5)
    assert stats is not None
    assert stats["decoded_frames"] == 58 and stats["dropped_frames"] == 3
    assert stats["first_frame"] == 0.8 and stats["cpu_cap"] is None
    assert stats["reports"] == 2 and stats["reports_ignored"] == 1
    room = RoomQuality()
    room.add(first)
    room.add(second)
    summary = room.stats()
    assert summary["first_frame"] == {"count": 1, "median": 0.8, "p95": 0.8}
    assert summary["switch_paint"] == {"count": 1, "median": 0.12, "p95": 0.12}


def test_a_disabled_fit_never_caps() -> None:
    viewer = ViewerQuality()
    viewer.fit_enabled = False
    decoded = dropped = 0
    for second in range(1, 20):
        decoded, dropped = decoded + 30, dropped + 25
        outcome = viewer.on_report(
            float(second),
            ViewerFigures(decoded, dropped),
            current=(2, 2),
            spatial_layers=3,
            temporal_layers=3,
        )
        assert outcome is not None and outcome.cap is None


def test_the_report_schema_bounds_what_a_viewer_may_send() -> None:
    ok = {"track_id": "t", "frames_decoded": 1, "frames_dropped": 0}
    m.client_message.validate_python({"type": "receiver_report", "tracks": [ok]})
    bad = [
        {"tracks": [ok] * 33},
        {"tracks": [{**ok, "frames_dropped": -1}]},
        {"tracks": [{**ok, "frames_decoded": 2**60}]},
        {"tracks": [{**ok, "switch_paints": [0.1] * 17}]},
        {"tracks": [{**ok, "switch_paints": [-1.0]}]},
        {"tracks": [{**ok, "frame_width": 100_000}]},
        {"tracks": [{**ok, "extra": 1}]},
        {"tracks": [{"track_id": "t"}]},
    ]
    for fields in bad:
        with pytest.raises(ValidationError):
            m.client_message.validate_python({"type": "receiver_report", **fields})

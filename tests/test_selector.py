"""The selector's rules on synthetic VP9-style packets (no dependency descriptor)."""

from sfu.forwarding.layers import LayerInfo
from sfu.forwarding.picture_ids import PictureIdMapper
from sfu.forwarding.selector import DROP, MARKER, LayerSelector


def pkt(
    sid: int,
    tid: int,
    *,
    start: bool = True,
    end: bool = True,
    key: bool = False,
    switch: bool = False,
) -> LayerInfo:
    info = LayerInfo()
    info.sid, info.tid = sid, tid
    info.start_of_frame, info.end_of_frame = start, end
    info.keyframe = key and sid == 0 and start
    info.switch_mask = (1 << tid) if switch else 0
    return info


def picture(
    sel: LayerSelector, tid: int, *, key: bool = False, switch: bool = False, layers: int = 3
) -> list[int]:
    """One picture of `layers` spatial frames, one packet each; the source marker on the last."""
    return [sel.select(pkt(s, tid, key=key, switch=switch), s == layers - 1) for s in range(layers)]


def test_nothing_before_a_keyframe() -> None:
    sel = LayerSelector()
    assert picture(sel, 0) == [DROP] * 3
    assert sel.keyframe_wanted
    assert picture(sel, 0, key=True) == [0, 0, MARKER]
    assert not sel.keyframe_wanted


def test_marker_on_the_highest_forwarded_spatial_layer() -> None:
    sel = LayerSelector()
    sel.set_target(1, 2)
    assert picture(sel, 0, key=True) == [0, MARKER, DROP]


def test_spatial_down_at_the_next_picture_up_at_a_keyframe() -> None:
    sel = LayerSelector()
    picture(sel, 0, key=True)
    sel.set_target(0, 2)
    assert picture(sel, 2) == [MARKER, DROP, DROP]
    sel.set_target(2, 2)
    assert sel.keyframe_wanted
    assert picture(sel, 1) == [MARKER, DROP, DROP]  # no keyframe yet: stay
    assert picture(sel, 0, key=True) == [0, 0, MARKER]
    assert (sel.current_spatial, sel.current_temporal) == (2, 2)


def test_temporal_up_only_at_a_switching_point() -> None:
    sel = LayerSelector()
    sel.set_target(2, 0)
    picture(sel, 0, key=True)
    assert picture(sel, 2) == [DROP] * 3
    sel.set_target(2, 2)
    assert picture(sel, 2) == [DROP] * 3  # T2 without the U bit
    assert picture(sel, 1, switch=True) == [0, 0, MARKER]  # a switching point to T1
    assert sel.current_temporal == 1
    assert picture(sel, 2, switch=True) == [0, 0, MARKER]
    assert sel.current_temporal == 2


def test_pause_and_resume_at_a_keyframe() -> None:
    sel = LayerSelector()
    picture(sel, 0, key=True)
    sel.pause()
    assert picture(sel, 0, key=True) == [DROP] * 3
    sel.resume()
    assert picture(sel, 0) == [DROP] * 3
    assert picture(sel, 0, key=True) == [0, 0, MARKER]


def test_picture_ids_continuous_over_dropped_pictures() -> None:
    sel = PictureIdMapper()
    out = []
    for pid, forwarded in [
        (10, True),
        (11, False),
        (12, True),
        (13, False),
        (14, False),
        (15, True),
    ]:
        out.append(sel.map(pid, 15, forwarded))
    assert [
        o
        for o, (_, f) in zip(out, [(0, 1), (0, 0), (0, 1), (0, 0), (0, 0), (0, 1)], strict=True)
        if f
    ] == [10, 11, 12]


def test_a_late_packet_is_judged_by_the_current_layers_and_changes_nothing() -> None:
    sel = LayerSelector()
    picture(sel, 0, key=True)
    sel.set_target(0, 2)  # down at the next picture start
    # a retransmitted picture start, late: forwarded as the layers were, no switch
    assert sel.select(pkt(1, 0), False, late=True) == 0
    assert sel.select(pkt(2, 2), True, late=True) == MARKER
    assert (sel.current_spatial, sel.switches) == (2, 1)
    assert picture(sel, 1) == [MARKER, DROP, DROP]
    assert sel.current_spatial == 0
    assert sel.select(pkt(1, 1), False, late=True) == DROP


def test_picture_ids_of_late_packets_and_of_pictures_with_losses() -> None:
    sel = PictureIdMapper()
    assert sel.map(10, 15, True) == 10
    # 11: only packets that are not forwarded arrived, and some are missing (gap) that
    # would be: it is not counted as dropped, its late packets get 11
    assert sel.map(11, 15, False, gap=True, likely=True) == 11
    # 12 lost whole so far; 13 not forwarded and complete: dropped whole, 14 follows 13
    assert sel.map(13, 15, False) == 13
    assert sel.map(14, 15, True) == 13
    assert sel.map(11, 15, True, late=True) == 11
    assert sel.map(12, 15, True, late=True) == 12
    # a picture with missing packets that would not be forwarded is dropped whole
    assert sel.map(15, 15, False, gap=True, likely=False) == 14
    assert sel.map(16, 15, True) == 14

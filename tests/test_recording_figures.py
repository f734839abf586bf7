"""``python -m loadtest recording-figures`` in a reduced form (VP9 ``L3T3_KEY``, its first 45
pictures): the figures add up, the rungs' quality matches the levels', a top-level player
reads less than all layers, and the base level shows its first picture sooner than the top.

On this content the re-encoded ladder is *smaller* than the layered recording (the
publisher's realtime encoder spent more at the lower levels than a constant-quality
re-encode needs for the same PSNR; docs/recording.md, "Figures"), so that is not asserted:
only that the layered recording is below the ladder of the publisher's own encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.cli import main
from loadtest.recording_figures import RATES, TOLERANCE


def test_reduced_vp9_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "figures.json"
    args = ["recording-figures", "--codecs", "VP9", "--frames", "45", "--json", str(path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| VP9 1280x720, 45 pictures, 1.50 s |" in printed
    (vp9,) = json.loads(path.read_text())
    assert vp9["pictures"] == 45

    # stored bytes: the layers add up; the top level reads S2 whole and the lower layers'
    # keyframes only; the publisher's ladder holds those keyframes again
    layers = vp9["layers"]
    assert set(layers) == {"s0", "s1", "s2"}
    assert vp9["layered"] == sum(layers.values())
    assert layers["s2"] < vp9["top_alone"] < layers["s2"] + 0.1 * (layers["s0"] + layers["s1"])
    assert vp9["top_alone"] < vp9["layered"]
    assert vp9["layered"] < vp9["publisher_ladder"] < 1.1 * vp9["layered"]

    # the re-encoded ladder: two lower rungs, each at its level's PSNR, and the publisher's top
    rungs = vp9["rungs"]
    assert [(r["width"], r["height"]) for r in rungs] == [(320, 180), (640, 360)]
    for rung in rungs:
        assert rung["encoder"] == "libvpx-vp9"
        assert 1 <= len(rung["trials"]) <= 4
        # the fitted downscaler leaves coding error only: a plain one leaves far lower PSNR
        assert rung["svc_psnr"] > 40
        chosen = rung["chosen"]
        assert abs(chosen["psnr"] - rung["svc_psnr"]) <= TOLERANCE or rung["interpolated"]
        psnrs = [t["psnr"] for t in sorted(rung["trials"], key=lambda t: t["crf"])]
        assert psnrs == sorted(psnrs, reverse=True)  # a higher crf, a lower PSNR
        assert 0 < rung["matched_bytes"] < rung["svc_read"] * 2
    assert vp9["top_rung"] == vp9["top_alone"] and not vp9["top_rung_bound"]
    assert vp9["ladder"] == vp9["top_rung"] + sum(r["matched_bytes"] for r in rungs)
    assert vp9["transcode_cpu"] > vp9["record_cpu"] > 0

    # time to first frame: segment 0 of the looped recording
    fetches = {f["what"]: f for f in vp9["first_frame"]}
    first = fetches["base level, first picture (key_bytes)"]
    base = fetches["base level, segment"]
    top = fetches["top level, segment"]
    sparse = fetches["top level, segment, sparse"]
    assert (first["requests"], base["requests"], top["requests"]) == (1, 1, 3)
    assert first["bytes"] < base["bytes"] < sparse["bytes"] < top["bytes"]
    for rate in map(str, RATES):
        assert first["seconds"][rate] < base["seconds"][rate] < sparse["seconds"][rate]
        assert sparse["seconds"][rate] < top["seconds"][rate]

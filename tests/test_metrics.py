"""Prometheus metrics (sfu/metrics/, ``/metrics``) and the ``/stats`` schema (docs/stats.md):
the counters kept for objects that went away, the rooms' counts read at scrape time, the
viewers' figures, the endpoint's admin check on the real application, the Grafana dashboard's
queries against what the server exposes, and ``/stats``' names and clamped loss."""

from __future__ import annotations

import asyncio
import gc
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.forwarding import attach, feed, make_source
from support.serving import RunningServer

from loadtest.signaling import SignalingPeer
from sfu import protocol as m
from sfu.forwarding.downtrack import DownTrack
from sfu.forwarding.source import MediaSource
from sfu.metrics import Metrics
from sfu.metrics.totals import RunningTotals
from sfu.rooms.participant import Participant
from sfu.rooms.room import RoomManager
from sfu.signaling.state import METRICS_KEY, ROOMS_KEY
from sfu.signaling.stats import _participant_stats

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "sfu-dashboard.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition: (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def scrape(metrics: Metrics) -> Samples:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return samples(body.decode())


class Thing:
    """An object with counters (weakly referenceable, as the forwarding objects are)."""


async def nowhere(message: m.ServerMessage) -> None:
    pass


def bind(viewer: Participant, source: MediaSource, downtrack: DownTrack) -> None:
    """``downtrack`` as ``viewer``'s copy of ``source``, as the subscribe connection binds one
    once negotiated (no negotiation here)."""
    peer = viewer.subscriber_peer()
    peer.downtracks[source.track_id] = downtrack
    peer._sources[source.track_id] = source


# -- the running totals ---------------------------------------------------------------------------


def test_totals_keep_what_objects_counted_after_they_are_gone() -> None:
    totals = RunningTotals(2)
    a, b = Thing(), Thing()
    totals.note(a, ("default",), [10, 100])
    totals.note(b, ("webinar",), [1, 5])
    assert totals.totals() == {("default",): [10, 100], ("webinar",): [1, 5]}
    totals.note(a, ("webinar",), [12, 90])  # the label stays the first; a value never falls
    assert totals.totals() == {("default",): [12, 100], ("webinar",): [1, 5]}
    del a
    gc.collect()
    assert totals.totals() == {("default",): [12, 100], ("webinar",): [1, 5]}
    assert len(totals) == 1
    c = Thing()  # a new object (perhaps at the same address) starts from its own counts
    totals.note(c, ("default",), [3, 3])
    assert totals.totals() == {("default",): [15, 103], ("webinar",): [1, 5]}
    with pytest.raises(ValueError):
        totals.note(c, ("default",), [1])


# -- the rooms' counts, read at scrape time ---------------------------------------------------


async def test_forwarding_counts_are_read_at_scrape_and_never_fall_when_a_participant_leaves() -> (
    None
):
    rooms = RoomManager()
    metrics = rooms.metrics
    publisher = Participant("pub", nowhere)
    viewer = Participant("view", nowhere)
    await rooms.join("r", publisher)
    await rooms.join("r", viewer)
    source, _ = make_source("audio")  # audio: every packet forwarded, no layers to wait for
    publisher.sources[source.track_id] = source
    downtrack, sent = attach(source, ssrc=5000)
    bind(viewer, source, downtrack)
    for seq in range(1, 11):
        feed(source, seq, ts=seq * 960, now=seq * 0.02)
    feed(source, 10, ts=9600, now=0.3)  # a duplicate: received, not forwarded
    assert len(sent) == 10

    found = scrape(metrics)
    assert value(found, "sfu_rooms", policy="default") == 1
    assert value(found, "sfu_participants", policy="default") == 2
    assert value(found, "sfu_published_tracks", policy="default", kind="audio") == 1
    assert value(found, "sfu_subscribed_tracks", policy="default", kind="audio") == 1
    assert value(found, "sfu_forwarded_packets_total", policy="default", kind="audio") == 10
    forwarded_bytes = sum(len(p) for p in sent)
    assert value(found, "sfu_forwarded_bytes_total", policy="default", kind="audio") == (
        forwarded_bytes
    )
    assert value(found, "sfu_received_packets_total", policy="default", kind="audio") == 11
    assert (
        value(found, "sfu_ingress_dropped_packets_total", policy="default", reason="duplicate") == 1
    )
    assert value(found, "sfu_dropped_packets_total", policy="default", reason="layer") == 0

    for seq in range(11, 16):  # counted after the scrape, before the viewer leaves
        feed(source, seq, ts=seq * 960, now=seq * 0.02)
    assert len(sent) == 15
    room = rooms.rooms["r"]
    await room.leave(viewer)
    del downtrack
    viewer.subscriber = None
    gc.collect()
    found = scrape(metrics)
    assert value(found, "sfu_participants", policy="default") == 1
    assert value(found, "sfu_subscribed_tracks", policy="default", kind="audio") is None
    # the leaving viewer's last packets are counted, and nothing went backwards
    assert value(found, "sfu_forwarded_packets_total", policy="default", kind="audio") == 15
    await room.leave(publisher)
    publisher.sources.clear()
    del source
    gc.collect()
    found = scrape(metrics)
    assert value(found, "sfu_rooms", policy="default") is None  # no room left
    assert value(found, "sfu_received_packets_total", policy="default", kind="audio") == 16
    assert value(found, "sfu_forwarded_packets_total", policy="default", kind="audio") == 15


def test_level_switches_and_viewer_figures_are_counted_by_policy_and_reason() -> None:
    metrics = Metrics()
    metrics.level_switch("default", "bandwidth")
    metrics.level_switch("default", "bandwidth")
    metrics.level_switch("webinar", "cpu")
    metrics.level_switch("webinar", "made-up")  # an unknown reason: no new series of its own
    metrics.viewer_frames("default", decoded=120, dropped=3)
    metrics.viewer_frames("default", decoded=-5, dropped=0)  # a viewer's counters restarted
    metrics.viewer_freezes("default", count=2, seconds=0.75)
    found = scrape(metrics)
    assert value(found, "sfu_layer_switches_total", policy="default", reason="bandwidth") == 2
    assert value(found, "sfu_layer_switches_total", policy="webinar", reason="cpu") == 1
    assert value(found, "sfu_layer_switches_total", policy="webinar", reason="other") == 1
    assert value(found, "sfu_viewer_frames_decoded_total", policy="default") == 120
    assert value(found, "sfu_viewer_frames_dropped_total", policy="default") == 3
    assert value(found, "sfu_viewer_freezes_total", policy="default") == 2
    assert value(found, "sfu_viewer_freeze_seconds_total", policy="default") == 0.75


def test_histograms_count_into_their_buckets() -> None:
    metrics = Metrics()
    metrics.first_frame("default", 0.6)
    metrics.first_frame("default", 4.0)
    metrics.switch_paint("default", 0.15)
    metrics.switch_paint("default", -1.0)  # impossible: not observed
    found = scrape(metrics)
    name = "sfu_viewer_first_frame_seconds"
    assert value(found, f"{name}_bucket", policy="default", le="0.5") == 0
    assert value(found, f"{name}_bucket", policy="default", le="0.75") == 1
    assert value(found, f"{name}_bucket", policy="default", le="5.0") == 2
    assert value(found, f"{name}_bucket", policy="default", le="+Inf") == 2
    assert value(found, f"{name}_count", policy="default") == 2
    assert value(found, f"{name}_sum", policy="default") == pytest.approx(4.6)
    paint = "sfu_viewer_switch_paint_seconds"
    assert value(found, f"{paint}_bucket", policy="default", le="0.1") == 0
    assert value(found, f"{paint}_bucket", policy="default", le="0.2") == 1
    assert value(found, f"{paint}_count", policy="default") == 1


async def test_the_downlink_estimate_is_observed_once_per_report() -> None:
    rooms = RoomManager()
    viewer = Participant("view", nowhere)
    await rooms.join("r", viewer)
    peer = viewer.subscriber_peer()
    try:
        peer.report(0.0)  # no estimate yet: nothing observed
        peer.congestion.on_remb(1_200_000, 0.5)  # an estimate, from the client's REMB
        estimate = peer.congestion.estimate
        assert estimate is not None
        peer.report(1.0)
        found = scrape(rooms.metrics)
        name = "sfu_downlink_estimate_bits_per_second"
        assert value(found, f"{name}_count", policy="default") == 1
        assert value(found, f"{name}_sum", policy="default") == estimate
        assert value(found, f"{name}_bucket", policy="default", le="+Inf") == 1
        assert value(found, f"{name}_bucket", policy="default", le="100000.0") == 0
    finally:
        await viewer.close()


# -- /metrics on the real application ----------------------------------------------------------


async def test_metrics_need_an_admin_and_follow_a_room_joined(server: RunningServer) -> None:
    url = f"{server.url}/metrics"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            async with session.get(url, headers=headers) as r:
                assert r.status == 401
                body = await r.json()
                assert "admin" in body["errors"][0] and "sfu_" not in json.dumps(body)
        foreign = {**server.admin, "Origin": "https://evil.example"}
        async with session.get(url, headers=foreign) as r:
            assert r.status == 403
            assert "origin" in (await r.json())["errors"][0]
        async with session.get(url, headers=server.admin) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            before = samples(await r.text())
        assert value(before, "sfu_rooms", policy="default") is None
        assert value(before, "sfu_connections") == 0

        peer = SignalingPeer(server.ws_url, "ann")
        await peer.connect("demo")
        try:
            async with session.get(url, headers=server.admin) as r:
                joined = samples(await r.text())
            assert value(joined, "sfu_rooms", policy="default") == 1
            assert value(joined, "sfu_participants", policy="default") == 1
            assert value(joined, "sfu_connections") == 1
            server.app[METRICS_KEY].level_switch("default", "window")
            async with session.get(url, headers=server.admin) as r:
                switched = samples(await r.text())
            assert (
                value(switched, "sfu_layer_switches_total", policy="default", reason="window") == 1
            )
        finally:
            await peer.close()
        for _ in range(100):  # the server sees the WebSocket close
            if not server.app[ROOMS_KEY].rooms:
                break
            await asyncio.sleep(0.05)
        async with session.get(url, headers=server.admin) as r:
            after = samples(await r.text())
        assert value(after, "sfu_rooms", policy="default") is None
        assert value(after, "sfu_layer_switches_total", policy="default", reason="window") == 1
        assert value(after, "sfu_worker_info", worker="0", node="") == 1
        assert value(after, "sfu_event_loop_lag_seconds_bucket", le="+Inf") is not None
    assert server.app[METRICS_KEY] is server.app[ROOMS_KEY].metrics


# -- the Grafana dashboard --------------------------------------------------------------------


def exposed_names(text: str) -> set[str]:
    """Every series name the exposition declares (a counter's ``_total``, a histogram's
    ``_bucket``, ``_sum`` and ``_count``), with or without samples."""
    names = set()
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
        names |= {sample.name for sample in family.samples}
    return names


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, query) of every panel, rows' panels included."""
    out = []
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


async def test_the_dashboard_queries_only_metrics_the_server_exposes(
    server: RunningServer,
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/metrics", headers=server.admin) as r:
            exposed = exposed_names(await r.text())
    dashboard = json.loads(DASHBOARD.read_text())
    queries = panel_queries(dashboard)
    assert len(queries) >= 20
    used = set()
    for title, expr in queries:
        names = set(re.findall(r"\bsfu_[a-z0-9_]+", expr))
        assert names, (title, expr)
        assert names <= exposed, (title, sorted(names - exposed))
        used |= names
    # every figure the issue asks for is on the dashboard
    for name in (
        "sfu_rooms",
        "sfu_participants",
        "sfu_published_tracks",
        "sfu_subscribed_tracks",
        "sfu_forwarded_packets_total",
        "sfu_forwarded_bytes_total",
        "sfu_dropped_packets_total",
        "sfu_layer_switches_total",
        "sfu_keyframe_requests_sent_total",
        "sfu_nacks_received_total",
        "sfu_nacks_sent_total",
        "sfu_retransmitted_packets_total",
        "sfu_downlink_estimate_bits_per_second_bucket",
        "sfu_viewer_frames_decoded_total",
        "sfu_viewer_frames_dropped_total",
        "sfu_viewer_freezes_total",
        "sfu_viewer_switch_paint_seconds_bucket",
        "sfu_viewer_first_frame_seconds_bucket",
    ):
        assert name in used, name
    assert any("histogram_quantile" in expr for _, expr in queries)
    for variable in dashboard["templating"]["list"]:  # the filters' label values too
        query = variable.get("definition", "")
        assert set(re.findall(r"\bsfu_[a-z0-9_]+", query)) <= exposed, variable["name"]


# -- /stats ----------------------------------------------------------------------------------


async def test_stats_clamp_lost_packets_and_name_the_downlink_in_snake_case() -> None:
    participant = Participant("ann", nowhere)
    source, _ = make_source("video")
    participant.sources[source.track_id] = source
    for seq in range(1, 6):
        feed(source, seq, ts=seq * 3000, marker=True, now=seq * 0.03)
    for seq in range(1, 4):  # three duplicates: RFC 3550's cumulative loss goes to -3
        feed(source, seq, ts=seq * 3000, marker=True, now=0.2)
    assert source.stats.packets_lost == -3
    peer = participant.subscriber_peer()
    try:
        audio, _ = make_source("audio")
        downtrack, _ = attach(audio, ssrc=7000)
        bind(participant, audio, downtrack)
        peer.tick(10.0)
        downtrack.bytes_sent += 1000  # 1000 bytes of media, 500 resent, over 0.5 s
        downtrack.retransmitter.retransmitted_bytes += 500
        peer.tick(10.5)
        entry = _participant_stats(participant)
        (published,) = entry["published"]
        assert published["packets_lost"] == 0 and published["duplicate_packets"] == 3
        assert set(entry["downlink"]) == {"download_rate", "video_bitrate", "loss", "rtt"}
        assert set(peer.metrics()) == {"downloadRate", "videoBitrate", "loss", "rtt"}
        (subscribed,) = entry["subscribed"]
        assert subscribed["video_bitrate"] == 16_000 and subscribed["download_rate"] == 24_000
        assert subscribed["current_level"] is None and subscribed["levels"] == []
        assert subscribed["nacks_received"] == 0
        json.dumps(entry)  # JSON all through
    finally:
        await participant.close()

"""Issue 14: a subscriber that NACKs its whole history as fast as it can, against the real
server (aiohttp app, aiortc peers on loopback): what is retransmitted to it stays within its
budget (<= the media bytes forwarded to it), with or without transport-cc; the refusals are
counted in /stats; an honest subscriber in the room keeps its stream."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from support.captures import CAPTURES
from support.serving import RunningServer, running
from support.waiting import wait_until

from loadtest.capturefile import read_capture
from loadtest.nack_storm import NackStormer
from loadtest.peers import ReplayPublisher, SimSubscriber
from sfu.config import parse_settings
from sfu.signaling.server import create_app

#: NACK packets a second, each for the last 1024 sequence numbers of one stream
STORM_RATE = 400  # NACKs a second, under the RTCP datagram rate (500)
STORM_SECONDS = 2.5
#: before the storm: the budget's window (1 s) and two of its refills (the subscriber's
#: tick, 0.25 s), with room for a slow tick on a loaded machine; the retransmissions of the
#: storm may draw on the media forwarded in it
QUIET_SECONDS = 2.0


async def _attacker(server: RunningServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/stats", headers=server.admin) as reply:
            stats = await reply.json()
    for room in stats["rooms"].values():
        for participant in room["participants"]:
            if participant["name"] == "attacker":
                return dict(participant)
    return {}


async def _attacker_tracks(server: RunningServer) -> list[dict[str, Any]]:
    return list((await _attacker(server)).get("subscribed", []))


def _total(tracks: list[dict[str, Any]], key: str) -> int:
    return sum(int(t[key]) for t in tracks)


#: the NACK item caps lifted: the byte budget alone bounds what is retransmitted
NO_ITEM_CAPS = "rooms: {default: {nack_items_per_packet: 100000, nack_items_per_second: 1000000}}"


@pytest.mark.parametrize(
    ("transport_cc", "config"),
    [(False, ""), (False, NO_ITEM_CAPS), (True, NO_ITEM_CAPS)],
    ids=["no-transport-cc", "no-transport-cc-budget-alone", "transport-cc-budget-alone"],
)
async def test_a_nack_storm_is_bounded(transport_cc: bool, config: str) -> None:
    async with running(create_app(parse_settings(config))) as server:
        await _storm(server, transport_cc, item_caps=not config)


async def _storm(server: RunningServer, transport_cc: bool, item_caps: bool) -> None:
    publisher = ReplayPublisher(
        server.ws_url,
        "publisher",
        read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap"),
        read_capture(CAPTURES / "opus.sfucap"),
    )
    honest = SimSubscriber(server.ws_url, "honest")
    attacker = NackStormer(server.ws_url, "attacker", transport_cc=transport_cc)
    peers: list[Any] = [publisher, honest, attacker]
    try:
        for peer in peers:
            await peer.connect("storm")
        await publisher.publish()
        await wait_until(lambda: len(attacker._last) == 2 and honest.received > 100)
        subscriber = server.rooms.rooms["storm"].participants[attacker.participant_id].subscriber
        assert subscriber is not None
        for downtrack in subscriber.downtracks.values():
            # the attacker's answer decides: transport-cc or not
            assert (downtrack.congestion is not None) == transport_cc

        before = await _attacker_tracks(server)
        honest_start, quiet_start = honest.received, time.monotonic()
        await asyncio.sleep(QUIET_SECONDS)
        honest_quiet = (honest.received - honest_start) / (time.monotonic() - quiet_start)
        start = await _attacker_tracks(server)
        honest_start, storm_start = honest.received, time.monotonic()
        await attacker.storm(STORM_RATE, STORM_SECONDS)
        honest_storm = (honest.received - honest_start) / (time.monotonic() - storm_start)
        end = await _attacker_tracks(server)

        assert attacker.storm_packets >= STORM_RATE * STORM_SECONDS * 0.5  # it did storm
        rtx = _total(end, "retransmitted_bytes") - _total(start, "retransmitted_bytes")
        media = _total(end, "bytes_sent") - _total(before, "bytes_sent")
        storm_media = _total(end, "bytes_sent") - _total(start, "bytes_sent")
        # retransmission_ratio 1.0: RTX <= the media forwarded over the storm and the quiet
        # seconds before it (unbounded, this storm brought back many MB)
        assert rtx <= media + 1500, (rtx, media, storm_media)
        assert storm_media > 0

        refused: dict[str, int] = {}
        for track in end:
            for reason, count in track["retransmissions_refused"].items():
                refused[reason] = refused.get(reason, 0) + count
        assert _total(end, "retransmissions_skipped") == sum(refused.values())
        if item_caps:
            # the items beyond the caps were counted, not handled: far more than were
            assert refused["nack_rate"] > 100 * sum(
                n for reason, n in refused.items() if not reason.startswith("nack_")
            )
            assert refused["nack_cap"] > 0
        else:
            # the budget (with transport-cc, or the congestion allowance) refused most
            assert refused["nack_rate"] == refused["nack_cap"] == 0
            assert refused["rtx_budget"] + refused["congestion"] > 10 * _total(end, "retransmitted")
        # the storm is under the RTCP datagram rate (RTCP_PER_SECOND): each NACK was read
        transport = (await _attacker(server))["transport"]["subscribe"]
        assert transport["rtcp_rate_limited"] == transport["srtp_refused"] == 0, transport
        # the honest subscriber still gets its stream (~250 packets a second here)
        assert honest_quiet > 100
        assert honest_storm > 0.6 * honest_quiet, (honest_storm, honest_quiet)
    finally:
        for peer in peers:
            await peer.close()

"""``nack-storm``: what a subscriber that NACKs its whole history, as fast as it can, costs.

One :class:`~loadtest.peers.ReplayPublisher` (the VP9 ``L3T3_KEY`` capture and Opus), one
honest :class:`~loadtest.peers.SimSubscriber`, and one :class:`NackStormer`: a subscriber that
answers without transport-cc (``--transport-cc`` keeps it, and it then sends feedback as a
browser does) and, after a quiet phase, sends NACKs for the last 1024 sequence numbers of
every stream it receives, ``--rate`` RTCP packets a second, for ``--duration`` seconds.
The server runs as ``sfu serve`` in its own process.  Reported, per phase (quiet, storm): the
server's CPU share, the honest subscriber's packets a second, and what the attacker got:
media and RTX bytes (counted on arrival), and the server's refusals from ``/stats``.

::

    python -m loadtest nack-storm                    # without transport-cc
    python -m loadtest nack-storm --transport-cc     # with it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from sfu.adapters import aiortc_plane as plane
from sfu.rtp import rtcp
from sfu.rtp.packet import RtpError, parse_rtp

from .capturefile import read_capture
from .peers import ReplayPublisher, SimSubscriber
from .proc import cpu_seconds
from .scenario import AUDIO_CAPTURE, CAPTURES, VIDEO_CAPTURES
from .server import server_stats, start_server

#: sequence numbers NACKed in each storm packet: the whole of a down track's history
HISTORY = 1024


def strip_transport_cc(sdp: str) -> str:
    """``sdp`` without transport-wide-cc: neither its header extension nor its feedback."""
    lines = sdp.split("\r\n")
    kept = [
        line
        for line in lines
        if not (
            (line.startswith("a=extmap:") and "transport-wide-cc" in line)
            or (line.startswith("a=rtcp-fb:") and line.endswith(" transport-cc"))
        )
    ]
    return "\r\n".join(kept)


class NackStormer(SimSubscriber):
    """A subscriber that, once :meth:`storm` runs, NACKs the last :data:`HISTORY` sequence
    numbers of every stream it got, ``rate`` RTCP packets a second.  It decodes nothing: it
    counts what arrives (media and RTX bytes) and sends transport-wide-cc feedback when that
    was negotiated (``transport_cc``: else its answer strips it)."""

    def __init__(self, ws_url: str, name: str, transport_cc: bool = False) -> None:
        super().__init__(ws_url, name)
        self.transport_cc = transport_cc
        self.media_bytes = 0
        self.rtx_bytes = 0
        self.rtx_packets = 0
        self.storm_packets = 0
        self._last: dict[int, int] = {}  # media SSRC -> last sequence number

    async def answer_subscribe(self, pc: Any) -> None:
        await pc.setLocalDescription(await pc.createAnswer())
        sdp = pc.localDescription.sdp
        if not self.transport_cc:
            sdp = strip_transport_cc(sdp)
        await self.send({"type": "subscribe_answer", "sdp": sdp})

    def on_rtp(self, data: bytes, now: float) -> None:
        try:
            header = parse_rtp(data)
        except RtpError:
            return
        if self._twcc is not None and self._twcc_id is not None:
            value = header.extensions.get(self._twcc_id)
            if value is not None and len(value) == 2:
                self._twcc.on_packet((value[0] << 8) | value[1], now)
        if header.payload_type in self._rtx_apt:
            self.rtx_bytes += len(data)
            self.rtx_packets += 1
        else:
            self.media_bytes += len(data)
            self._last[header.ssrc] = header.sequence_number

    def storm_packet(self, ssrc: int) -> bytes | None:
        last = self._last.get(ssrc)
        if last is None:
            return None
        first = (last - HISTORY + 1) & 0xFFFF
        return rtcp.build_nack(
            self._rtcp_ssrc, ssrc, [(first + i) & 0xFFFF for i in range(HISTORY)]
        )

    async def storm(self, rate: float, duration: float) -> None:
        """NACK the whole history, ``rate`` packets a second (spread over the streams)."""
        start = time.monotonic()
        owed = 0.0
        last = built = start
        packets: list[bytes] = []
        while (now := time.monotonic()) - start < duration:
            owed += (now - last) * rate
            last = now
            if not packets or now - built > 0.05:  # the history moves on
                packets = [p for p in map(self.storm_packet, list(self._last)) if p is not None]
                built = now
            while packets and owed >= 1:
                for packet in packets:
                    self._send_rtcp(packet)
                    self.storm_packets += 1
                owed -= len(packets)
            await asyncio.sleep(0.005)


def _attacker_stats(stats: dict[str, Any], name: str) -> dict[str, Any]:
    for room in stats.get("rooms", {}).values():
        for participant in room["participants"]:
            if participant.get("name") == name:
                return dict(participant)
    return {}


async def _attack(
    ws_url: str, transport_cc: bool, rate: float, quiet: float, duration: float
) -> None:
    """The attacker's own process: prints ``ready``, ``storm`` and ``done`` lines (the parent
    samples the server at each) and then its counts as JSON.  Niced: receiving what the
    storm brings back costs it more than the server (aiortc in Python), and a real attacker
    need not read its socket at all; on a small machine it must not take the server's CPU."""
    os.nice(19)
    plane.install(plane.IceOptions(listen_addresses=["127.0.0.1"]))
    attacker = NackStormer(ws_url, "attacker", transport_cc=transport_cc)
    await attacker.connect("storm")
    try:
        while not attacker._last:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        print("ready", flush=True)
        await asyncio.sleep(quiet)
        print("storm", flush=True)
        await attacker.storm(rate, duration)
        print("done", flush=True)
        result = {
            "storm_packets": attacker.storm_packets,
            "media_bytes_received": attacker.media_bytes,
            "rtx_bytes_received": attacker.rtx_bytes,
        }
        print(json.dumps(result), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    finally:
        await asyncio.wait_for(attacker.close(), 5)


async def nack_storm(
    transport_cc: bool = False,
    rate: float = 1000.0,
    quiet: float = 4.0,
    duration: float = 6.0,
    extra_yaml: str = "",
    debug: bool = False,
) -> dict[str, Any]:
    """The server, the publisher and the honest subscriber here, the attacker in its own
    process (its receiving must not starve the honest subscriber's)."""
    plane.install(plane.IceOptions(listen_addresses=["127.0.0.1"]))
    server = await start_server(["127.0.0.1"], extra_yaml=extra_yaml)
    port, ws = server.port, server.ws_url
    publisher = ReplayPublisher(
        ws,
        "publisher",
        read_capture(CAPTURES / VIDEO_CAPTURES["VP9"]),
        read_capture(CAPTURES / AUDIO_CAPTURE),
    )
    honest = SimSubscriber(ws, "honest")
    child: asyncio.subprocess.Process | None = None
    try:
        for peer in (publisher, honest):
            await peer.connect("storm")
        await publisher.publish()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loadtest",
            "nack-attacker",
            ws,
            str(int(transport_cc)),
            str(rate),
            str(quiet),
            str(duration),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None

        async def wait_line(text: str) -> None:
            assert child is not None and child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            if line.decode().strip() != text:
                raise RuntimeError(f"the attacker said {line!r}, not {text!r}")

        def sample() -> dict[str, Any]:
            stats = server_stats(f"http://127.0.0.1:{port}", port)
            tracks = _attacker_stats(stats, "attacker").get("subscribed", [])
            return {
                "time": time.monotonic(),
                "cpu": cpu_seconds(server.pid),
                "honest": honest.received,
                "media": sum(t["bytes_sent"] for t in tracks),
                "rtx": sum(t.get("retransmitted_bytes", 0) for t in tracks),
                "rtx_packets": sum(t["retransmitted"] for t in tracks),
                "tracks": tracks,
            }

        def phase(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
            seconds = b["time"] - a["time"]
            return {
                "seconds": round(seconds, 2),
                "server_cpu_percent": round(100 * (b["cpu"] - a["cpu"]) / seconds, 1),
                "honest_packets_per_second": round((b["honest"] - a["honest"]) / seconds),
                "attacker_media_bytes": b["media"] - a["media"],
                "attacker_rtx_bytes": b["rtx"] - a["rtx"],
                "attacker_rtx_packets_per_second": round(
                    (b["rtx_packets"] - a["rtx_packets"]) / seconds
                ),
            }

        await wait_line("ready")
        s0 = sample()
        await wait_line("storm")
        s1 = sample()
        await wait_line("done")
        s2 = sample()
        counts = json.loads(await asyncio.wait_for(child.stdout.readline(), 10))
        if debug:
            print(json.dumps(server_stats(f"http://127.0.0.1:{port}", port), indent=1))
        assert child.stdin is not None
        child.stdin.write(b"bye\n")
        return {
            "transport_cc": transport_cc,
            "storm_rate": rate,
            "attacker": counts,
            "quiet": phase(s0, s1),
            "storm": phase(s1, s2),
            "attacker_tracks": [
                {k: v for k, v in t.items() if "retrans" in k or k in ("track_id", "bytes_sent")}
                for t in s2["tracks"]
            ],
        }
    finally:
        if child is not None:
            if child.returncode is None:
                child.terminate()
            await child.wait()
        for peer in (publisher, honest):
            try:
                await asyncio.wait_for(peer.close(), 5)
            except Exception:
                pass
        await server.aclose()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport-cc", action="store_true", help="the attacker keeps it")
    parser.add_argument("--rate", type=float, default=1000.0, help="NACK packets a second")
    parser.add_argument("--quiet", type=float, default=4.0, help="seconds before the storm")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of storm")


def command(args: argparse.Namespace) -> int:
    result = asyncio.run(
        nack_storm(args.transport_cc, rate=args.rate, quiet=args.quiet, duration=args.duration)
    )
    print(json.dumps(result, indent=1))
    return 0


def add_attacker_arguments(parser: argparse.ArgumentParser) -> None:
    """``python -m loadtest nack-attacker URL TRANSPORT_CC RATE QUIET DURATION``: the
    attacker's own process, which :func:`nack_storm` starts."""
    parser.add_argument("url", help="the server's WebSocket URL")
    parser.add_argument("transport_cc", type=int, choices=[0, 1])
    parser.add_argument("rate", type=float)
    parser.add_argument("quiet", type=float)
    parser.add_argument("duration", type=float)


def attacker_command(args: argparse.Namespace) -> int:
    asyncio.run(_attack(args.url, bool(args.transport_cc), args.rate, args.quiet, args.duration))
    return 0

"""``/stats``: counts for anyone, every room and participant for an admin."""

from __future__ import annotations

import os
import time
from typing import Any

from aiohttp import web

from .. import faults
from ..forwarding.source import MediaSource
from ..rooms.participant import Participant
from .access import is_admin, origin_allowed
from .http_media import SESSIONS_KEY
from .loop_lag import LOOP_LAG_KEY
from .state import CLUSTER_KEY, ROOMS_KEY, STATE_KEY


def public_stats(app: web.Application) -> dict[str, Any]:
    """What anyone may see: counts, nothing that names a room or a participant."""
    rooms = app[ROOMS_KEY]
    state = app[STATE_KEY]
    participants = [p for room in list(rooms.rooms.values()) for p in room.participants.values()]
    out = {
        "time": time.time(),
        "rooms": len(rooms.rooms),
        "participants": len(participants),
        "published_tracks": sum(len(p.sources) for p in participants),
        "connections": len(state.sessions),
        "faults": dict(faults.counts),
    }
    cluster = app.get(CLUSTER_KEY)
    if cluster is not None:
        out["worker"] = cluster.worker_id
    return out


async def stats(request: web.Request) -> web.Response:
    """Every room and participant for an admin, and the event loop's lateness
    (:mod:`.loop_lag`; with ``?only=loop_lag``, that alone); counts only for anyone else."""
    state = request.app[STATE_KEY]
    if not is_admin(request) or not origin_allowed(request, state.settings.http.allowed_origins):
        return web.json_response(public_stats(request.app))
    loop_lag = request.app[LOOP_LAG_KEY].snapshot(time.monotonic())
    if request.query.get("only") == "loop_lag":  # cheap enough to poll every second
        # the pid tells which process answered (several workers share the port)
        return web.json_response({"time": time.time(), "loop_lag": loop_lag, "pid": os.getpid()})
    rooms = request.app[ROOMS_KEY]
    out: dict[str, Any] = {
        "time": time.time(),
        "loop_lag": loop_lag,
        "faults": dict(faults.counts),
        "refused": dict(state.refused),
        "development": state.auth.development,
        "rooms": {},
    }
    cluster = request.app.get(CLUSTER_KEY)
    if cluster is not None:
        out["cluster"] = cluster.stats()
    sessions = request.app.get(SESSIONS_KEY)
    if sessions is not None:
        kinds = [session.kind for session in sessions.sessions.values()]
        out["http_sessions"] = {
            "whip": kinds.count("whip"),
            "whep": kinds.count("whep"),
            **sessions.counts,
        }
    for name, room in list(rooms.rooms.items()):
        participants = []
        for p in list(room.participants.values()):
            try:
                participants.append(_participant_stats(p))
            except Exception:  # a broken participant must not hide the others
                faults.record("stats", p.context)
                participants.append({"participant_id": p.id, "name": p.name, "error": True})
        out["rooms"][name] = {
            "policy": room.policy_name,
            "participants": participants,
            "quality": room.quality.stats(),
        }
    return web.json_response(out)


def _participant_stats(p: Participant) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "participant_id": p.id,
        "name": p.name,
        "identity": p.identity,
        "role": p.role,
        "published": [],
        "subscribed": [],
    }
    if p.publisher is not None:
        # what the publisher sent that was not forwarded: another SSRC than the ones it
        # negotiated, garbage, or (per track, "packets_dropped") a payload type not negotiated
        entry["ingress"] = {
            "unknown_ssrc": p.publisher.unknown_ssrc,
            "malformed_rtp": p.publisher.malformed_rtp,
            "malformed_rtcp": p.publisher.malformed_rtcp,
        }
    # per peer connection: datagrams SRTP refused, RTP and RTCP beyond the per-transport rates
    transports = {
        peer.role: {
            "srtp_refused": peer.raw.unprotect_failures,
            "rtp_rate_limited": peer.raw.rtp_rate_limited,
            "rtcp_rate_limited": peer.raw.rtcp_rate_limited,
            "send_errors": peer.raw.send_errors,
        }
        for peer in (p.publisher, p.subscriber)
        if peer is not None and peer.raw is not None
    }
    if transports:
        entry["transport"] = transports
    for source in p.sources.values():
        entry["published"].append(
            {
                "track_id": source.track_id,
                "kind": source.kind,
                "codec": source.params.codec,
                "packets_received": source.stats.packets_received,
                # RFC 3550's cumulative loss goes negative with duplicates: never below 0
                "packets_lost": max(0, source.stats.packets_lost),
                "packets_dropped": source.packets_dropped,
                "duplicate_packets": source.duplicate_packets,
                "keyframes_received": source.keyframes_received,
                "keyframe_requests_sent": source.keyframes.sent,
                "nacks_sent": source.nacks_sent,
                # packets whose NACKs were spent (lost for good), and the keyframe requests
                # that loss made
                "packets_unrecovered": source.nack.given_up if source.nack is not None else 0,
                "keyframe_requests_for_loss": source.keyframes_for_loss,
                "subscribers": len(source.downtracks),
            }
        )
    if p.subscriber is not None:
        entry["downlink"] = p.subscriber.downlink()
        entry["estimator"] = p.subscriber.estimator_state()
        now = time.monotonic()
        rates = p.subscriber.track_rates
        for track_id, dt in list(p.subscriber.downtracks.items()):
            sub = p.subscriber.subscriptions.get(track_id)
            target = sub.target if sub is not None else None
            allocated = sub.bandwidth if sub is not None else None
            current = sub.current_level() if sub is not None else None
            video_bitrate, download_rate = rates.get(track_id, (None, None))
            entry["subscribed"].append(
                {
                    "track_id": track_id,
                    **dt.stats(),
                    "current_level": None if current is None else list(current),
                    "levels": _levels(dt.source, now),
                    "video_bitrate": video_bitrate,
                    "download_rate": download_rate,
                    "target": None
                    if target is None
                    else [target.spatial, target.temporal, target.paused, target.reason],
                    "allocated": None
                    if allocated is None
                    else [allocated.spatial, allocated.temporal, allocated.paused],
                    "up_hold": sub.up_hold if sub is not None else None,
                    "level_bitrate": None if sub is None else sub.level_bitrate(now),
                    "viewer": None if sub is None else sub.viewer.stats(now),
                }
            )
    return entry


def _levels(source: object, now: float) -> list[dict[str, Any]]:
    """The source's measured levels (video; none for audio)."""
    if not isinstance(source, MediaSource):
        return []
    return [
        {
            "spatial": level.spatial,
            "temporal": level.temporal,
            "width": level.width,
            "height": level.height,
            "fps": round(level.fps, 2),
            "bitrate": level.bitrate,
        }
        for level in source.levels(now)
    ]

"""Screen share: a second video per participant, said to be a screen (``publish``
``sources``), announced with ``source: "screen"``, forwarded like a camera; stopped by the
publisher (its transceiver stopped, the publish connection renegotiated), it is
unpublished for everyone, here and on the room's other workers."""

from __future__ import annotations

from pathlib import Path

from aiortc import RTCRtpSender
from support.clients import SignalingClient, SmallVideoTrack
from support.cluster import two_nodes
from support.redis_server import RedisServer
from support.waiting import wait_until

from sfu.sdp.directions import reject_in_answer, sending_mids, stopped_mids

OFFER = "\r\n".join(
    [
        "v=0",
        "a=group:BUNDLE 0 1 2 3 4",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=sendonly",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=mid:1",
        "m=video 0 UDP/TLS/RTP/SAVPF 96",  # stopped
        "a=mid:2",
        "a=sendonly",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=mid:3",
        "a=inactive",  # its sender removed
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=recvonly",
        "a=mid:4",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "",
    ]
)


def test_which_m_lines_send() -> None:
    assert sending_mids(OFFER) == {"0", "1"}
    assert sending_mids("") == set()
    assert sending_mids("m=video 9 X\r\na=sendonly\r\n") == set()  # no mid: passed over


def test_a_stopped_m_line_is_rejected_in_the_answer() -> None:
    """JSEP: the answer to a stopped m-line has port 0 and is out of the BUNDLE group (a
    browser refuses an answer that keeps it there, its publish connection then stuck)."""
    assert stopped_mids(OFFER) == {"2"}
    answer = "\r\n".join(
        [
            "v=0",
            "a=group:BUNDLE 0 1 2",
            "m=audio 41000 UDP/TLS/RTP/SAVPF 111",
            "a=mid:0",
            "m=video 41000 UDP/TLS/RTP/SAVPF 96",
            "a=mid:1",
            "m=video 41000 UDP/TLS/RTP/SAVPF 96",
            "a=mid:2",
            "a=inactive",
            "",
        ]
    )
    rejected = reject_in_answer(answer, {"2"}).split("\r\n")
    assert "a=group:BUNDLE 0 1" in rejected
    assert rejected[6] == "m=video 0 UDP/TLS/RTP/SAVPF 96"
    assert rejected[2] == "m=audio 41000 UDP/TLS/RTP/SAVPF 111"
    assert reject_in_answer(answer, set()) == answer


def video_tracks(client: SignalingClient) -> dict[str, str]:
    """track id -> source of the videos announced to ``client`` and not gone since."""
    tracks: dict[str, str] = {}
    for message in client.messages:
        announced = []
        if message["type"] == "joined":
            announced = message["tracks"]
        elif message["type"] == "track_published":
            announced = [message["track"]]
        elif message["type"] == "track_unpublished":
            tracks.pop(message["track_id"], None)
        for track in announced:
            if track["kind"] == "video":
                tracks[track["track_id"]] = track["source"]
    return tracks


async def test_a_shared_screen_is_forwarded_then_unpublished_everywhere(
    redis: RedisServer, tmp_path: Path
) -> None:
    async with two_nodes(redis, tmp_path) as servers:
        presenter = SignalingClient(servers[0].ws_url, "presenter")
        here = SignalingClient(servers[0].ws_url, "viewer-east")
        there = SignalingClient(servers[1].ws_url, "viewer-west")
        try:
            await presenter.connect()
            await presenter.join("share")
            await presenter.publish()
            for viewer in (here, there):
                await viewer.connect()
                await viewer.join("share")
            for viewer in (here, there):
                await wait_until(lambda v=viewer: v.has_media(publishers=1), timeout=30)

            # the share: a second video on the publish connection, said to be a screen
            pc = presenter.publish_pc
            assert pc is not None
            screen = pc.addTransceiver(SmallVideoTrack(), direction="sendonly")
            screen.setCodecPreferences(
                [
                    c
                    for c in RTCRtpSender.getCapabilities("video").codecs
                    if c.mimeType.lower() in ("video/vp8", "video/rtx")
                ]
            )
            await pc.setLocalDescription(await pc.createOffer())
            assert screen.mid is not None
            await presenter.offer_publish(pc, sources={screen.mid: "screen"})
            screen_id = f"{presenter.participant_id}:{screen.mid}"
            for viewer in (here, there):
                await wait_until(lambda v=viewer: video_tracks(v).get(screen_id) == "screen", 15)
                assert sorted(video_tracks(viewer).values()) == ["camera", "screen"]
                await wait_until(
                    lambda v=viewer: (
                        len(v.streams("video")) == 2
                        and all(len(p) > 30 for p in v.streams("video").values())
                    ),
                    timeout=30,
                )

            # stopped: unpublished for everyone; the camera goes on.  (aiortc offers a stopped
            # transceiver as it was: its sender is taken off instead, an ``inactive`` m-line,
            # as a browser's removeTrack does; a browser's stop() is port 0, see above)
            screen.direction = "inactive"
            await presenter.offer_publish(pc)
            for viewer in (here, there):
                await viewer.wait_for(
                    lambda m: m["type"] == "track_unpublished" and m["track_id"] == screen_id,
                    timeout=10,
                )
                assert list(video_tracks(viewer).values()) == ["camera"]
                camera = max(viewer.streams("video").values(), key=len)
                count = len(camera)
                await wait_until(lambda c=camera, n=count: len(c) > n + 20, timeout=10)
            assert not any(m["type"] == "error" for m in presenter.messages)
        finally:
            for client in (presenter, here, there):
                await client.close()

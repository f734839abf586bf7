"""MediaSource + DownTrack, fed exact packets, with lists standing in for transports."""

from support.forwarding import attach, feed, make_source

from sfu.rtp import extensions as ext
from sfu.rtp import rtcp
from sfu.rtp.packet import build_rtp, parse_rtp, wrap_rtx


def test_each_subscriber_gets_its_own_rewritten_stream() -> None:
    source, upstream = make_source()
    a, sent_a = attach(source, 5000, pt=100)
    b, sent_b = attach(source, 6000, pt=110)
    for i in range(3):
        feed(
            source,
            40000 + i,
            ts=3000 * i,
            marker=(i == 2),
            extensions=[(4, b"1"), (1, b"\x85")],
        )
    pa = [parse_rtp(p) for p in sent_a]
    pb = [parse_rtp(p) for p in sent_b]
    assert [p.ssrc for p in pa] == [5000] * 3 and [p.ssrc for p in pb] == [6000] * 3
    assert {p.payload_type for p in pa} == {100} and {p.payload_type for p in pb} == {110}
    assert [(p.sequence_number - pa[0].sequence_number) & 0xFFFF for p in pa] == [0, 1, 2]
    assert [(p.timestamp - pa[0].timestamp) & 0xFFFFFFFF for p in pa] == [0, 3000, 6000]
    assert [p.marker for p in pa] == [False, False, True]
    # extensions are translated to the subscriber ids: audio level copied,
    # abs-send-time stamped by us, the publisher's mid not forwarded
    ids = ext.SUBSCRIBER_EXTENSION_IDS
    assert pa[0].extensions[ids[ext.AUDIO_LEVEL]] == b"\x85"
    assert len(pa[0].extensions[ids[ext.ABS_SEND_TIME]]) == 3
    assert ids[ext.MID] not in pa[0].extensions
    assert sent_a[0][pa[0].payload_offset :] == b"\x10\x00frame"
    # a keyframe was requested when the video subscribers attached: once, coalesced
    plis = [p for d in upstream for p in rtcp.parse_rtcp(d) if isinstance(p, rtcp.Pli)]
    assert len(plis) == 1 and plis[0].media_ssrc == 1111


def test_upstream_loss_is_nacked_and_rtx_fills_the_gap_for_subscribers() -> None:
    source, upstream = make_source()
    _, sent = attach(source, 5000)
    feed(source, 10)
    feed(source, 12)
    nacks = [p for d in upstream for p in rtcp.parse_rtcp(d) if isinstance(p, rtcp.Nack)]
    assert nacks and nacks[0].lost == [11] and nacks[0].media_ssrc == 1111
    original = build_rtp(
        payload_type=96, sequence_number=11, timestamp=0, ssrc=1111, payload=b"late"
    )
    rtx = wrap_rtx(original, payload_type=97, sequence_number=1, ssrc=2222)
    source.on_rtp(rtx, parse_rtp(rtx), 0.1)
    seqs = [parse_rtp(p).sequence_number for p in sent]
    assert seqs[2] == (seqs[0] + 1) & 0xFFFF  # the recovered packet fills its slot
    assert sent[2].endswith(b"late")


def test_a_packet_lost_for_good_upstream_asks_the_publisher_for_a_keyframe() -> None:
    source, upstream = make_source()  # no subscriber: no keyframe asked for on its behalf

    def plis() -> int:
        return sum(isinstance(p, rtcp.Pli) for d in upstream for p in rtcp.parse_rtcp(d))

    asked = plis()
    feed(source, 10, now=1.0)
    feed(source, 12, now=1.0)  # 11 is missing: NACKed, retried ...
    now = 1.0
    for _ in range(4):
        now += 0.06
        source.tick(now)
    assert plis() == asked and source.keyframes_for_loss == 0  # ... still hoped for
    now += 0.06
    source.tick(now)  # its retries spent: lost for good, the decoders need a keyframe
    assert source.nack is not None and source.nack.given_up == 1
    assert plis() == asked + 1 and source.keyframes_for_loss == 1
    now += 0.06
    source.tick(now)  # once per loss
    assert plis() == asked + 1
    # a gap too long to NACK at all is lost for good at once
    feed(source, 12 + 600, now=now)
    now += 1.0
    source.tick(now)
    assert source.keyframes_for_loss == 2 and plis() == asked + 2


def test_a_packet_received_twice_is_forwarded_once() -> None:
    """Chromium probes its uplink with RTX copies of packets that arrived (and the SFU may
    get a retransmission it asked for after the original after all).  Forwarded again under
    the same sequence number, the copy fails the subscriber's SRTP replay check and is
    reported lost in its transport feedback, which the estimator takes for congestion."""
    source, _ = make_source()
    _, sent = attach(source, 5000)
    for seq in (100, 101, 102):
        feed(source, seq)
    original = build_rtp(payload_type=96, sequence_number=101, timestamp=0, ssrc=1111, payload=b"x")
    for rtx_seq in (1, 2):  # an RTX probe, then the same packet once more
        rtx = wrap_rtx(original, payload_type=97, sequence_number=rtx_seq, ssrc=2222)
        source.on_rtp(rtx, parse_rtp(rtx), 0.1)
    feed(source, 102)  # a plain duplicate
    assert len(sent) == 3 and source.duplicate_packets == 3
    feed(source, 104)
    feed(source, 103)  # late, but the first copy: the subscriber needs it
    seqs = [parse_rtp(p).sequence_number for p in sent]
    assert len(seqs) == 5 and len(set(seqs)) == 5 and source.duplicate_packets == 3
    # sequence numbers wrap (here in jumps, as after long losses): 100 is new again
    for seq in (30000, 60000, 100, 101):
        feed(source, seq)
    assert source.duplicate_packets == 3 and len(sent) == 9


def test_subscriber_nack_is_answered_with_rtx_and_pli_reaches_the_publisher() -> None:
    source, upstream = make_source()
    dt, sent = attach(source, 5000, pt=100)
    upstream.clear()
    for i in range(5):
        feed(source, 100 + i, payload=b"\x90\x00" + bytes([i]))
    lost_seq = parse_rtp(sent[2]).sequence_number
    dt.handle_rtcp(rtcp.Nack(sender_ssrc=1, media_ssrc=5000, lost=[lost_seq, 1]), now=5.0)
    assert len(sent) == 6
    rtx = parse_rtp(sent[5])
    assert rtx.ssrc == 5001 and rtx.payload_type == 101
    assert sent[5][rtx.payload_offset : rtx.payload_offset + 2] == lost_seq.to_bytes(2, "big")
    assert sent[5].endswith(b"\x90\x00\x02")
    dt.handle_rtcp(rtcp.Pli(1, 5000), now=5.0)
    dt.handle_rtcp(rtcp.Pli(1, 5000), now=5.1)  # coalesced
    plis = [p for d in upstream for p in rtcp.parse_rtcp(d) if isinstance(p, rtcp.Pli)]
    assert len(plis) == 1


def test_foreign_ssrc_and_payload_type_are_dropped() -> None:
    source, _ = make_source()
    _, sent = attach(source, 5000)
    data = build_rtp(payload_type=96, sequence_number=1, timestamp=0, ssrc=3333, payload=b"x")
    source.on_rtp(data, parse_rtp(data), 0)
    data = build_rtp(payload_type=35, sequence_number=1, timestamp=0, ssrc=1111, payload=b"x")
    source.on_rtp(data, parse_rtp(data), 0)
    assert sent == [] and source.packets_dropped == 2


def test_sender_report_follows_the_publisher_clock_with_our_offset() -> None:
    source, _ = make_source()
    dt, sent = attach(source, 5000)
    assert dt.sender_report(0.0) is None  # nothing to map yet
    feed(source, 1, ts=90000)
    out_ts = parse_rtp(sent[0]).timestamp
    source.on_sender_report(
        rtcp.SenderReport(
            1111, ntp_timestamp=5 << 32, rtp_timestamp=90000, packet_count=1, octet_count=1
        ),
        now=10.0,
    )
    sr = dt.sender_report(10.5)
    assert sr is not None
    assert sr.ntp_timestamp == (5 << 32) + (1 << 31)
    assert sr.rtp_timestamp == (out_ts + 45000) & 0xFFFFFFFF
    assert sr.packet_count == 1

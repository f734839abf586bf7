"""The media link between workers (cascading): SRTP both ways on real UDP, only from the
workers it was told about, byte-identical packets out."""

from __future__ import annotations

import asyncio

from support.captures import CAPTURES
from support.waiting import wait_until

from loadtest.capturefile import read_capture
from sfu.adapters.relay_link import RelayEndpoint, new_key
from sfu.rtp import rtcp


def _endpoint(log: list[tuple[str, str, bytes]]) -> RelayEndpoint:
    return RelayEndpoint(
        on_rtp=lambda w, p, now: log.append(("rtp", w, p)),
        on_rtcp=lambda w, p, now: log.append(("rtcp", w, p)),
    )


async def test_packets_cross_the_link_unchanged_and_only_from_a_known_worker() -> None:
    got_a: list[tuple[str, str, bytes]] = []
    got_b: list[tuple[str, str, bytes]] = []
    got_c: list[tuple[str, str, bytes]] = []
    a, b, c = _endpoint(got_a), _endpoint(got_b), _endpoint(got_c)
    try:
        address_a = await a.open("127.0.0.1")
        address_b = await b.open("127.0.0.1")
        address_c = await c.open("127.0.0.1")
        b.add_peer("a", address_a, a.key)
        a.add_peer("b", address_b, b.key)
        packets = [data for _, data in read_capture(CAPTURES / "vp9_L3T3_KEY.sfucap").packets[:200]]
        for i, packet in enumerate(packets):
            a.send_rtp(packet, [address_b, address_c])  # c was told nothing of a
            if i % 20 == 19:
                await asyncio.sleep(0.01)  # paced, as media is
        pli = rtcp.build_pli(1234, 5678)
        b.send_rtcp(pli, address_a)
        await wait_until(lambda: len(got_b) == len(packets) and len(got_a) == 1, timeout=5)
        assert [p for kind, w, p in got_b] == packets
        assert {(kind, w) for kind, w, _ in got_b} == {("rtp", "a")}
        assert got_a == [("rtcp", "b", pli)]
        await asyncio.sleep(0.1)
        assert got_c == [] and c.refused == len(packets)

        # c learns of a, but with the wrong key: nothing authenticates
        c.add_peer("a", address_a, new_key())
        fresh = packets[0][:2] + (65000).to_bytes(2, "big") + packets[0][4:]
        sent = a.send_rtp(fresh, [address_c])
        assert sent is not None
        await wait_until(lambda: c.refused == len(packets) + 1, timeout=5)
        assert got_c == []
        # the same datagram again is a replay for b; a lost one resent (a NACK's answer) is not
        b_refused = b.refused
        first = a.send_rtp(packets[0][:2] + (65001).to_bytes(2, "big") + packets[0][4:], [])
        second = a.send_rtp(packets[0][:2] + (65002).to_bytes(2, "big") + packets[0][4:], [])
        assert first is not None and second is not None
        a.resend(second, [address_b])
        a.resend(second, [address_b])
        await wait_until(lambda: b.refused == b_refused + 1, timeout=5)
        a.resend(first, [address_b])  # older, never received: taken
        await wait_until(lambda: len(got_b) == len(packets) + 2, timeout=5)
        assert [p for _, _, p in got_b[-2:]] == [
            packets[0][:2] + (n).to_bytes(2, "big") + packets[0][4:] for n in (65002, 65001)
        ]
        # once a peer is removed, its packets are refused
        b.remove_peer("a")
        assert a.send_rtp(packets[0][:2] + (65003).to_bytes(2, "big") + packets[0][4:], [address_b])
        await wait_until(lambda: b.refused == b_refused + 2, timeout=5)
    finally:
        for endpoint in (a, b, c):
            endpoint.close()


def test_the_cascade_cost_bench_measures_a_real_hop() -> None:
    """`python -m loadtest cascade-cost`, small: every packet crosses the link and the
    figures it prints are measured, not assumed."""
    from loadtest.cascade_cost import run

    result = run(loops=1, subscribers=2, runs=1)
    assert result["relayed"] == result["packets"] > 1000
    assert result["lost_on_the_link"] == 0
    assert result["hop_us_per_packet"] > 0 and result["forward_us_per_packet"] > 0
    assert result["ratio"] == result["hop_us_per_packet"] / result["forward_us_per_packet"]

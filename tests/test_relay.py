"""The lossy loopback relay the uplink-loss tests steer publishers through."""

from __future__ import annotations

import asyncio
import socket

from loadtest.relay import LossyRelay, _rewrite_candidates


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def receive_all(
    sock: socket.socket, wait: float = 0.3
) -> list[tuple[bytes, tuple[str, int]]]:
    await asyncio.sleep(wait)
    out = []
    while True:
        try:
            data, addr = sock.recvfrom(2048)
        except BlockingIOError:
            return out
        out.append((data, (addr[0], addr[1])))


async def send_through(
    client: socket.socket, relay: LossyRelay, server: socket.socket, count: int
) -> list[tuple[bytes, tuple[str, int]]]:
    """Send ``count`` small RTP-like datagrams in batches, draining the server socket (its
    receive buffer holds only a few hundred)."""
    got = []
    for i in range(count):
        client.sendto(b"\x80" + i.to_bytes(2, "big"), relay.address)
        if i % 50 == 49:
            got += await receive_all(server, 0.02)
    return got + await receive_all(server)


async def test_forwards_both_ways_drops_the_uplink_share_and_blocks() -> None:
    server, client = udp(), udp()
    relay = LossyRelay(server.getsockname(), uplink_loss=0.1, seed=3)
    relay.start()
    try:
        got = await send_through(client, relay, server, 1000)
        assert relay.counters.uplink == 1000
        assert len(got) == 1000 - relay.counters.uplink_dropped
        assert 0.07 < relay.counters.uplink_loss < 0.13
        assert relay.counters.uplink_media_dropped == relay.counters.uplink_dropped
        # one socket towards the server per client: replies go back to that client
        assert len({addr for _, addr in got}) == 1
        server.sendto(b"reply", got[0][1])
        back = await receive_all(client)
        assert back == [(b"reply", relay.address)]
        assert relay.counters.downlink == 1
        # the same seed loses the same packets
        again = LossyRelay(server.getsockname(), uplink_loss=0.1, seed=3)
        again.start()
        try:
            second = await send_through(client, again, server, 1000)
            assert [d for d, _ in second] == [d for d, _ in got]
        finally:
            again.close()
        # a blocked client is cut off both ways
        relay.blocked.add(client.getsockname())
        client.sendto(b"\x80cut", relay.address)
        server.sendto(b"reply", got[0][1])
        assert await receive_all(server) == [] and await receive_all(client) == []
        assert relay.counters.blocked == 2
    finally:
        relay.close()
        server.close()
        client.close()


def test_candidates_are_pointed_at_the_relay_or_removed() -> None:
    sdp = (
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
        "a=candidate:2 1 udp 2130706431 192.0.2.2 40001 typ host\r\n"
        "a=end-of-candidates\r\n"
    )
    rewritten, first = _rewrite_candidates(sdp, ("127.0.0.1", 5555))
    assert first == ("127.0.0.1", 40000)
    assert rewritten.count("127.0.0.1 5555 typ host") == 2
    assert "a=end-of-candidates" in rewritten
    stripped, _ = _rewrite_candidates(sdp, None)
    assert "a=candidate" not in stripped and "end-of-candidates" not in stripped

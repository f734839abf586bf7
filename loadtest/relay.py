"""A loopback UDP relay that loses packets: impairment without netem (which this kernel's tc
does not have).

A client (e.g. a publishing browser) is steered to :attr:`LossyRelay.address` instead of the
SFU's ICE candidate; the relay gives each client address its own socket towards the SFU, the
way a NAT would, so the SFU sees one peer-reflexive address per client socket and answers
through the relay.  Datagrams from clients to the SFU ("uplink") are dropped at random with
probability :attr:`LossyRelay.uplink_loss` (a seeded generator: runs are repeatable);
everything else is forwarded.  Client addresses in :attr:`LossyRelay.blocked` are cut off
both ways, like a network the client just left.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RelayCounters:
    """Datagrams seen, by direction; ``uplink_media`` and ``uplink_media_dropped`` count
    SRTP/SRTCP only (RFC 7983: first byte 128-191), without STUN and DTLS."""

    uplink: int = 0
    uplink_dropped: int = 0
    uplink_media: int = 0
    uplink_media_dropped: int = 0
    downlink: int = 0
    blocked: int = 0
    clients: set[tuple[str, int]] = field(default_factory=set)

    @property
    def uplink_loss(self) -> float:
        return self.uplink_dropped / self.uplink if self.uplink else 0.0


class LossyRelay:
    def __init__(
        self,
        upstream: tuple[str, int] | None = None,
        *,
        uplink_loss: float = 0.0,
        seed: int = 1,
        host: str = "127.0.0.1",
    ) -> None:
        #: where the uplink goes (the SFU's candidate); may be set once known
        self.upstream = upstream
        self.uplink_loss = uplink_loss
        self.blocked: set[tuple[str, int]] = set()
        self.counters = RelayCounters()
        self._random = random.Random(seed)
        self._host = host
        self._front: socket.socket | None = None
        self._towards: dict[tuple[str, int], socket.socket] = {}  # client -> its SFU socket
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._front is not None, "start() the relay first"
        host, port = self._front.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        """Bind the client-facing socket (in the running event loop); returns its address."""
        self._loop = asyncio.get_running_loop()
        self._front = self._socket()
        self._loop.add_reader(self._front.fileno(), self._on_front)
        return self.address

    def close(self) -> None:
        for sock in [self._front, *self._towards.values()]:
            if sock is not None:
                if self._loop is not None:
                    self._loop.remove_reader(sock.fileno())
                sock.close()
        self._front = None
        self._towards.clear()

    def reset_counters(self) -> None:
        self.counters = RelayCounters(clients=set(self._towards))

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((self._host, 0))
        sock.setblocking(False)
        return sock

    def _on_front(self) -> None:
        assert self._front is not None
        while True:
            try:
                data, addr = self._front.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            client = (str(addr[0]), int(addr[1]))
            counters = self.counters
            if client in self.blocked:
                counters.blocked += 1
                continue
            if self.upstream is None:
                continue
            counters.uplink += 1
            media = bool(data) and 127 < data[0] < 192
            counters.uplink_media += media
            if self.uplink_loss > 0 and self._random.random() < self.uplink_loss:
                counters.uplink_dropped += 1
                counters.uplink_media_dropped += media
                continue
            sock = self._towards.get(client)
            if sock is None:
                sock = self._socket()
                self._towards[client] = sock
                counters.clients.add(client)
                assert self._loop is not None
                self._loop.add_reader(sock.fileno(), self._on_upstream, client, sock)
            try:
                sock.sendto(data, self.upstream)
            except OSError:
                pass

    def _on_upstream(self, client: tuple[str, int], sock: socket.socket) -> None:
        while True:
            try:
                data, _ = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if client in self.blocked:
                self.counters.blocked += 1
                continue
            self.counters.downlink += 1
            if self._front is not None:
                try:
                    self._front.sendto(data, client)
                except OSError:
                    pass


def _rewrite_candidates(
    sdp: str, address: tuple[str, int] | None
) -> tuple[str, tuple[str, int] | None]:
    """Candidates of ``sdp`` pointed at ``address`` (or removed if None); returns the SDP and
    the first candidate's own (host, port)."""
    lines = sdp.split("\r\n")
    out = []
    first: tuple[str, int] | None = None
    for line in lines:
        if line.startswith("a=candidate:"):
            parts = line.split(" ")
            if first is None and len(parts) > 5 and parts[2].lower() == "udp":
                first = (parts[4], int(parts[5]))
            if address is None:
                continue
            parts[4], parts[5] = address[0], str(address[1])
            line = " ".join(parts)
        elif line == "a=end-of-candidates" and address is None:
            continue
        out.append(line)
    return "\r\n".join(out), first


async def route_publisher_through(page: Any, relay: LossyRelay) -> None:
    """Steer the publish connection of the page's SfuClient through ``relay`` (call before
    the page loads): the ``publish_answer`` candidates become the relay's address (and the
    relay's upstream the SFU's candidate), and the ``publish`` offers lose their candidates,
    so the SFU learns the client only as the relay's peer-reflexive address."""

    def handler(route: Any) -> None:
        server = route.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if isinstance(message, str):
                data = json.loads(message)
                if data.get("type") == "publish" and isinstance(data.get("sdp"), str):
                    data["sdp"], _ = _rewrite_candidates(data["sdp"], None)
                    message = json.dumps(data)
            server.send(message)

        def from_server(message: str | bytes) -> None:
            if isinstance(message, str):
                data = json.loads(message)
                if data.get("type") == "publish_answer":
                    data["sdp"], upstream = _rewrite_candidates(data["sdp"], relay.address)
                    if upstream is not None:
                        relay.upstream = upstream
                    message = json.dumps(data)
            route.send(message)

        route.on_message(from_page)
        server.on_message(from_server)

    await page.route_web_socket(lambda url: url.endswith("/ws"), handler)

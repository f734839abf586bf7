"""Media between the workers of a cluster (cascading, docs/scaling.md): one UDP socket per
worker, SRTP on every datagram.

Each worker protects what it sends with a key of its own (``key``, made at start and given
to the other workers through the cluster), once per packet whatever the number of workers
it goes to; it accepts datagrams only from the addresses of the workers it was told about,
and decrypts each with that worker's key (SRTP authenticates: a forged or replayed packet
is dropped and counted).  RTP goes from a publisher's worker to the workers with
subscribers; RTCP (keyframe requests, NACKs, the publisher's sender reports) both ways.
RTP and RTCP share the socket, told apart as RFC 5761 does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

logger = logging.getLogger(__name__)

#: SRTP master key and salt (AES_CM_128_HMAC_SHA1_80)
KEY_LENGTH = 30
#: bytes of socket buffer asked for each way (the kernel caps it at net.core.[rw]mem_max)
SOCKET_BUFFER = 4 * 1024 * 1024
#: packets a received index may lag the newest one and still be taken (SRTP replay window)
REPLAY_WINDOW = 1024
#: the largest datagram accepted (a relayed RTP packet and its SRTP tag)
MAX_DATAGRAM = 1500

Address = tuple[str, int]
#: (the sending worker, the packet decrypted, now)
PacketHandler = Callable[[str, bytes, float], None]


def new_key() -> bytes:
    return secrets.token_bytes(KEY_LENGTH)


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 section 4: RTCP packet types 192-223 in the second byte."""
    return len(data) >= 2 and 192 <= data[1] <= 223


class RelayEndpoint(asyncio.DatagramProtocol):
    def __init__(self, on_rtp: PacketHandler, on_rtcp: PacketHandler) -> None:
        self.key = new_key()
        policy = Policy(key=self.key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)
        # the same packet goes to several workers: protected once, sent to each
        policy.allow_repeat_tx = True
        self._tx = Session(policy)
        self._on_rtp = on_rtp
        self._on_rtcp = on_rtcp
        #: the workers datagrams are accepted from: address -> (worker, its inbound session)
        self._peers: dict[Address, tuple[str, Session]] = {}
        self._addresses: dict[str, Address] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.address: Address | None = None
        #: datagrams from an address that is no worker's, or that did not authenticate
        self.refused = 0
        self.failed = 0
        self.sent = 0
        self.received = 0

    async def open(self, host: str, port: int = 0) -> Address:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a keyframe of every relayed track at once must not overflow
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
                except OSError:
                    pass
        sockname = transport.get_extra_info("sockname")
        self.address = (str(sockname[0]), int(sockname[1]))
        return self.address

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # -- peers --------------------------------------------------------------------------
    def add_peer(self, worker: str, address: Address, key: bytes) -> None:
        """Accept datagrams from ``worker`` at ``address``, protected with ``key``."""
        known = self._addresses.get(worker)
        if known == address and known in self._peers:
            return
        self.remove_peer(worker)
        policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND)
        policy.window_size = REPLAY_WINDOW  # a packet resent for a NACK is late, not replayed
        session = Session(policy)
        self._peers[address] = (worker, session)
        self._addresses[worker] = address

    def remove_peer(self, worker: str) -> None:
        address = self._addresses.pop(worker, None)
        if address is not None:
            self._peers.pop(address, None)

    def peer_address(self, worker: str) -> Address | None:
        return self._addresses.get(worker)

    # -- sending ------------------------------------------------------------------------
    def send_rtp(self, packet: bytes, addresses: Iterable[Address]) -> bytes | None:
        """Protect ``packet`` once and send it to each address; the datagram sent (kept by
        the caller to answer a NACK with :meth:`resend`: SRTP protects an index once)."""
        try:
            protected: bytes = self._tx.protect(packet)
        except SrtpError:
            self.failed += 1
            return None
        self.resend(protected, addresses)
        return protected

    def resend(self, datagram: bytes, addresses: Iterable[Address]) -> None:
        transport = self.transport
        if transport is None:
            return
        for address in addresses:
            transport.sendto(datagram, address)
            self.sent += 1

    def send_rtcp(self, packet: bytes, address: Address) -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            transport.sendto(self._tx.protect_rtcp(packet), address)
            self.sent += 1
        except SrtpError:
            self.failed += 1

    # -- receiving ----------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        peer = self._peers.get((addr[0], addr[1]))
        if peer is None or len(data) > MAX_DATAGRAM:
            self.refused += 1
            return
        worker, session = peer
        now = time.monotonic()
        try:
            if is_rtcp(data):
                packet = session.unprotect_rtcp(data)
                self.received += 1
                self._on_rtcp(worker, packet, now)
            else:
                packet = session.unprotect(data)
                self.received += 1
                self._on_rtp(worker, packet, now)
        except SrtpError:
            self.refused += 1
        except Exception:  # a handler's fault: this datagram only
            self.failed += 1
            logger.exception("relay: handling a datagram from %s", worker)

    def error_received(self, exc: Exception) -> None:
        logger.debug("relay: %s", exc)

"""ICE host candidates: which addresses and UDP ports aioice gathers on, and which address
is announced (aioice leaves 127.0.0.1 out, and knows no port range).

:func:`configure_gathering` replaces ``aioice.ice.Connection.get_component_candidates``; the
:class:`HostCandidates` it installs, with its :class:`IceOptions`, is the only state, held
by aioice's ``Connection`` class next to the method it replaces.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field

import aioice.candidate
import aioice.ice

logger = logging.getLogger(__name__)


@dataclass
class IceOptions:
    #: addresses to gather host candidates on (127.0.0.1 included if listed)
    listen_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    #: address written in the candidates instead of the bound one, for the listen addresses
    #: of its family (1:1 NAT: the public address of the host)
    announced_address: str | None = None
    #: inclusive UDP port range for the host candidates, or None for any port
    port_range: tuple[int, int] | None = None


class HostCandidates:
    """Host candidates on the addresses and ports of ``options``, for every connection."""

    def __init__(self, options: IceOptions) -> None:
        self.options = options
        #: where the next search of the port range starts (ports rotate over connections)
        self._next_port = 0

    def bind_udp(self, address: str) -> socket.socket:
        """A UDP socket bound to ``address`` within the configured port range."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        port_range = self.options.port_range
        if port_range is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((address, 0))
            return sock
        low, high = port_range
        count = high - low + 1
        for i in range(count):
            port = low + (self._next_port + i) % count
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((address, port))
            except OSError:
                sock.close()
                continue
            self._next_port = (port - low + 1) % count
            return sock
        raise OSError(f"no free UDP port in {low}-{high} on {address}")

    def announced(self, bound: str) -> str:
        """The address a candidate bound to ``bound`` gives: the announced address when one
        is set and of the same family (a 1:1 NAT maps one family), else ``bound``."""
        announced = self.options.announced_address
        if announced is None or (":" in announced) != (":" in bound):
            return bound
        return announced

    async def gather(
        self, connection: aioice.ice.Connection, component: int
    ) -> list[aioice.Candidate]:
        """Host candidates only (the SFU has a reachable address and uses no STUN/TURN), on
        the configured addresses, ports and announced address."""
        loop = asyncio.get_running_loop()
        candidates = []
        for address in self.options.listen_addresses:
            try:
                sock = self.bind_udp(address)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: aioice.ice.StunProtocol(connection), sock=sock
                )
            except OSError as exc:
                logger.warning("ICE: cannot bind to %s: %s", address, exc)
                continue
            bound = protocol.transport.get_extra_info("sockname")
            host = self.announced(bound[0])
            protocol.local_candidate = aioice.Candidate(
                foundation=aioice.candidate.candidate_foundation("host", "udp", bound[0]),
                component=component,
                transport="udp",
                priority=aioice.candidate.candidate_priority(component, "host"),
                host=host,
                port=bound[1],
                type="host",
            )
            connection._protocols.append(protocol)
            candidates.append(protocol.local_candidate)
        return candidates


async def _get_component_candidates(
    self: aioice.ice.Connection, component: int, addresses: list[str], timeout: int = 5
) -> list[aioice.Candidate]:
    """Replaces ``aioice.ice.Connection.get_component_candidates``."""
    host_candidates: HostCandidates = self._sfu_host_candidates  # type: ignore[attr-defined]
    return await host_candidates.gather(self, component)


def configure_gathering(options: IceOptions) -> None:
    """Gather host candidates as ``options`` say, from the next connection on."""
    connection = aioice.ice.Connection
    current: HostCandidates | None = getattr(connection, "_sfu_host_candidates", None)
    if current is not None:
        current.options = options  # the port rotation goes on
    else:
        connection._sfu_host_candidates = HostCandidates(options)  # type: ignore[attr-defined]
    connection.get_component_candidates = _get_component_candidates  # type: ignore[method-assign]


def gathering_options() -> IceOptions | None:
    """The options host candidates are gathered with, or None before
    :func:`configure_gathering`."""
    current: HostCandidates | None = getattr(aioice.ice.Connection, "_sfu_host_candidates", None)
    return current.options if current is not None else None

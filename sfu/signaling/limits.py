"""Bounds on signaling (sans-IO): message rates weighted by cost, per connection and per
client address, and connections per address."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

#: what a message costs, in units of the rate limits (a message not listed costs 1): work
#: that a client starts (an offer: SDP parsing, ICE gathering; a join: a participant) costs
#: more than a ping or a window size.  A subscribe answer costs 1: the server's own offers
#: bound how many there can be.
MESSAGE_COSTS: dict[str, int] = {"join": 5, "publish": 10, "restart_ice": 10}


def message_cost(message_type: str) -> int:
    return MESSAGE_COSTS.get(message_type, 1)


class TokenBucket:
    """``rate`` units per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def _refill(self, now: float) -> None:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` units if there are that many."""
        self._refill(now)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def full(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= self.burst

    def reconfigure(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = min(self._tokens, float(burst))


class AddressLimits:
    """Connections open at once and work (message cost units) per client address."""

    #: addresses remembered at most; beyond, the idle ones are forgotten
    MAX_ADDRESSES = 100_000

    def __init__(self, max_connections: int, rate: float, burst: float) -> None:
        self.max_connections = max_connections
        self.rate = rate
        self.burst = burst
        self.connections: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self.refused_connections = 0
        self.refused_messages = 0

    def reconfigure(self, max_connections: int, rate: float, burst: float) -> None:
        self.max_connections, self.rate, self.burst = max_connections, rate, burst
        for bucket in self._buckets.values():
            bucket.reconfigure(rate, burst)

    def connect(self, address: str) -> bool:
        """A connection from ``address`` opens (True) or is refused (False)."""
        count = self.connections.get(address, 0)
        if count >= self.max_connections:
            self.refused_connections += 1
            return False
        self.connections[address] = count + 1
        return True

    def disconnect(self, address: str) -> None:
        count = self.connections.get(address, 0) - 1
        if count > 0:
            self.connections[address] = count
        else:
            self.connections.pop(address, None)

    def allow(self, address: str, now: float, cost: float) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.MAX_ADDRESSES:
                self._forget_idle(now)
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst)
        if bucket.allow(now, cost):
            return True
        self.refused_messages += 1
        return False

    def _forget_idle(self, now: float) -> None:
        """Drop the buckets that are full again (forgetting them loses nothing) of
        addresses with no connection."""
        for address, bucket in list(self._buckets.items()):
            if address not in self.connections and bucket.full(now):
                del self._buckets[address]


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address: the TCP peer's, or, when the peer is a trusted proxy, the
    rightmost address of ``X-Forwarded-For`` that is not a trusted proxy itself."""
    address = peer or "unknown"
    if not forwarded_for or address not in trusted:
        return address
    for hop in reversed(forwarded_for.split(",")[-16:]):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address  # a malformed header: the proxy's own address
        if hop not in trusted:
            return hop
    return address

"""Bounds on a client's SDP, checked before aiortc parses or answers anything (sans-IO).

aiortc answers every m-line of an offer (a 64 KB offer of 465 m-lines got a 451 KB answer)
and checks every candidate it is given: each remote UDP candidate costs the server a STUN
transaction of up to 7 requests over ~64 s per local address (300 candidates to silent
addresses: 2100 requests), an mDNS one (``x.local``) a multicast query first.  The counts
are made on the text, split into lines as aiortc splits it: refusing an SDP costs one pass
over at most ``max_bytes`` of it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the protocol's own ceiling on an SDP in a message (``messages.MAX_SDP``)
PROTOCOL_MAX_SDP = 64 * 1024


class SdpLimitError(ValueError):
    """An SDP over one of the bounds; ``str()`` names the bound and the values."""


@dataclass(frozen=True)
class SdpLimits:
    #: bytes (UTF-8) of a publish offer; a subscribe answer may also be as large as twice
    #: the offer it answers (it mirrors the server's m-lines, which grow with the room)
    max_bytes: int = 32 * 1024
    #: m-lines of a publish offer (a subscribe answer has exactly those of the offer)
    max_m_lines: int = 16
    #: distinct UDP ICE candidates (address, port) one connection is given, over all of its
    #: m-lines and all of its offers/answers until ICE restarts (the server checks each
    #: one; TCP candidates cost nothing: it has no TCP candidate to pair them with)
    max_candidates: int = 32


#: a UDP candidate as aioice tells them apart: address, port
Candidate = tuple[str, ...]


@dataclass(frozen=True)
class SdpCounts:
    size: int
    m_lines: int
    candidates: frozenset[Candidate]
    #: the first ``a=ice-ufrag`` (we bundle: one ICE transport), or None
    ice_ufrag: str | None = None


def count(sdp: str) -> SdpCounts:
    """Size, m-lines and distinct candidates of ``sdp`` (no other parsing)."""
    m_lines = 0
    candidates: set[Candidate] = set()
    ufrag = None
    for line in sdp.splitlines():  # as aiortc.sdp.grouplines splits
        if line.startswith("m="):
            m_lines += 1
        elif line.startswith("a=ice-ufrag:") and ufrag is None:
            ufrag = line[len("a=ice-ufrag:") :].strip()
        elif line.startswith("a=candidate:"):
            bits = line[len("a=candidate:") :].split()
            # foundation component transport priority address port typ type ...
            if len(bits) < 6:
                candidates.add((line,))  # malformed: aiortc refuses it, count it anyway
            elif bits[2].lower() == "udp":
                candidates.add((bits[4].lower(), bits[5]))
    size = len(sdp.encode("utf-8", "surrogatepass"))
    return SdpCounts(size, m_lines, frozenset(candidates), ufrag)


def check_sdp(
    sdp: str,
    limits: SdpLimits,
    what: str = "offer",
    *,
    max_bytes: int | None = None,
    max_m_lines: int | None = None,
) -> SdpCounts:
    """Raise :class:`SdpLimitError` if ``sdp`` (an "offer" or "answer", for the message) is
    over a bound; ``max_bytes``/``max_m_lines`` replace the limits' own.  Its candidates
    are checked alone: see :func:`check_candidates` for those given before."""
    size_cap = limits.max_bytes if max_bytes is None else max_bytes
    size = len(sdp.encode("utf-8", "surrogatepass"))
    if size > size_cap:
        # refused before its lines are even split
        source = "limits.max_sdp_bytes" + ("" if max_bytes is None else " or twice the offer")
        raise SdpLimitError(f"the {what} is {size} bytes (at most {size_cap}: {source})")
    counts = count(sdp)
    m_cap = limits.max_m_lines if max_m_lines is None else max_m_lines
    if counts.m_lines > m_cap:
        source = "limits.max_m_lines" if max_m_lines is None else "as many as the offer"
        raise SdpLimitError(f"the {what} has {counts.m_lines} m-lines (at most {m_cap}: {source})")
    check_candidates(counts, limits, what)
    return counts


def check_candidates(
    counts: SdpCounts,
    limits: SdpLimits,
    what: str = "offer",
    known: frozenset[Candidate] | set[Candidate] = frozenset(),
) -> None:
    """Raise :class:`SdpLimitError` if the candidates of an SDP, with the ``known`` ones its
    connection was given before (by earlier offers or answers), are too many."""
    total = len(counts.candidates | known)
    if total > limits.max_candidates:
        before = f" (with {len(known)} given before: {total})" if known else ""
        raise SdpLimitError(
            f"the {what} has {len(counts.candidates)} distinct UDP ICE candidates{before}; at most "
            f"{limits.max_candidates} per connection (limits.max_candidates)"
        )

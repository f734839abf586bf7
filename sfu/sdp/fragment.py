"""SDP fragments for trickle ICE and ICE restarts (``application/trickle-ice-sdpfrag``,
RFC 8840 section 9, as WHIP (RFC 9725 section 4.3) and WHEP carry them in HTTP PATCH).

Sans-IO: text in, a :class:`IceFragment` out (or :class:`FragmentError` saying what is
wrong), and the fragment a server answers an ICE restart with.  Bounded: a fragment is at
most ``MAX_FRAGMENT`` bytes and ``MAX_CANDIDATES`` candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_FRAGMENT = 16 * 1024
MAX_CANDIDATES = 64
#: RFC 8839: ice-ufrag 4-256 ice-chars, ice-pwd 22-256
_ICE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")


class FragmentError(ValueError):
    pass


@dataclass
class MediaCandidates:
    mid: str | None
    #: the candidate attributes' values (what follows ``a=candidate:``)
    candidates: list[str] = field(default_factory=list)
    end_of_candidates: bool = False


@dataclass
class IceFragment:
    ufrag: str | None = None
    pwd: str | None = None
    media: list[MediaCandidates] = field(default_factory=list)
    #: ``a=end-of-candidates`` at session level
    end_of_candidates: bool = False

    @property
    def candidates(self) -> list[tuple[str | None, str]]:
        """Every candidate with the mid of its media section."""
        return [(m.mid, c) for m in self.media for c in m.candidates]

    @property
    def complete(self) -> bool:
        return self.end_of_candidates or any(m.end_of_candidates for m in self.media)


def _ice_chars(value: str, name: str, low: int) -> str:
    if not low <= len(value) <= 256 or not set(value) <= _ICE_CHARS:
        raise FragmentError(f"{name} must be {low}-256 ICE characters")
    return value


def parse_fragment(text: str) -> IceFragment:
    if len(text.encode()) > MAX_FRAGMENT:
        raise FragmentError(f"the fragment is over {MAX_FRAGMENT} bytes")
    fragment = IceFragment()
    current: MediaCandidates | None = None
    count = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise FragmentError(f"not an SDP line: {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            current = MediaCandidates(mid=None)
            fragment.media.append(current)
            continue
        if kind != "a":
            continue  # RFC 8840 allows other lines; none matter here
        name, _, rest = value.partition(":")
        if name == "ice-ufrag":
            fragment.ufrag = _ice_chars(rest, "ice-ufrag", 4)
        elif name == "ice-pwd":
            fragment.pwd = _ice_chars(rest, "ice-pwd", 22)
        elif name == "mid":
            if current is None:
                raise FragmentError("a=mid before any m= line")
            current.mid = rest[:64]
        elif name == "candidate":
            if current is None:
                current = MediaCandidates(mid=None)
                fragment.media.append(current)
            count += 1
            if count > MAX_CANDIDATES:
                raise FragmentError(f"more than {MAX_CANDIDATES} candidates")
            if not rest or len(rest) > 512:
                raise FragmentError("an empty or oversized candidate")
            current.candidates.append(rest)
        elif name == "end-of-candidates":
            if current is None:
                fragment.end_of_candidates = True
            else:
                current.end_of_candidates = True
    if (fragment.ufrag is None) != (fragment.pwd is None):
        raise FragmentError("ice-ufrag and ice-pwd come together")
    return fragment


def restart_answer(ufrag: str, pwd: str, mid: str | None, candidates: list[str]) -> str:
    """The fragment answering an ICE restart: the new local credentials and candidates (of
    the bundle's first media section, as the client's was)."""
    lines = [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}"]
    lines.append("m=audio 9 UDP/TLS/RTP/SAVPF 0")  # RFC 8840 9.2: kind and port are dummies
    if mid is not None:
        lines.append(f"a=mid:{mid}")
    lines += [f"a=candidate:{c}" for c in candidates]
    lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"

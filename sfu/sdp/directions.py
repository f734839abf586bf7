"""Which m-lines of an SDP send media (sans-IO): a publisher that stops a track (its
transceiver stopped: port 0; or its sender gone: ``inactive``/``recvonly``) says so in its
next offer, and the server unpublishes the track."""

from __future__ import annotations

#: the directions in which the offerer sends
_SENDING = ("sendrecv", "sendonly")
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


def sending_mids(sdp: str) -> set[str]:
    """The mids of the m-lines whose offerer sends: port not 0, direction ``sendrecv``
    (the default) or ``sendonly``.  An m-line without a mid is passed over."""
    sending: set[str] = set()
    mid: str | None = None
    port_zero = False
    direction = "sendrecv"

    def close() -> None:
        if mid is not None and not port_zero and direction in _SENDING:
            sending.add(mid)

    in_media = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            if in_media:
                close()
            in_media = True
            fields = line[2:].split()
            port_zero = len(fields) > 1 and fields[1] == "0"
            mid, direction = None, "sendrecv"
        elif not in_media:
            continue
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line[2:].strip() in _DIRECTIONS and line.startswith("a="):
            direction = line[2:].strip()
    if in_media:
        close()
    return sending


def stopped_mids(sdp: str) -> set[str]:
    """The mids of the m-lines the offerer stopped (port 0)."""
    stopped: set[str] = set()
    port_zero = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            fields = line[2:].split()
            port_zero = len(fields) > 1 and fields[1] == "0"
        elif line.startswith("a=mid:") and port_zero:
            stopped.add(line[6:].strip())
    return stopped


def reject_in_answer(answer: str, mids: set[str]) -> str:
    """``answer`` with the m-lines of ``mids`` rejected as an answer to a stopped m-line must
    be (RFC 8843 7.3.3, JSEP 5.3.1): port 0, and out of the BUNDLE group.  A browser refuses
    an answer whose bundle group holds a mid its offer took out."""
    if not mids:
        return answer
    lines = answer.split("\r\n")
    # the m-line each line belongs to, and its mid
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        section = lines[start:end]
        mid = next((x[6:].strip() for x in section if x.startswith("a=mid:")), None)
        if mid in mids:
            fields = lines[start].split(" ")
            if len(fields) > 1:
                fields[1] = "0"
                lines[start] = " ".join(fields)
    for i, line in enumerate(lines):
        if line.startswith("a=group:BUNDLE"):
            kept = [x for x in line.split(" ")[1:] if x not in mids]
            lines[i] = " ".join(["a=group:BUNDLE", *kept])
    return "\r\n".join(lines)

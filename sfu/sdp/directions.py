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

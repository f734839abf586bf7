"""Outbound RTP in batches: what one turn of the event loop forwards to a transport is
protected and sent together, at the end of the turn.

Per packet, sending cost the server more than anything else: one ``sendto`` through the
asyncio transport, one call into pylibsrtp's binding, each with its Python overhead, and one
system call per datagram (a fifth of the server's CPU at N = 32, docs/performance.md).  A
packet from a publisher fans out to every subscriber, and the datagrams the loop reads in
one turn (libuv reads up to 32 at a time from a socket) are several per subscriber under
load.  So :meth:`RawTransport.send_rtp` only appends to the transport's batch;
:data:`BATCHES` flushes every batch once, at the start of the next turn (``call_soon``),
through :func:`send_batch`:

* **native** (``_sendmmsg.c``, built by ``pip install .`` when a C compiler is there):
  protect each packet with ``srtp_protect`` called on the session's context from C, then
  ``sendmmsg`` them all on the pair's socket, in one call from Python;
* **pure Python** (chosen when the module is not built, or with ``SFU_NATIVE_SEND=0``):
  the same, one :class:`~.srtp.Protector` call and one ``sendto`` per packet.

Both give the same datagrams, byte for byte (``tests/test_send_batch.py``, on the committed
captures), and refuse the same: a packet libsrtp refuses or longer than pylibsrtp protects
(1356 bytes: its 1500-byte buffer less libsrtp's trailer) is dropped and counted in
``send_errors``.  Order within a transport is kept; nothing is queued beyond the turn: a
socket whose buffer is full drops the rest of its batch (counted too).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from ... import faults
from .srtp import _BINDING, Protector

try:
    from . import _sendmmsg  # type: ignore[attr-defined]
except ImportError:  # not built (no C compiler at install): the pure-Python path
    _sendmmsg = None

#: whether batches go through the native module (``SFU_NATIVE_SEND=0``: pure Python)
NATIVE: bool = _sendmmsg is not None and os.environ.get("SFU_NATIVE_SEND", "1") != "0"

#: the address of libsrtp's ``srtp_protect`` in pylibsrtp's binding (0: not reachable)
SRTP_PROTECT: int = (
    int(_BINDING.ffi.cast("uintptr_t", _BINDING.ffi.addressof(_BINDING.lib, "srtp_protect")))
    if _BINDING is not None
    else 0
)


def send_batch(
    transport: asyncio.DatagramTransport,
    fd: int,
    remote: tuple[str, int],
    protector: Protector,
    packets: list[bytes],
    native: bool,
) -> tuple[int, int, int]:
    """Protect ``packets`` in order and send them to ``remote``: on the socket ``fd`` (native)
    or through ``transport`` (the same socket's asyncio transport); returns (sent, bytes,
    errors)."""
    if native and fd >= 0 and protector.fast and SRTP_PROTECT:
        result: tuple[int, int, int] = _sendmmsg.send_batch(
            fd, remote[0], remote[1], SRTP_PROTECT, protector.address, packets
        )
        return result
    sent = octets = errors = 0
    for packet in packets:
        try:
            protected = protector(packet)
        except Exception:  # libsrtp refused it (or too long): dropped, counted
            errors += 1
            continue
        try:
            transport.sendto(protected, remote)
        except OSError:  # a full socket buffer: the rest of the batch is dropped
            errors += len(packets) - sent - errors
            break
        sent += 1
        octets += len(protected)
    return sent, octets, errors


#: seconds a batch may wait for more while the loop's turn goes on: a turn may read 32
#: datagrams from a publisher's socket, each fanned out to every subscriber; past this, the
#: receive path flushes between two of them (:meth:`Batches.due`), so that the first ones
#: are not held back until the last is forwarded (latency grows with the fan-out otherwise)
MAX_HOLD = 0.004


class Batches:
    """The transports with packets waiting, flushed once per turn of the event loop, or
    sooner when the turn is long (:data:`MAX_HOLD`)."""

    def __init__(self) -> None:
        self._waiting: list[Callable[[], None]] = []
        self._scheduled = False
        #: the loop last flushed on (asyncio.get_running_loop() costs a getpid() system call
        #: each time: once per turn, that was 0.5 % of the server's CPU)
        self._loop: asyncio.AbstractEventLoop | None = None
        #: when the receive path first saw packets waiting (0: not yet, this batch)
        self._opened = 0.0

    def add(self, flush: Callable[[], None]) -> None:
        """``flush`` (a transport's) is called at the start of the loop's next turn (at
        once when no loop runs)."""
        self._waiting.append(flush)
        if self._scheduled:
            return
        loop = self._loop
        if loop is None or not loop.is_running():
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
        self._scheduled = True
        loop.call_soon(self.flush)

    def due(self, now: float) -> None:
        """Called by the receive path after each packet it handled (``now``: when it
        arrived): flushes what has waited :data:`MAX_HOLD` already."""
        if not self._waiting:
            return
        opened = self._opened
        if not opened:
            self._opened = now
        elif now - opened >= MAX_HOLD:
            self.flush()

    def flush(self) -> None:
        self._scheduled = False
        self._opened = 0.0
        waiting, self._waiting = self._waiting, []
        for flush in waiting:
            try:
                flush()
            except Exception:  # one transport's failure must not keep the others' packets
                faults.record("send", repr(flush))


BATCHES = Batches()

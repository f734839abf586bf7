"""SRTP protection of every packet sent, through pylibsrtp's own binding.

``pylibsrtp.Session.protect`` allocates a C ``int`` for the length on every call and checks
its argument's type: for a packet server, about a third of the call's cost beside the cipher
itself (docs/performance.md).  :class:`Protector` calls ``srtp_protect`` on
the session's own context and buffer with one preallocated length, and returns the same
bytes.  It reads three private attributes of the session (``_srtp``, ``_cdata``,
``_buffer``): the pylibsrtp version is pinned (:data:`PYLIBSRTP_VERSION`) and the contract
test fails loudly when they change; without them the public ``protect`` is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pylibsrtp

from .pin import PYLIBSRTP_VERSION

__all__ = ["PYLIBSRTP_VERSION", "Protector"]
#: room kept in the buffer for the authentication tag (libsrtp's SRTP_MAX_TRAILER_LEN)
MAX_TRAILER = 16 + 128


def _binding() -> Any:
    try:
        from pylibsrtp import _binding
    except ImportError:  # pragma: no cover - a pylibsrtp without its cffi module
        return None
    return _binding


_BINDING = _binding()


class Protector:
    """``protect(packet) -> bytes`` for one SRTP session (outbound RTP)."""

    __slots__ = ("session", "fast", "_context", "_cdata", "_buffer", "_length", "_limit", "_call")

    def __init__(self, session: pylibsrtp.Session) -> None:
        #: kept referenced: the C context below lives as long as the session
        self.session = session
        context = getattr(session, "_srtp", None)
        cdata = getattr(session, "_cdata", None)
        buffer = getattr(session, "_buffer", None)
        #: whether the binding is called directly (else ``session.protect``)
        self.fast = bool(_BINDING is not None and context and cdata is not None and buffer)
        self._call: Callable[..., int] | None = None
        self._context: Any = None
        self._cdata: Any = None
        self._buffer: Any = None
        self._length: Any = None
        self._limit = 0
        if self.fast:
            self._context = context[0]  # type: ignore[index]
            self._cdata = cdata
            self._buffer = buffer
            self._length = _BINDING.ffi.new("int *")
            self._limit = len(buffer) - MAX_TRAILER  # type: ignore[arg-type]
            self._call = _BINDING.lib.srtp_protect

    def __call__(self, packet: bytes) -> bytes:
        call = self._call
        if call is None:
            return self.session.protect(packet)
        size = len(packet)
        if size > self._limit:
            raise ValueError("packet is too long")
        length = self._length
        length[0] = size
        buffer = self._buffer
        buffer[0:size] = packet
        status = call(self._context, self._cdata, length)
        if status:
            raise pylibsrtp.Error(f"srtp_protect failed ({status})")
        out: bytes = buffer[0 : length[0]]
        return out

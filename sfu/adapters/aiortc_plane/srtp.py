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

__all__ = ["PYLIBSRTP_VERSION", "Protector", "Unprotector"]
#: room kept in the buffer for the authentication tag (libsrtp's SRTP_MAX_TRAILER_LEN)
MAX_TRAILER = 16 + 128


def _binding() -> Any:
    try:
        from pylibsrtp import _binding
    except ImportError:  # pragma: no cover - a pylibsrtp without its cffi module
        return None
    return _binding


_BINDING = _binding()


class _SessionCalls:
    """A pylibsrtp session's C context and buffer, called through the binding with one
    preallocated length (``fast``), or None of that when the internals are not there."""

    __slots__ = (
        "session",
        "fast",
        "address",
        "_context",
        "_cdata",
        "_buffer",
        "_length",
        "_size",
    )

    def __init__(self, session: pylibsrtp.Session) -> None:
        #: kept referenced: the C context below lives as long as the session
        self.session = session
        context = getattr(session, "_srtp", None)
        cdata = getattr(session, "_cdata", None)
        buffer = getattr(session, "_buffer", None)
        #: whether the binding is called directly (else the session's public methods)
        self.fast = bool(_BINDING is not None and context and cdata is not None and buffer)
        self._context: Any = context[0] if self.fast else None  # type: ignore[index]
        self._cdata: Any = cdata
        self._buffer: Any = buffer
        self._length: Any = _BINDING.ffi.new("int *") if self.fast else None
        self._size = len(buffer) if self.fast else 0  # type: ignore[arg-type]
        #: the address of the session's ``srtp_t``, for the native batch send (0: none)
        self.address = int(_BINDING.ffi.cast("uintptr_t", self._context)) if self.fast else 0

    def _process(self, call: Callable[..., int], packet: bytes, limit: int) -> bytes:
        """``call`` (``srtp_protect``, ``srtp_unprotect``, ...) on ``packet`` in the
        session's buffer: what ``pylibsrtp.Session`` does, without a new C ``int``."""
        size = len(packet)
        if size > limit:
            raise ValueError("packet is too long")
        length = self._length
        length[0] = size
        buffer = self._buffer
        buffer[0:size] = packet
        status = call(self._context, self._cdata, length)
        if status:
            raise pylibsrtp.Error(f"libsrtp error {status}")
        out: bytes = buffer[0 : length[0]]
        return out


class Protector(_SessionCalls):
    """``protect(packet) -> bytes`` for one SRTP session (outbound RTP)."""

    __slots__ = ()

    def __call__(self, packet: bytes) -> bytes:
        if not self.fast:
            return self.session.protect(packet)
        return self._process(_BINDING.lib.srtp_protect, packet, self._size - MAX_TRAILER)


class Unprotector(_SessionCalls):
    """``rtp(packet)``/``rtcp(packet) -> bytes``: SRTP/SRTCP unprotect for one session
    (inbound), as :class:`Protector` protects."""

    __slots__ = ()

    def rtp(self, packet: bytes) -> bytes:
        """``Session.unprotect(packet)``"""
        if not self.fast:
            return self.session.unprotect(packet)
        return self._process(_BINDING.lib.srtp_unprotect, packet, self._size)

    def rtcp(self, packet: bytes) -> bytes:
        """``Session.unprotect_rtcp(packet)``"""
        if not self.fast:
            return self.session.unprotect_rtcp(packet)
        return self._process(_BINDING.lib.srtp_unprotect_rtcp, packet, self._size)

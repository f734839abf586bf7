"""aiortc as a forwarding plane.

This is the ONLY package of the project that reaches into aiortc's and aioice's internals.
aiortc is built as an endpoint: it decodes what it receives and encodes what it sends.  An
SFU needs its ICE, DTLS, SRTP and SDP machinery but none of its media pipeline, so this
package:

* registers the codecs and header extensions an SFU negotiates (VP9 profile 0, AV1, the
  dependency descriptor, ...) in aiortc's module-level tables, widens the payload types it
  accepts as "dynamic" to 35-63 (Chromium offers AV1 as 45 with RTX 46), and makes codec
  matching look at the VP9/AV1 profile (:mod:`.codecs`);
* receives the SRTP and SRTCP of a transport the SFU owns (one with a sink) in aioice's
  datagram callback: ``StunProtocol.datagram_received`` is wrapped so that a datagram of
  first byte 128-191 (RFC 7983) is unprotected there (through pylibsrtp's binding, with no
  per-call allocation) and handed, raw and synchronously, to the sink: no STUN parse, no
  queue, no wake-up of the DTLS transport's task, and none of aiortc's parser, jitter
  buffer and decoder; RTCP datagrams are bounded per transport before SRTCP (:mod:`.receive`).
  What is not SRTP/SRTCP of such a transport (STUN, DTLS, media before the handshake ends)
  takes aiortc's path, whose ``RTCDtlsTransport._handle_rtp_data``/``_handle_rtcp_data``
  are hooked to reach the sink too (:mod:`.transport`);
* replaces, per transceiver, ``RTCRtpReceiver.receive`` and ``RTCRtpSender.send`` so that no
  decoder thread or encoder loop is started: the negotiated parameters are handed to the SFU
  (:mod:`.peerconnection`);
* sends RTP/RTCP synchronously: SRTP protect, then ``sendto`` on the nominated ICE pair's
  socket, with no task or await in between (:class:`RawTransport`); RTP is protected through
  pylibsrtp's binding with no per-call allocation (:mod:`.srtp`);
* controls which host candidates aioice gathers (aioice leaves 127.0.0.1 out), on which
  UDP ports, and which address is announced (:mod:`.candidates`);
* notes when the remote last sent an authenticated ICE connectivity check, a sign of life
  that does not depend on media, and sends one itself to a remote that has gone quiet (the
  SFU's peer timeout uses both) (:mod:`.transport`);
* restarts ICE in place (:class:`IceRestarter`, :mod:`.restart`), which aiortc does not do:
  new local credentials, a fresh check list on the same sockets, while DTLS, SRTP, the
  transceivers and the sink stay as they are;
* checks and completes session descriptions where aiortc's SDP reader and writer fall short
  (:mod:`.descriptions`).

It is pinned to aiortc 1.16.0 and aioice 0.13.0, and pylibsrtp 1.0.0 (:mod:`.pin`):
:func:`install` refuses other versions, and ``tests/test_aiortc_plane.py`` and
``tests/test_receive_path.py`` fail loudly if the internals it relies on move.

:func:`install` is the one entry point, and :class:`IceOptions` the only configuration: the
patches are made once, and the options are held by the gathering they configure (no module
globals).  The rest of the project imports from this package, not from its modules.
"""

from __future__ import annotations

from .candidates import IceOptions, configure_gathering, gathering_options
from .codecs import (
    DYNAMIC_PAYLOAD_TYPES,
    VIDEO_FEEDBACK,
    codec_preferences,
    drop_transport_cc,
    register_codecs,
    restrict_answer_codecs,
    video_codec_preferences,
)
from .descriptions import check_publish_offer, check_subscribe_answer, munge_sdp
from .peerconnection import (
    SendBinding,
    add_send_transceiver,
    close_peer_connection,
    create_peer_connection,
    dtls_transport_of,
    stream_parameters_from_receive,
    take_over_receiver,
    take_over_sender,
)
from .pin import AIOICE_VERSION, AIORTC_VERSION, PYLIBSRTP_VERSION, check_versions
from .restart import ICE_RESTART_TIMEOUT, IceRestarter, RemoteIce, remote_ice
from .transport import RawTransport, TransportSink, hook_transport, hooked
from .trickle import LocalIce, add_candidates, remote_ufrag
from .trickle import restart as restart_from_fragment

__all__ = [
    "AIOICE_VERSION",
    "AIORTC_VERSION",
    "PYLIBSRTP_VERSION",
    "DYNAMIC_PAYLOAD_TYPES",
    "ICE_RESTART_TIMEOUT",
    "VIDEO_FEEDBACK",
    "IceOptions",
    "IceRestarter",
    "LocalIce",
    "RawTransport",
    "RemoteIce",
    "SendBinding",
    "TransportSink",
    "add_candidates",
    "add_send_transceiver",
    "check_publish_offer",
    "check_subscribe_answer",
    "check_versions",
    "close_peer_connection",
    "codec_preferences",
    "create_peer_connection",
    "drop_transport_cc",
    "dtls_transport_of",
    "gathering_options",
    "install",
    "munge_sdp",
    "remote_ice",
    "remote_ufrag",
    "restart_from_fragment",
    "restrict_answer_codecs",
    "stream_parameters_from_receive",
    "take_over_receiver",
    "take_over_sender",
    "video_codec_preferences",
]


def install(ice: IceOptions | None = None) -> None:
    """Turn aiortc into a forwarding plane (idempotent).

    The first call checks the pinned versions and patches aiortc and aioice (codec tables,
    transport hooks, candidate gathering); later calls patch nothing again.  ``ice`` applies
    from the next peer connection on; without it the options in force stay (the defaults of
    :class:`IceOptions` at the first call).
    """
    if not hooked():
        check_versions()
        register_codecs()
        hook_transport()
    if ice is not None or gathering_options() is None:
        configure_gathering(ice if ice is not None else IceOptions())

"""Why a down track did not send a packet: one enum for the forwarding path, one for NACKs.

Every packet of the source that a down track does not forward is counted under one
:class:`DropReason` (mediasoup's ``DropReason`` is the model), every NACKed packet it does not
resend under one :class:`Refusal`; both appear per down track in ``/stats``.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class DropReason(IntEnum):
    #: the subscription is paused (no bandwidth for its lowest layer, or the subscriber asked)
    PAUSED = 0
    #: the packet's layers could not be read
    INVALID = 1
    #: nothing is forwarded until a keyframe (starting, or restarting after a lost reference)
    WAITING_FOR_KEYFRAME = 2
    #: of a layer above what the subscriber gets
    LAYER = 3
    #: a lower-chain frame arriving after its picture was complete (ends the chain)
    LATE_CHAIN = 4
    #: VP9 references a picture the subscriber never got (restarts at a keyframe)
    UNRESOLVED_REFERENCE = 5
    #: a late packet whose slot is forgotten, or of a frame that was not forwarded
    TOO_OLD = 6


class Refusal(StrEnum):
    """Why a NACKed packet was not resent."""

    #: the subscriber no longer gets its layer
    LAYER = "layer"
    #: the transport's congestion allowance (transport-cc) is used up
    CONGESTION = "congestion"
    #: the subscriber's retransmission budget is used up
    RTX_BUDGET = "rtx_budget"
    #: more NACK items than one RTCP packet may have handled
    NACK_CAP = "nack_cap"
    #: more NACK items than the subscriber's rate allows
    NACK_RATE = "nack_rate"
    #: resent within the last round trip
    RESENT_RECENTLY = "resent_recently"
    #: not in the history (too old, or never sent)
    NOT_IN_HISTORY = "not_in_history"


def drop_counts(counts: list[int]) -> dict[str, int]:
    """``counts`` (indexed by :class:`DropReason`) by name, for ``/stats``."""
    return {reason.name.lower(): counts[reason] for reason in DropReason}

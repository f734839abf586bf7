"""The two peer connections of a participant, as the SFU drives them.

:class:`PublisherPeer` answers a client's offer and turns each received track into a
:class:`~sfu.forwarding.source.MediaSource`; :class:`SubscriberPeer` offers the client one
send-only transceiver per track it subscribes to and feeds it through a
:class:`~sfu.forwarding.downtrack.DownTrack`.  Both receive their packets raw through the
transport sink installed by :mod:`sfu.adapters.aiortc_plane`; what they share is
:class:`~sfu.adapters.peers.base.Peer`.
"""

from .base import Peer, PeerSettings
from .publisher import PublisherPeer
from .subscriber import SubscriberPeer

__all__ = ["Peer", "PeerSettings", "PublisherPeer", "SubscriberPeer"]

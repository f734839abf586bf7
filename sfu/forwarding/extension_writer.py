"""The RTP header extensions of one source's forwarded packets (RFC 8285).

Built once per incoming packet for all subscribers: the transport-wide sequence number first
(a placeholder each down track overwrites with its own number), the extensions copied from
the publisher (audio level), abs-send-time, and the dependency descriptor as received.  A
subscriber whose active decode targets differ gets its own block with a rewritten dependency
descriptor (:meth:`ExtensionWriter.with_active_decode_targets`).
"""

from __future__ import annotations

from ..codecs.av1_dd import serialize_dependency_descriptor
from ..rtp import extensions as ext
from ..rtp.ntp import ntp_from_time
from ..rtp.packet import parse_extension_block, serialize_extensions
from .layers import LayerInfo, LayerParser

#: extensions copied from the publisher's packets to the subscribers' (by URI); the
#: dependency descriptor is handled apart (it may be rewritten per subscriber)
COPIED_EXTENSIONS = (ext.AUDIO_LEVEL,)


class ExtensionWriter:
    __slots__ = ("_copied", "_abs_send_time_id", "_twcc_element", "_dd_out_id")

    def __init__(self, in_ids: dict[str, int], out_ids: dict[str, int]) -> None:
        """``in_ids``: the publisher's extension ids by URI; ``out_ids``: the subscribers'."""
        self._copied = [
            (in_ids[uri], out_ids[uri])
            for uri in COPIED_EXTENSIONS
            if uri in in_ids and uri in out_ids
        ]
        self._abs_send_time_id = out_ids.get(ext.ABS_SEND_TIME)
        twcc = out_ids.get(ext.TRANSPORT_WIDE_CC)
        self._twcc_element = [(twcc, b"\x00\x00")] if twcc is not None else []
        self._dd_out_id = out_ids.get(ext.DEPENDENCY_DESCRIPTOR)

    def build(
        self, extensions: dict[int, bytes] | None, info: LayerInfo | None, now: float
    ) -> tuple[list[tuple[int, bytes]], bytes, bytes, bytes]:
        """The elements of one packet's forwarded extensions, their block, and the block
        before and after the transport-wide sequence number's two bytes (``b""`` when the
        block has none)."""
        elements: list[tuple[int, bytes]] = list(self._twcc_element)
        if extensions:
            for in_id, out_id in self._copied:
                value = extensions.get(in_id)
                if value is not None:
                    elements.append((out_id, value))
        if self._abs_send_time_id is not None:
            elements.append((self._abs_send_time_id, ext.abs_send_time(ntp_from_time(now))))
        if info is not None and info.dd_bytes is not None and self._dd_out_id is not None:
            elements.append((self._dd_out_id, info.dd_bytes))
        block = serialize_extensions(elements)
        if self._twcc_element:
            at = 5 if block[0] == 0xBE else 6
            return elements, block, block[:at], block[at + 2 :]
        return elements, block, b"", b""

    def with_active_decode_targets(
        self,
        elements: list[tuple[int, bytes]],
        info: LayerInfo,
        layers: LayerParser,
        active_mask: int,
    ) -> bytes | None:
        """The extension block with this packet's dependency descriptor signalling the given
        active decode targets (for one subscriber); None when it has none to rewrite."""
        dd = info.dd
        if dd is None or layers.structure is None:
            return None
        raw = serialize_dependency_descriptor(
            dd,
            layers.structure,
            attach_structure=dd.structure is not None,
            active_decode_targets_bitmask=active_mask,
        )
        dd_id = self._dd_out_id
        out = [(i, v) for i, v in elements if i != dd_id]
        if dd_id is not None:
            out.append((dd_id, raw))
        return serialize_extensions(out)


class ExtensionRemap:
    """For a subscriber whose extension ids are not the ones the SFU offers (a WHEP viewer:
    it offered, we answered with its ids): each forwarded block renumbered to its ids, what
    it did not negotiate left out.  Per packet, for such subscribers only."""

    __slots__ = ("_ids", "_twcc_id")

    def __init__(self, subscriber_ids: dict[str, int], sfu_ids: dict[str, int]) -> None:
        self._ids = {
            sfu_id: subscriber_ids[uri] for uri, sfu_id in sfu_ids.items() if uri in subscriber_ids
        }
        self._twcc_id = subscriber_ids.get(ext.TRANSPORT_WIDE_CC)

    @staticmethod
    def needed(subscriber_ids: dict[str, int], sfu_ids: dict[str, int]) -> bool:
        return any(subscriber_ids.get(uri, sfu_id) != sfu_id for uri, sfu_id in sfu_ids.items())

    def __call__(self, block: bytes) -> tuple[bytes, bytes, bytes]:
        """(block, head, tail) as :meth:`ExtensionWriter.build` gives them."""
        ids = self._ids
        elements = [(ids[i], v) for i, v in parse_extension_block(block).items() if i in ids]
        out = serialize_extensions(elements)
        if out and self._twcc_id is not None and elements[0][0] == self._twcc_id:
            at = 5 if out[0] == 0xBE else 6
            return out, out[:at], out[at + 2 :]
        return out, b"", b""

"""One subscriber's VP8/VP9 picture ids: continuous over the pictures it got none of.

A receiver checks picture ids for continuity (and, in VP9 flexible mode, follows the P_DIFF
references between them), so a picture the SFU drops whole must not leave a gap, while a
picture lost upstream still does.  :class:`PictureIdMapper` applies :class:`SequenceMapper`'s
rule per picture: it is fed every packet that carries a picture id, forwarded or not, and a
picture counts as dropped whole once the next one starts with none of its packets forwarded --
unless packets are missing (lost upstream, maybe to arrive late) that would have been.
"""

from __future__ import annotations

from .sequence import DROPPED, SequenceMapper

#: pictures remembered, for late packets and references (P_DIFF reaches 127 back)
RING = 256


class PictureIdMapper:
    __slots__ = ("_ids", "_last", "_forwarded", "_gap", "_likely", "_sent", "renumbered_from")

    def __init__(self) -> None:
        self._ids = SequenceMapper(15, RING)
        self._last: int | None = None  # the current picture's incoming id
        #: a packet of the current picture was forwarded / packets are missing just before
        #: one of its packets / such a missing packet would be forwarded
        self._forwarded = True
        self._gap = False
        self._likely = False
        #: a picture was forwarded: until then, pictures dropped whole leave the numbering
        #: as the publisher's (nothing to be continuous with), so that subscribers who got
        #: the same pictures since share one numbering, and one rewritten payload
        self._sent = False
        #: the first incoming picture id mapped with the current offset (None: never
        #: changed): P_DIFFs reaching back past it need rewriting
        self.renumbered_from: int | None = None

    def map(
        self,
        picture_id: int,
        bits: int,
        forwarded: bool,
        late: bool = False,
        gap: bool = False,
        likely: bool = False,
    ) -> int:
        """The outgoing picture id of a packet (``bits`` wide: 7 or 15), in arrival order; a
        late packet gets its picture's id as it was forwarded (or the mapping of the pictures
        around it, for a picture not seen before).

        ``gap``: packets are missing just before this one (lost upstream, maybe to arrive
        late); ``likely``: such a missing packet of this picture would be forwarded (its
        temporal layer is forwarded)."""
        ids = self._ids
        if bits != ids.bits:  # the publisher changed the width: a new numbering
            ids = self._ids = SequenceMapper(bits, min(RING, 1 << bits))
            self._last = None
            self._sent = False
        if late:
            out = ids.map(picture_id)
            return (picture_id + ids.offset) & ids.mask if out is None else out
        last = self._last
        if picture_id != last:
            if last is not None and not self._forwarded:
                # the missing packets just before this picture may be the previous one's
                if self._sent and not ((self._gap or gap) and self._likely):
                    ids.drop(last)
                    self.renumbered_from = picture_id
            self._last = picture_id
            self._forwarded = forwarded
            if forwarded:
                self._sent = True
            self._gap = gap
            self._likely = likely
            out = ids.map(picture_id)
            return (picture_id + ids.offset) & ids.mask if out is None else out
        if forwarded:
            self._forwarded = self._sent = True
        if gap:
            self._gap = True
        if likely:
            self._likely = True
        return (picture_id + ids.offset) & ids.mask

    def reference_diffs(self, picture_id: int, diffs: list[int]) -> list[int] | None:
        """A forwarded VP9 flexible-mode picture's P_DIFFs for the outgoing picture ids (see
        :meth:`map`, called first for this packet): each names the picture the publisher's
        did, as it was renumbered.  ``None`` when one names a picture dropped whole (its id
        went to the next picture): no outgoing id is that picture's.  With consistent layer
        selection that does not happen (a forwarded frame references only frames of its
        layers or below, forwarded too).  A reference to a picture never seen (lost upstream
        beyond this mapper's memory) is left as it is."""
        ids = self._ids
        mask = ids.mask
        since = self.renumbered_from
        if since is None or 128 <= ((picture_id - since) & mask) <= (mask >> 1):
            # the offset has not changed over the last 127 pictures (as far as any P_DIFF
            # reaches back): every reference keeps its distance (the common case, cheap)
            return diffs
        offset = ids.offset_of(picture_id)
        if offset is None or offset == DROPPED:
            offset = ids.offset
        out = []
        for diff in diffs:
            ref = (picture_id - diff) & mask
            ref_offset = ids.offset_of(ref)
            if ref_offset is None:
                out.append(diff)
            elif ref_offset == DROPPED:
                return None
            else:
                # out(picture) - out(ref) = diff + offset - ref_offset, offsets mod 2**bits
                diff += ((offset - ref_offset + (mask >> 1)) & mask) - (mask >> 1)
                if diff <= 0:
                    return None
                out.append(diff)
        return out

    def keyframe(self) -> None:
        """A keyframe was forwarded: no reference reaches back past it."""
        self.renumbered_from = None

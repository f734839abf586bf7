"""Dynacast for one scalable video (sans-IO): the publisher encodes only the spatial layers
some subscriber needs.

Every SFU forwards each subscriber the layers that fit it; when *no* subscriber needs a
track's top spatial layer(s) (every viewer renders it small, or is held lower by its
bandwidth, its CPU, a pin or the room's policy), the publisher still spends its uplink and
its encoder on them.  :class:`Dynacast` works out how many spatial layers are needed and
when to tell the publisher: at once when more are needed (a viewer enlarged its tile), only
after :attr:`Dynacast.down_after` seconds of needing fewer (no flapping on a tile resized
back and forth).  The publisher's client applies it to its one SVC encoding (the demo:
``scalabilityMode`` ``L2T3_KEY`` with ``scaleResolutionDownBy: 2`` instead of ``L3T3_KEY``:
the same bottom layers, one fewer on top; none needed at all: the encoding inactive).

What one subscriber needs (:func:`needed_spatial`) is judged against the track's *full*
ladder, the resolutions of all its layers as last seen with all of them sent: a viewer who
enlarges its tile needs the layer that is not encoded at the moment.  Bandwidth holds a
subscriber below its ceiling, but the layer just above what it receives stays on: the
allocator needs it there to move up when the bandwidth allows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..forwarding.target import Allocation, LayerCaps, choose_target

#: seconds a layer must have been needed by nobody before the publisher is told to stop it
DOWN_AFTER = 5.0
#: seconds between two changes sent to the publisher (it reconfigures its encoder each time)
MIN_INTERVAL = 1.0


def needed_spatial(
    full: Sequence[tuple[int, int]],
    temporal_layers: int,
    *,
    caps: LayerCaps,
    window: tuple[int, int] | None,
    pin: tuple[int, int] | None,
    cpu: tuple[int, int] | None,
    bandwidth: Allocation | None,
    tolerance: float = 1.2,
) -> int:
    """The highest spatial layer one subscriber needs of a track whose full ladder is
    ``full``; -1: none (its window is empty)."""
    ceiling = choose_target(
        spatial_layers=len(full),
        temporal_layers=temporal_layers,
        resolutions=list(full),
        caps=caps,
        window=window,
        pin=pin,
        cpu=cpu,
        tolerance=tolerance,
    )
    if ceiling.paused:
        return -1
    spatial = ceiling.spatial
    if bandwidth is not None:  # the layer above what fits stays, to move up to
        spatial = min(spatial, 0 if bandwidth.paused else bandwidth.spatial + 1)
    return spatial


class Dynacast:
    """How many spatial layers one published video should carry."""

    def __init__(self, down_after: float | None = None, min_interval: float | None = None) -> None:
        self.down_after = DOWN_AFTER if down_after is None else down_after
        self.min_interval = MIN_INTERVAL if min_interval is None else min_interval
        #: the resolutions of every layer, as last seen with all of them sent
        self.full: tuple[tuple[int, int], ...] = ()
        #: spatial layers the publisher was told to send (None: told nothing: all of them)
        self.requested: int | None = None
        #: since when fewer than ``requested`` layers have been needed (None: not so)
        self._lower_since: float | None = None
        self._lower_most = 0
        self._changed_at = -math.inf
        #: changes sent, for the stats
        self.changes = 0

    def observe(self, resolutions: Sequence[tuple[int, int]]) -> None:
        """The layers the track carries now.  With every layer sent, they are the full
        ladder (the publisher may have changed its capture size); with fewer, the full
        ladder is kept."""
        if self.requested is None or len(resolutions) > len(self.full):
            self.full = tuple(resolutions)

    def update(self, needed: int, now: float) -> int | None:
        """``needed``: the highest spatial layer a subscriber needs (-1: none, or nobody
        subscribes).  Returns how many spatial layers the publisher should now send (0: none)
        when that changes, else None."""
        layers = len(self.full)
        if not layers:  # the track's layers are not known yet
            return None
        if layers < 2 and needed >= 0:  # one layer, needed: nothing to save
            want = layers
        else:
            want = max(0, min(layers, needed + 1))
        current = layers if self.requested is None else self.requested
        if want == current:
            self._lower_since = None
            return None
        if want > current:  # someone needs more: at once (rate-bounded)
            self._lower_since = None
            if now - self._changed_at < self.min_interval:
                return None
            return self._request(want, now)
        if self._lower_since is None:
            self._lower_since, self._lower_most = now, want
        else:  # the most needed while fewer than current were: a layer goes once unused
            self._lower_most = max(self._lower_most, want)
        if now - self._lower_since < self.down_after or now - self._changed_at < self.min_interval:
            return None
        want = self._lower_most
        self._lower_since = None
        return self._request(want, now)

    def _request(self, layers: int, now: float) -> int:
        self.requested = None if layers >= len(self.full) else layers
        self._changed_at = now
        self.changes += 1
        return layers

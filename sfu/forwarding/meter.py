"""Bitrate and frame rate of each layer of an incoming scalable stream."""

from __future__ import annotations

from dataclasses import dataclass

BUCKET = 0.5  # seconds
#: the window is BUCKET * (BUCKETS - 1) seconds of complete buckets: 5 s, so that a keyframe
#: now and then is part of a level's bitrate (over 1.5 s a level measured 20 % less between
#: keyframes than with one, and a link at its edge was climbed on the lower figure)
BUCKETS = 11
MAX_SPATIAL = 4
MAX_TEMPORAL = 4
MAX_TARGETS = 16


@dataclass(frozen=True, slots=True)
class Level:
    """What a subscriber gets when it receives layers up to (spatial, temporal)."""

    spatial: int
    temporal: int
    width: int
    height: int
    fps: float
    bitrate: int  # bits/s, all forwarded layers included


class LayerMeter:
    """Counts bytes and frames per (spatial, temporal) layer over a sliding window."""

    def __init__(self) -> None:
        size = MAX_SPATIAL * MAX_TEMPORAL
        self._bytes = [[0] * size for _ in range(BUCKETS)]
        self._frames = [[0] * size for _ in range(BUCKETS)]
        #: bytes per decode target (dependency descriptor): what a subscriber of that target
        #: is actually sent, which in K-SVC is less than all the layers below it
        self._target_bytes = [[0] * MAX_TARGETS for _ in range(BUCKETS)]
        self._targets_seen = False
        self._bucket = -1
        self._started: float | None = None
        #: bumped by every rotation: the complete buckets change only then (packets are
        #: counted in the newest bucket, which levels leaves out)
        self._rotations = 0
        #: the last levels worked out (the same tuple until they change: callers may key
        #: caches on its identity), and what they were worked out from
        self._levels: tuple[Level, ...] = ()
        self._levels_key: tuple[object, ...] | None = None

    def add(
        self,
        sid: int,
        tid: int,
        size: int,
        start_of_frame: bool,
        now: float,
        present_mask: int = -1,
    ) -> None:
        bucket = int(now / BUCKET)
        if bucket != self._bucket:
            self._rotate(bucket)
            if self._started is None:
                self._started = now
        if sid >= MAX_SPATIAL or tid >= MAX_TEMPORAL:
            return
        index = sid * MAX_TEMPORAL + tid
        slot = bucket % BUCKETS
        self._bytes[slot][index] += size
        if present_mask >= 0:
            self._targets_seen = True
            row = self._target_bytes[slot]
            dt = 0
            while present_mask and dt < MAX_TARGETS:
                if present_mask & 1:
                    row[dt] += size
                present_mask >>= 1
                dt += 1
        if start_of_frame:
            self._frames[slot][index] += 1

    def _rotate(self, bucket: int) -> None:
        if self._bucket >= 0:
            for b in range(self._bucket + 1, min(bucket, self._bucket + BUCKETS) + 1):
                slot = b % BUCKETS
                self._bytes[slot] = [0] * len(self._bytes[slot])
                self._frames[slot] = [0] * len(self._frames[slot])
                self._target_bytes[slot] = [0] * MAX_TARGETS
        self._bucket = bucket
        self._rotations += 1

    def _totals(self, now: float) -> tuple[list[int], list[int], list[int], float]:
        current = int(now / BUCKET)
        if current != self._bucket:
            self._rotate(current)
        # complete buckets only: the current one is still filling
        slots = [b % BUCKETS for b in range(current - BUCKETS + 1, current)]
        size = MAX_SPATIAL * MAX_TEMPORAL
        total_bytes = [sum(self._bytes[s][i] for s in slots) for i in range(size)]
        total_frames = [sum(self._frames[s][i] for s in slots) for i in range(size)]
        total_targets = [sum(self._target_bytes[s][i] for s in slots) for i in range(MAX_TARGETS)]
        span = (BUCKETS - 1) * BUCKET
        if self._started is not None:
            span = max(BUCKET, min(span, (current * BUCKET) - self._started))
        return total_bytes, total_frames, total_targets, span

    def levels(
        self,
        now: float,
        spatial_layers: int,
        temporal_layers: int,
        resolutions: list[tuple[int, int]],
        decode_targets: dict[tuple[int, int], int] | None = None,
    ) -> tuple[Level, ...]:
        """Every (spatial, temporal) level with its measured figures; the same tuple while
        they do not change (a new bucket, a new structure)."""
        # asked by every subscriber on every tick; the figures change once per bucket
        key = (
            int(now / BUCKET),
            self._bucket,
            self._rotations,
            self._targets_seen,
            spatial_layers,
            temporal_layers,
            tuple(resolutions),
            tuple(decode_targets.items()) if decode_targets else None,
        )
        if key != self._levels_key:
            self._levels = self._compute_levels(
                now, spatial_layers, temporal_layers, resolutions, decode_targets
            )
            # after the rotation the computation made, if any: the next call in this
            # bucket finds the same key
            self._levels_key = (key[0], self._bucket, self._rotations, *key[3:])
        return self._levels

    def _compute_levels(
        self,
        now: float,
        spatial_layers: int,
        temporal_layers: int,
        resolutions: list[tuple[int, int]],
        decode_targets: dict[tuple[int, int], int] | None,
    ) -> tuple[Level, ...]:
        total_bytes, total_frames, total_targets, span = self._totals(now)
        out = []
        for s in range(min(spatial_layers, MAX_SPATIAL)):
            width, height = resolutions[s] if s < len(resolutions) else (0, 0)
            for t in range(min(temporal_layers, MAX_TEMPORAL)):
                target = decode_targets.get((s, t)) if decode_targets else None
                if self._targets_seen and target is not None and target < MAX_TARGETS:
                    bits = 8 * total_targets[target]
                else:
                    bits = 8 * sum(
                        total_bytes[ss * MAX_TEMPORAL + tt]
                        for ss in range(s + 1)
                        for tt in range(t + 1)
                    )
                frames = sum(total_frames[s * MAX_TEMPORAL + tt] for tt in range(t + 1))
                out.append(Level(s, t, width, height, round(frames / span, 1), int(bits / span)))
        return tuple(out)

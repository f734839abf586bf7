"""What a player fetches for a level of a segment, and the access units it decodes (sans-IO:
the bytes come from a ``fetch`` callable).  The reference for the browser player
(docs/recording.md, "Playing a level").

``fetch(name, length)`` returns the file ``name`` (relative to the manifest) whole when
``length`` is None, else its first ``length`` bytes (an HTTP range request
``bytes=0-(length-1)``).
"""

from __future__ import annotations

from collections.abc import Callable

from .layerfile import read_layer_file
from .manifest import Level, SegmentEntry, Track
from .merge import AccessUnit, merge

__all__ = ["Fetch", "level_files", "read_level"]

Fetch = Callable[[str, int | None], bytes]


def level_files(
    track: Track, segment: SegmentEntry, level: Level, *, sparse: bool = True
) -> list[tuple[str, int | None]]:
    """The files to fetch for ``level`` of ``segment``, lowest layer first: (name, bytes to
    read, None: all).  With ``sparse``, the level's ``sparse_layers`` are read up to their
    ``key_bytes`` in a segment whose files of the level's top spatial layer reference them
    in the first picture only and dropped no frame."""
    spatial = {layer.id: layer.spatial for layer in track.layers}
    top = [
        f
        for layer, f in segment.files.items()
        if layer in level.layers and spatial[layer] == level.spatial
    ]
    cut = (
        sparse
        and bool(level.sparse_layers)
        and bool(top)
        and all(f.inter_layer != "all" and not f.dropped for f in top)
    )
    out: list[tuple[str, int | None]] = []
    for layer in level.layers:
        entry = segment.files.get(layer)
        if entry is None:
            continue  # no frame of this layer in the segment
        out.append((entry.name, entry.key_bytes if cut and layer in level.sparse_layers else None))
    return out


def read_level(
    track: Track, segment: SegmentEntry, level: Level, fetch: Fetch, *, sparse: bool = True
) -> list[AccessUnit]:
    """Fetch ``level``'s files of ``segment`` and merge them: one access unit per picture,
    records of temporal layers above the level's left out."""
    files = [
        read_layer_file(fetch(name, length))
        for name, length in level_files(track, segment, level, sparse=sparse)
    ]
    return merge(track.codec, files, level.temporal)

"""Segments and the manifest written into a recording's folder, atomically (the one module
of the package that does I/O; blocking: the caller runs it off the event loop).

Each file is written under a temporary name in the same folder (``.NAME.tmp``), flushed
(and fsynced unless told not to) and renamed over its final name with :func:`os.replace`,
so a reader sees either no file or the whole file, never a part of one.  A segment's files
are written before the manifest that names them, and the manifest last, by the same rename.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .manifest import Manifest
from .segmenter import Segment

__all__ = ["MANIFEST", "RecordingWriter"]

MANIFEST = "manifest.json"


class RecordingWriter:
    def __init__(self, folder: str | Path, *, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.fsync = fsync
        self.folder.mkdir(parents=True, exist_ok=True)
        self.bytes_written = 0

    def write_segment(self, segment: Segment) -> None:
        for f in segment.files:
            self.write_file(f.name, f.data)

    def write_manifest(self, manifest: Manifest) -> None:
        data = manifest.model_dump_json(indent=1, exclude_none=True).encode()
        self.write_file(MANIFEST, data)
        if self.fsync:  # the renames themselves, durable
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def write_file(self, name: str, data: bytes) -> None:
        """Write ``name`` in the folder atomically."""
        if "/" in name or name.startswith("."):
            raise ValueError(f"not a file name of the recording: {name!r}")
        final = self.folder / name
        temporary = self.folder / f".{name}.tmp"
        with open(temporary, "wb") as out:
            out.write(data)
            out.flush()
            if self.fsync:
                os.fsync(out.fileno())
        os.replace(temporary, final)
        self.bytes_written += len(data)

    def remove(self, names: list[str]) -> None:
        """Remove the files of segments that left the live window."""
        for name in names:
            if "/" in name or name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()

"""The aiortc and aioice versions the plane is written against.

:func:`check_versions` (called by :func:`sfu.adapters.aiortc_plane.install`) refuses any
other; ``tests/test_aiortc_plane.py`` checks the internals the plane relies on, and fails
loudly if they move.  Change the pin only after reviewing every module of the package.
"""

from __future__ import annotations

import importlib.metadata

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"
#: pylibsrtp (aiortc's SRTP): :mod:`.srtp` calls its binding directly
PYLIBSRTP_VERSION = "1.0.0"


def check_versions() -> None:
    for package, wanted in (
        ("aiortc", AIORTC_VERSION),
        ("aioice", AIOICE_VERSION),
        ("pylibsrtp", PYLIBSRTP_VERSION),
    ):
        found = importlib.metadata.version(package)
        if found != wanted:
            raise RuntimeError(
                f"sfu.adapters.aiortc_plane is written against {package} {wanted}, "
                f"found {found}: review the adapter before changing the pin"
            )

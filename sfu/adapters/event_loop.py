"""The event loop the server runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv, in Cython) runs the same asyncio programs with a cheaper loop and cheaper
transports: for this server every received datagram and every ``sendto`` to a subscriber
goes through them (``python -m loadtest bench``: see docs/performance.md).  ``pip install``
pulls it on Linux and macOS; anywhere it is missing (Windows, a failed wheel) the server runs
on asyncio's loop, unchanged.  ``sfu serve --loop asyncio`` chooses that loop explicitly.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Literal

Choice = Literal["auto", "uvloop", "asyncio"]
CHOICES: tuple[Choice, ...] = ("auto", "uvloop", "asyncio")


class LoopUnavailable(RuntimeError):
    """uvloop was asked for and is not installed."""


def new_event_loop(choice: Choice = "auto") -> tuple[asyncio.AbstractEventLoop, str]:
    """A new event loop of the chosen kind, and its name (``"uvloop"`` or ``"asyncio"``)."""
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise LoopUnavailable(
                    "uvloop is not installed (pip install uvloop), or use --loop asyncio"
                ) from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop, "uvloop"
    return asyncio.new_event_loop(), "asyncio"


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``: which kind of loop ``loop`` is."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"

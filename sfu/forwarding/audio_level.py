"""The audio levels a publisher's packets carry (RFC 6464 ``ssrc-audio-level``: one byte,
the V flag then the level in -dBov, 0 loudest to 127 silence), summed on the way in and
read once per interval (the room's speaker detection, :mod:`sfu.rooms.speakers`).

Per packet: one table look-up and two additions, no object.  The V (voice activity) flag is
not used: aiortc always sends 0, and Chromium's follows its encoder's frame type (comfort
noise under DTX); the level says as much.  Levels are averaged as energy (the interval's
mean square, as RFC 6465 mixes them), not as dB.
"""

from __future__ import annotations

import math

#: RFC 6464 levels are -dBov, 0 (loudest) to 127 (silence)
QUIETEST = 127
#: the energy (relative to full scale) of each level
ENERGY = tuple(10.0 ** (-level / 10) for level in range(QUIETEST + 1))


def clamp_level(level: float) -> int:
    """``level`` as an RFC 6464 level (0..127); anything that is no number is silence."""
    try:
        value = int(level)
    except (TypeError, ValueError, OverflowError):
        return QUIETEST
    return min(max(value, 0), QUIETEST)


def energy_level(energy: float, count: int) -> int:
    """The level (0..127) of the mean of ``count`` levels whose energies sum to ``energy``."""
    if count <= 0 or not energy > 0:
        return QUIETEST
    return clamp_level(round(-10 * math.log10(energy / count)))


class AudioLevels:
    """The levels of one audio track's packets since the last :meth:`take`."""

    __slots__ = ("_energy", "_count", "packets")

    def __init__(self) -> None:
        self._energy = 0.0
        self._count = 0
        #: packets that carried a level, ever
        self.packets = 0

    def add(self, value: int) -> None:
        """A packet's audio level element's byte (the V flag is masked off)."""
        self._energy += ENERGY[value & 0x7F]
        self._count += 1

    def take(self) -> int | None:
        """The mean level since the last call (None: no packet carried one), and start
        afresh."""
        count = self._count
        if count == 0:
            return None
        level = energy_level(self._energy, count)
        self.packets += count
        self._energy, self._count = 0.0, 0
        return level

"""Who speaks in a room: a dominant-speaker detector over the publishers' audio levels
(RFC 6464, the level each Opus packet carries; nothing is decoded).  Sans-IO: it is given
levels and ``now``, and says who speaks.

After Volfin & Cohen's three time scales (as in Jitsi's DominantSpeakerIdentification), in
a simpler form, every :meth:`SpeakerDetector.evaluate` (every ~200 ms):

* **immediate**: one interval's level per participant, the energy mean of what it was
  given since the last evaluation (:meth:`~SpeakerDetector.observe`); nothing heard (no
  packet, a muted track) is silence.  At or below SILENCE (-50 dBov) is silence too:
  background noise, breathing, a fan;
* **medium**: ``activity``, the share of recent intervals with sound above SILENCE (an
  exponential average over TAU_ACTIVITY, 1 s): what tells speech (seconds of it, with
  short gaps) from a cough or a knock (a fraction of a second);
* **long**: ``score``, the average dB above SILENCE over TAU_SCORE (1.5 s, silence counting
  as 0): who speaks louder and longer.

A participant **speaks** (is listed) once its activity reaches ENTER_ACTIVITY and its score
ENTER_SCORE; it stops below LEAVE_ACTIVITY or LEAVE_SCORE (hysteresis: a pause between two
sentences does not drop it).  A lone 300 ms cough reaches an activity of ~0.26: never listed.

The **dominant speaker** is sticky: it stays dominant through silence until another takes
over.  A challenger must be speaking and score MARGIN dB above the dominant (or there be
no dominant), without a break, for MIN_DOMINATE seconds; and no switch comes within
MIN_HOLD of the previous one.  Levels that swap while both speak move the dominance in
~2 s; a dominant that stops and another that starts, in about the same.

The report (:class:`Speakers`: the dominant, and who speaks, the dominant first when it
speaks, then the others loudest first) is returned only when the dominant or the set of
speakers changed, and at most once per MIN_REPORT_INTERVAL (a change meanwhile waits; one
that reverted meanwhile is never reported).  Reordering alone is no change.

Hostile input breaks nothing: levels outside 0..127 are clamped (not a number: silence);
time that goes back (or is not a number) stands still; a jump forward smooths as at most
MAX_STEP; at most ``max_participants`` are followed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..forwarding.audio_level import ENERGY, QUIETEST, clamp_level, energy_level

#: -dBov at or beyond which an interval is silence (-50 dBov)
SILENCE = 50
#: seconds: the long (score) and medium (activity) time scales, and the reported loudness's
TAU_SCORE = 1.5
TAU_ACTIVITY = 1.0
TAU_LOUDNESS = 0.5
#: a participant speaks from this activity and score (dB above SILENCE) on ...
ENTER_ACTIVITY = 0.5
ENTER_SCORE = 6.0
#: ... until either falls below these
LEAVE_ACTIVITY = 0.2
LEAVE_SCORE = 3.0
#: dB a challenger's score must exceed the dominant's by
MARGIN = 3.0
#: seconds a challenger must lead without a break before it takes over
MIN_DOMINATE = 0.6
#: seconds after a switch before the next
MIN_HOLD = 2.0
#: seconds between two reports
MIN_REPORT_INTERVAL = 0.5
#: seconds: a longer step between two evaluations (a stalled loop) smooths as this
MAX_STEP = 1.0
#: speakers listed in a report, at most
MAX_LISTED = 10

_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Speaker:
    participant: str
    #: dBov of its recent speech: 0 (loudest) to -127
    level: int


@dataclass(frozen=True, slots=True)
class Speakers:
    """A report: the dominant speaker (None: nobody yet, or it left) and who speaks now."""

    dominant: str | None
    speakers: tuple[Speaker, ...]


class _Voice:
    """One participant: the interval's energy, and its smoothed scales."""

    __slots__ = ("energy", "count", "score", "activity", "loudness", "speaking", "lead_since")

    def __init__(self) -> None:
        self.energy = 0.0
        self.count = 0
        self.score = 0.0
        self.activity = 0.0
        self.loudness = float(QUIETEST)
        self.speaking = False
        self.lead_since: float | None = None


class SpeakerDetector:
    def __init__(self, silence: int = SILENCE, max_participants: int = 10_000) -> None:
        self.silence = clamp_level(silence)
        self.max_participants = max_participants
        self._voices: dict[str, _Voice] = {}
        #: the dominant speaker (sticky), and when it took over
        self.dominant: str | None = None
        self.switched_at = -math.inf
        self._now: float | None = None
        self._reported: tuple[str | None, frozenset[str]] = (None, frozenset())
        self._reported_at = -math.inf

    @property
    def participants(self) -> list[str]:
        return list(self._voices)

    def observe(self, participant: str, level: float) -> None:
        """A level (RFC 6464, -dBov 0..127) of ``participant``'s audio: one packet's, or an
        interval's.  Summed until the next :meth:`evaluate`: no other work."""
        voice = self._voices.get(participant)
        if voice is None:
            if len(self._voices) >= self.max_participants:
                return
            voice = self._voices[participant] = _Voice()
        voice.energy += ENERGY[clamp_level(level)]
        voice.count += 1

    def remove(self, participant: str) -> None:
        """``participant`` is gone (left, or has no audio any more)."""
        self._voices.pop(participant, None)
        if participant == self.dominant:
            self.dominant = None

    def evaluate(self, now: float) -> Speakers | None:
        """The levels observed since the last call, as one interval ending at ``now``
        (the first call only starts the clock); a report if what it reports changed."""
        step = self._advance(now)
        now = self._now if self._now is not None else 0.0
        score_a = 1 - math.exp(-step / TAU_SCORE)
        activity_a = 1 - math.exp(-step / TAU_ACTIVITY)
        loudness_a = 1 - math.exp(-step / TAU_LOUDNESS)
        silence = self.silence
        for voice in self._voices.values():
            level = energy_level(voice.energy, voice.count)
            voice.energy, voice.count = 0.0, 0
            above = max(0, silence - level)
            voice.score += (above - voice.score) * score_a
            voice.activity += ((1.0 if above else 0.0) - voice.activity) * activity_a
            if above:
                if voice.loudness >= QUIETEST:
                    voice.loudness = float(level)
                voice.loudness += (level - voice.loudness) * loudness_a
            if voice.speaking:
                voice.speaking = voice.activity >= LEAVE_ACTIVITY and voice.score >= LEAVE_SCORE
            else:
                voice.speaking = voice.activity >= ENTER_ACTIVITY and voice.score >= ENTER_SCORE
        self._elect(now)
        return self._report(now)

    def _advance(self, now: float) -> float:
        """The clock moved to ``now``: the step to smooth over (0 if it did not move on)."""
        if not math.isfinite(now):
            return 0.0
        if self._now is None:
            self._now = now
            return 0.0
        if now <= self._now:
            return 0.0
        step = min(now - self._now, MAX_STEP)
        self._now = now
        return step

    def _elect(self, now: float) -> None:
        """A challenger that has led long enough (and not within the hold) takes over."""
        dominant = self._voices.get(self.dominant) if self.dominant is not None else None
        floor = dominant.score + MARGIN if dominant is not None else -math.inf
        eligible: list[tuple[float, str]] = []
        for participant, voice in self._voices.items():
            if voice is dominant or not voice.speaking or voice.score <= floor:
                voice.lead_since = None
                continue
            if voice.lead_since is None:
                voice.lead_since = now
            if now - voice.lead_since >= MIN_DOMINATE - _EPSILON:
                eligible.append((voice.score, participant))
        if not eligible:
            return
        if dominant is not None and now - self.switched_at < MIN_HOLD - _EPSILON:
            return
        self.dominant = max(eligible)[1]
        self.switched_at = now
        for voice in self._voices.values():
            voice.lead_since = None

    def speaking(self) -> list[str]:
        """Who speaks now: the dominant first if it does, then the others loudest first."""
        voices = self._voices
        dominant = self.dominant
        others = sorted(
            (p for p, v in voices.items() if v.speaking and p != dominant),
            key=lambda p: (-voices[p].score, p),
        )
        if dominant is not None and dominant in voices and voices[dominant].speaking:
            others.insert(0, dominant)
        return others

    def _report(self, now: float) -> Speakers | None:
        speaking = self.speaking()
        state = (self.dominant, frozenset(speaking))
        if state == self._reported or now - self._reported_at < MIN_REPORT_INTERVAL - _EPSILON:
            return None
        self._reported, self._reported_at = state, now
        listed = tuple(Speaker(p, -round(self._voices[p].loudness)) for p in speaking[:MAX_LISTED])
        return Speakers(self.dominant, listed)

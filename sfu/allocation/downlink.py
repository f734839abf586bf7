"""One subscriber's downlink allocation over time (sans-IO policy): every tick, the estimate,
the policy's cap, the videos' demands and what each has now go in; the levels to give and
whether to probe come out.  The arithmetic of one split is :mod:`.allocator`'s.

The rules:

* **What is shared**: min(estimate, the policy's cap) (``available``); kept levels are judged
  against it, climbing only within the *proven* rate (the probe controller's: it follows
  the estimate down at once, up only by probe results); ``usable`` is the smaller of the
  two.
* **Pause debounce**: a video is paused only once even its lowest level has not fitted for
  PAUSE_AFTER seconds; until then it keeps what it has (a dip of the estimate must not blank
  it).  An allocation that is no pause (or a video already paused) starts the wait afresh.
* **Hold**: after a bandwidth down-switch a video does not climb for ``up_hold`` seconds
  (its :class:`~sfu.forwarding.subscription.Subscription` keeps when the down-switch was,
  the hold's length and what was available then), unless ``usable`` has grown to
  HOLD_RELEASE x what was available at the down-switch.  A resume from a pause is not held.
* **Fast reallocation** (:func:`reallocate_now`): an estimate that falls below
  FAST_REALLOCATE x what it was is allocated at once, not at the next tick.
* **When to probe**: with an estimate, the proven rate below the cap, and the videos
  wanting more than the proven rate (:func:`.allocator.needed_for_upgrade`); not within
  PROBE_QUIET_AFTER_CONGESTION seconds of overuse or of loss above PROBE_QUIET_LOSS (the
  link is full, or was just now: a probe would only add loss); not while a probe runs, nor
  while the controller backs off.  Overuse together with that loss is a full queue: what the
  link delivered then is its capacity (:meth:`~sfu.bwe.probe.ProbeController.on_congestion`).
* **At what rate**: :meth:`~sfu.bwe.probe.ProbeController.target` of what all videos want
  and of what one level more needs (:func:`.allocator.needed_for_next_level`).
* **After a probe** (:meth:`DownlinkAllocator.finish_probe`): a result that proved more
  raises the estimate to it; one that also got PROBE_RELEASE of the probe's rate through ends
  every plain hold (``up_hold`` at its minimum).  A doubled hold (an up-switch that did not
  fit, soon after) stays, or a link just at a level's edge would flip between levels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..bwe.probe import ProbeController
from ..forwarding.meter import Level
from ..forwarding.subscription import Subscription
from ..forwarding.target import Allocation
from .allocator import (
    Demand,
    allocate,
    ladders_of,
    needed_for_next_level,
    needed_for_upgrade,
)

#: seconds the lowest level must not fit before a video is paused
PAUSE_AFTER = 1.0
#: a hold after a bandwidth down-switch ends once the usable bandwidth is this many times
#: what was available at the down-switch
HOLD_RELEASE = 1.5
#: an estimate that falls below this share of what it was is allocated at once
FAST_REALLOCATE = 0.7
#: no probe this long after the estimator saw overuse or loss (seconds)
PROBE_QUIET_AFTER_CONGESTION = 2.0
#: ... the loss (over the last second) that counts as congestion for this
PROBE_QUIET_LOSS = 0.05
#: a probe that proved more and got this share of its rate through ends plain holds
PROBE_RELEASE = 0.9


@dataclass(frozen=True, slots=True)
class Link:
    """What the subscriber's estimator says now."""

    #: bits/s the downlink carries
    estimate: int
    #: the delay detector sees overuse
    overusing: bool = False
    #: fraction of the packets reported in the last second that were lost
    loss: float = 0.0
    #: bits/s received over the last receive-time window (None: not known yet)
    delivered: int | None = None


@dataclass(frozen=True, slots=True)
class VideoState:
    """What one video has from the bandwidth now, and the hold its last bandwidth down-switch
    set (as its Subscription keeps them: ``bandwidth``, ``bandwidth_down_at``, ``up_hold``,
    ``available_at_down``)."""

    #: the level the bandwidth gives it now (None: not limited by the bandwidth)
    bandwidth: Allocation | None = None
    #: when its last bandwidth down-switch was
    down_at: float = -math.inf
    #: seconds after that down-switch it may not climb
    up_hold: float = Subscription.MIN_UP_HOLD
    #: bits/s available at that down-switch
    available_at_down: float = math.inf


@dataclass(frozen=True, slots=True)
class Decision:
    #: min(estimate, cap), bits/s; None: nothing limits the downlink
    available: float | None
    #: what the levels were shared from: ``available``, no more than the proven rate
    usable: float | None
    #: the level to give each of these videos now
    levels: dict[str, Allocation]
    #: the videos that keep what they have (a pause not due yet, a hold); a video neither
    #: here nor in ``levels`` is not limited by the bandwidth (its level: None)
    kept: frozenset[str]
    #: bits/s to send a probe cluster at now (its id: ``probe.cluster``), or None
    probe: int | None


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    #: bits/s the probe proved the link carries (raise the estimate to it), or None
    proven: int | None
    #: the videos whose hold ends now
    released: frozenset[str]


def reallocate_now(before: int | None, after: int | None) -> bool:
    """Whether an estimate that went from ``before`` to ``after`` (one feedback) fell so
    sharply that the levels must follow now, not at the next tick."""
    return before is not None and after is not None and after < FAST_REALLOCATE * before


class DownlinkAllocator:
    """The allocation policy of one subscriber (see the module's rules); the probe controller
    it drives is ``probe``."""

    def __init__(self, probe: ProbeController | None = None) -> None:
        self.probe = probe if probe is not None else ProbeController()
        #: when overuse or loss was last seen (while probing could be wanted)
        self.congested_at = -math.inf
        #: when each video's allocation first found no room for its lowest level
        self._pause_wanted_at: dict[str, float] = {}

    def allocate(
        self,
        now: float,
        demands: list[Demand],
        *,
        link: Link | None,
        cap: int | None,
        headroom: float,
        states: Mapping[str, VideoState] | None = None,
        probing: bool = False,
    ) -> Decision:
        """The levels for ``demands`` (the videos their other inputs do not pause) and a
        probe, from ``link`` (None: no estimate) and ``cap`` (None: no policy cap);
        ``states``: what each video has now (a video not listed: nothing, no hold);
        ``probing``: a probe cluster is still being sent or measured."""
        states = states or {}
        estimate = link.estimate if link is not None else None
        limits = [x for x in (estimate, cap) if x is not None]
        if not limits:
            return Decision(None, None, {}, frozenset(), None)
        available = min(limits)
        proven = self.probe.follow(link.estimate) if link is not None else None
        ladders = ladders_of(demands)
        allocations = allocate(
            available, demands, headroom=headroom, climb_limit=proven, ladders=ladders
        )
        usable = available if proven is None else min(available, proven)
        probe = None
        if link is not None and proven is not None and (cap is None or proven < cap):
            probe = self._probe(now, link, demands, ladders, allocations, proven, headroom, probing)
        levels: dict[str, Allocation] = {}
        kept: set[str] = set()
        for demand in demands:
            allocation = allocations[demand.key]
            state = states.get(demand.key, VideoState())
            if self._keeps(now, demand.key, allocation, state, usable):
                kept.add(demand.key)
            else:
                levels[demand.key] = allocation
        return Decision(available, usable, levels, frozenset(kept), probe)

    def _keeps(
        self, now: float, key: str, allocation: Allocation, state: VideoState, usable: float
    ) -> bool:
        """Whether the video keeps what it has rather than take ``allocation``."""
        held = state.bandwidth
        if allocation.paused and not (held is not None and held.paused):
            wanted_at = self._pause_wanted_at.setdefault(key, now)
            return now - wanted_at < PAUSE_AFTER
        self._pause_wanted_at.pop(key, None)
        return (
            held is not None
            and not held.paused
            and not allocation.paused
            and now - state.down_at < state.up_hold
            and usable < HOLD_RELEASE * state.available_at_down
            and (allocation.spatial, allocation.temporal) > (held.spatial, held.temporal)
        )

    def _probe(
        self,
        now: float,
        link: Link,
        demands: list[Demand],
        ladders: dict[str, list[Level]],
        allocations: dict[str, Allocation],
        proven: int,
        headroom: float,
        probing: bool,
    ) -> int | None:
        """The rate to probe at now, if an up-switch needs more than ``proven``."""
        if link.overusing or link.loss > PROBE_QUIET_LOSS:
            self.congested_at = now
            # with its queue full (delay growing and packets dropped), what the link
            # delivers is its capacity; overuse alone at a low rate may be a frame's burst
            full = link.overusing and link.loss > PROBE_QUIET_LOSS
            self.probe.on_congestion(link.delivered if full else None)
        if now - self.congested_at < PROBE_QUIET_AFTER_CONGESTION:
            return None
        wanted = needed_for_upgrade(demands, allocations, headroom, ladders)
        if wanted is None or wanted <= proven or probing:
            return None
        # after congestion, one level up at a time (2x the estimate for a moment would
        # overflow a narrow link's queue, and that loss is all such a probe reports)
        step = needed_for_next_level(demands, allocations, headroom, ladders)
        return self.probe.start(self.probe.target(wanted, step), now)

    def finish_probe(
        self,
        now: float,
        result: int | None,
        rate: int,
        states: Mapping[str, VideoState] | None = None,
    ) -> ProbeOutcome:
        """The probe at ``rate`` measured ``result`` (None: it could not be told);
        ``states``: what each video has now, for the holds it may end."""
        success = self.probe.finish(now, result, rate)
        if not success or result is None:
            return ProbeOutcome(None, frozenset())
        released: frozenset[str] = frozenset()
        if result >= PROBE_RELEASE * rate:
            released = frozenset(
                key
                for key, state in (states or {}).items()
                if state.up_hold <= Subscription.MIN_UP_HOLD
            )
        return ProbeOutcome(result, released)

    def abandon_probe(self) -> None:
        """The probe running was not finished (cancelled or failed): another may start."""
        self.probe.running = False

    def forget(self, key: str) -> None:
        """The video ``key`` is no longer received."""
        self._pause_wanted_at.pop(key, None)

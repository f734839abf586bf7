"""``/metrics``: the Prometheus exposition of the application's :class:`~sfu.metrics.Metrics`,
for admins only (as ``/admin/reload``: an admin token, an allowed origin), and what only the
edge knows (connections, refusals, faults contained, the event loop's lateness and the
garbage collector's pauses), read at scrape time.  Names, labels, units: ``docs/stats.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from aiohttp import web
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .. import faults
from .access import refuse_admin
from .loop_lag import BOUNDS_MS, LoopLag
from .state import METRICS_KEY, ServerState
from .webhooks import WebhookSender


class EdgeCollector(Collector):
    """The signaling edge's own counts, read when scraped."""

    def __init__(self, state: ServerState, lag: LoopLag) -> None:
        self.state = state
        self.lag = lag
        #: the webhook sender, when webhooks are on
        self.webhooks: WebhookSender | None = None

    def describe(self) -> Iterable[Metric]:
        return self._families(empty=True)

    def collect(self) -> Iterable[Metric]:
        return self._families(empty=False)

    def _families(self, empty: bool) -> list[Metric]:
        connections = GaugeMetricFamily("sfu_connections", "Open signaling WebSocket connections.")
        refused = CounterMetricFamily(
            "sfu_refused",
            "Requests and connections refused at the edge, by reason (as /stats' refused).",
            labels=["reason"],
        )
        contained = CounterMetricFamily(
            "sfu_faults",
            "Exceptions contained (one peer, room or connection), by kind (as /stats' faults).",
            labels=["kind"],
        )
        lag = HistogramMetricFamily(
            "sfu_event_loop_lag_seconds",
            "How late the event loop woke a 20 ms timer (50 samples a second).",
            labels=[],
        )
        collections = CounterMetricFamily(
            "sfu_gc_collections",
            "Garbage collections, by generation.",
            labels=["generation"],
        )
        paused = CounterMetricFamily(
            "sfu_gc_pause_seconds",
            "Time the garbage collector stopped the process, by generation.",
            labels=["generation"],
        )
        webhooks = CounterMetricFamily(
            "sfu_webhook_events",
            "Webhook events by outcome: queued, delivered, dropped (queue full), failed"
            " (attempts spent), rejected (by the receiver), filtered; and attempts made.",
            labels=["outcome"],
        )
        waiting = GaugeMetricFamily("sfu_webhook_queue", "Webhook events waiting to be sent.")
        families: list[Metric] = [connections, refused, contained, lag, collections, paused]
        if self.webhooks is not None:
            families += [webhooks, waiting]
        if empty:
            return families
        if self.webhooks is not None:
            outcomes = self.webhooks.queue.stats()
            waiting.add_metric([], outcomes.pop("waiting", 0))
            for outcome, number in sorted(outcomes.items()):
                webhooks.add_metric([outcome], number)
        connections.add_metric([], len(self.state.sessions))
        for reason, count in sorted(self.state.refused.items()):
            refused.add_metric([reason], count)
        for kind, count in sorted(faults.counts.items()):
            contained.add_metric([kind], count)
        counts = list(self.lag.counts)
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*BOUNDS_MS, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound / 1000), cumulative))
        lag.add_metric([], buckets, self.lag.sum_ms / 1000)
        pauses = self.lag.collector
        for generation in range(len(pauses.collections)):
            collections.add_metric([str(generation)], pauses.collections[generation])
            paused.add_metric([str(generation)], pauses.pause_ms[generation] / 1000)
        return families


async def metrics(request: web.Request) -> web.Response:
    """The metrics, for an admin; 401 (no admin credential) or 403 (origin) otherwise."""
    refusal = await refuse_admin(request)
    if refusal is not None:
        return refusal
    body, content_type = request.app[METRICS_KEY].exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})

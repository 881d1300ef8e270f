"""`autodev metrics serve`: Prometheus metrics computed from the state store.

Flow runs are short-lived processes, so counters kept in memory would restart at zero with each
run; this exporter derives them from what every run wrote to the state store, so they are right
across processes, machines and restarts. Scrapes stay cheap as history grows: attempt totals are
read incrementally (only rows added since the previous scrape), the rest are indexed counts.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from autodev.blocks.store import Store
from autodev.core.models import FAILED_STATUSES, utcnow

DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)


class StoreCollector:
    """A prometheus-client collector over one state store."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._last_id = 0
        self._count: dict[str, int] = defaultdict(int)
        self._sum: dict[str, float] = defaultdict(float)
        self._buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(DURATION_BUCKETS))
        self._trips = 0

    def refresh(self) -> None:
        """Add the attempts stored since the last refresh to the running totals."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        totals = self.store.metrics.attempt_totals(self._last_id, DURATION_BUCKETS)
        self._last_id = totals.last_id
        for row in totals.by_status:
            self._trips += row.breaker_trips
            self._count[row.status] += row.count
            self._sum[row.status] += row.seconds
            self._buckets[row.status] = [a + b for a, b in zip(self._buckets[row.status], row.per_bucket, strict=False)]

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # scrapes may overlap; the running totals must not
            self._refresh()
            yield from self._attempt_metrics()
        yield from self._run_metrics()
        yield self._heartbeat_ages()
        yield self._insight_confidence()
        yield from self._llm_usage()

    def _attempt_metrics(self) -> Iterator[Metric]:
        """The commands run, failed and stalled, the breaker trips and the attempts' durations,
        from the running totals (read them under the lock)."""
        commands = CounterMetricFamily("orchestrator_commands", "Commands run, by final status.", labels=["status"])
        for status, count in sorted(self._count.items()):
            commands.add_metric([status], count)
        yield commands
        yield CounterMetricFamily(
            "orchestrator_command_failures",
            "Commands that ended with a non-zero or unknown exit code, a stall or a timeout.",
            value=sum(self._count.get(s, 0) for s in FAILED_STATUSES),
        )
        yield CounterMetricFamily(
            "orchestrator_stalls", "Commands killed for printing nothing too long.", value=self._count.get("stalled", 0)
        )
        yield CounterMetricFamily(
            "orchestrator_breaker_trips", "Runs blocked by the failure breaker.", value=self._trips
        )
        yield self._durations()

    def _durations(self) -> HistogramMetricFamily:
        duration = HistogramMetricFamily(
            "orchestrator_step_duration_seconds", "Duration of each command attempt.", labels=["status"]
        )
        for status in sorted(self._count):
            cumulative = [(str(b), n) for b, n in zip(DURATION_BUCKETS, self._buckets[status], strict=False)]
            duration.add_metric(
                [status], cumulative + [("+Inf", self._count[status])], sum_value=self._sum[status]
            )
        return duration

    def _run_metrics(self) -> Iterator[Metric]:
        """The runs by status and the steps blocked now, counted in the store at each scrape."""
        runs = GaugeMetricFamily("orchestrator_runs", "Runs in the state store, by status.", labels=["status"])
        for status, count in sorted(self.store.metrics.session_counts().items()):
            runs.add_metric([status], count)
        yield runs
        yield GaugeMetricFamily(
            "orchestrator_blocked_steps", "Steps currently blocked, waiting for a person.", value=self.store.metrics.blocked_step_count()
        )

    def _heartbeat_ages(self) -> GaugeMetricFamily:
        age = GaugeMetricFamily(
            "orchestrator_heartbeat_age_seconds",
            "Seconds since each running run last wrote its heartbeat (alert past 90).",
            labels=["run_id", "project"],
        )
        now = utcnow()
        for beat in self.store.metrics.running_sessions():
            age.add_metric([beat.run_id, beat.project], max((now - beat.updated_at).total_seconds(), 0.0))
        return age

    def _insight_confidence(self) -> GaugeMetricFamily:
        confidence = GaugeMetricFamily(
            "orchestrator_insight_confidence",
            "Confidence of the latest next-step advice of each running or blocked run.",
            labels=["run_id", "project"],
        )
        for session in self.store.sessions.with_status(("running", "blocked")):
            if session.metadata.next_actions is not None:
                confidence.add_metric([session.run_id, session.project], session.metadata.next_actions.confidence)
        return confidence

    def _llm_usage(self) -> Iterator[Metric]:
        """The tokens and cost of model calls, by model."""
        tokens = CounterMetricFamily("orchestrator_llm_tokens", "Tokens used by model calls.", labels=["model"])
        cost = CounterMetricFamily("orchestrator_llm_cost_usd", "Cost of model calls in US dollars.", labels=["model"])
        for total in self.store.metrics.llm_totals():
            tokens.add_metric([total.model], total.tokens)
            cost.add_metric([total.model], total.cost_usd)
        yield tokens
        yield cost


def serve(store: Store, host: str, port: int):
    """Start serving /metrics in a background thread; returns (server, thread).

    The history is read once here, before the first scrape, so that no scrape, the first
    included, has to aggregate the whole results table."""
    collector = StoreCollector(store)
    collector.refresh()
    registry = CollectorRegistry()
    registry.register(collector)
    return start_http_server(port, addr=host, registry=registry)

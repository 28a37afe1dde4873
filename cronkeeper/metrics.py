"""Prometheus ``/metrics``: counters kept from the event stream, history figures from the store.

The exposition format comes from prometheus_client; nothing here formats text by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from cronkeeper.events import Event, RunFinished

if TYPE_CHECKING:
    from cronkeeper.daemon import Daemon

# Cron jobs run from milliseconds to hours; buckets cover that range coarsely.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)


class Metrics:
    """Per-daemon registry (tests run several daemons; no global state)."""

    def __init__(self, daemon: Daemon) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.finished = Counter("cronkeeper_runs_finished_total",
                                "Runs that reached a final status since the daemon started",
                                ["task", "status"], registry=self.registry)
        self.duration = Histogram("cronkeeper_run_duration_seconds",
                                  "Wall time of finished runs", ["task"],
                                  buckets=DURATION_BUCKETS, registry=self.registry)
        self._state = _StateCollector(daemon)
        self.registry.register(self._state)

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            data = event.data
            self.finished.labels(data["task"], data["status"]).inc()
            if data.get("duration_ms") is not None:
                self.duration.labels(data["task"]).observe(data["duration_ms"] / 1000)


class _StateCollector(Collector):
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.snapshot: dict[str, Any] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engine = self.d.engine
        queue = GaugeMetricFamily("cronkeeper_queue_depth",
                                  "Runs waiting for a free slot (max_concurrent_runs)")
        queue.add_metric([], engine.queue_depth)
        yield queue
        running = GaugeMetricFamily("cronkeeper_runs_active", "Runs queued or running")
        running.add_metric([], len(engine.runs))
        yield running
        states = GaugeMetricFamily("cronkeeper_tasks", "Tasks by state", labels=["state"])
        counts: dict[str, int] = {}
        for rt in engine.tasks.values():
            state = rt.state(engine.paused_all).value
            counts[state] = counts.get(state, 0) + 1
        for state, count in sorted(counts.items()):
            states.add_metric([state], count)
        yield states
        stored = GaugeMetricFamily("cronkeeper_runs_stored",
                                   "Runs in the history database by task and status",
                                   labels=["task", "status"])
        for task, status, count in self.snapshot.get("counts", []):
            stored.add_metric([task, status], count)
        yield stored
        last = GaugeMetricFamily("cronkeeper_last_success_timestamp_seconds",
                                 "When each task last succeeded (Unix time)", labels=["task"])
        for task, ts in sorted(self.snapshot.get("last_success", {}).items()):
            last.add_metric([task], ts)
        yield last


async def render_metrics(daemon: Daemon) -> tuple[bytes, str]:
    metrics: Metrics = daemon.metrics
    store = daemon.store
    await asyncio.wrap_future(store.barrier())
    counts, last_success = await asyncio.gather(
        asyncio.to_thread(store.count_runs_by_task_status),
        asyncio.to_thread(store.last_success_times),
    )
    metrics._state.snapshot = {"counts": counts, "last_success": last_success}
    return generate_latest(metrics.registry), CONTENT_TYPE_LATEST

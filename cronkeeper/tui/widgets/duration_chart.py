"""A per-task chart of run durations over the most recent runs."""

from __future__ import annotations

from statistics import median
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline

from cronkeeper.tui import formatting as fmt

# How many of the most recent finished runs the chart shows, and columns per run.
CHART_RUNS = 50
BAR_WIDTH = 2


class DurationChart(Vertical):
    """A Sparkline of durations (oldest left, newest right) under a one-line summary."""

    def compose(self) -> ComposeResult:
        yield Label("no finished runs yet", id="chart-summary")
        yield Sparkline([], id="chart-spark")

    def show(self, runs: list[dict[str, Any]]) -> None:
        """Chart ``runs`` (newest first, as the history lists them)."""
        finished = [run for run in runs if run.get("duration_ms") is not None][:CHART_RUNS]
        durations = [float(run["duration_ms"]) for run in reversed(finished)]
        spark = self.query_one(Sparkline)
        spark.data = durations
        # One bar per run (not stretched over the whole width), newest at the right edge.
        spark.styles.width = max(len(durations), 1) * BAR_WIDTH
        label = self.query_one("#chart-summary", Label)
        if not durations:
            label.update("no finished runs yet")
            return
        failed = sum(1 for run in finished if run.get("status") in ("failed", "timed_out"))
        label.update(
            f"durations of the last {fmt.plural(len(durations), 'run')}: "
            f"min {fmt.duration(min(durations))} · median {fmt.duration(median(durations))} "
            f"· max {fmt.duration(max(durations))} · {failed} failed"
        )

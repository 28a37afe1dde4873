"""The one-line daemon status above the task table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual.widgets import Static

from cronkeeper.tui import formatting as fmt


class StatusBar(Static):
    """Version, pid, uptime, task and run counts and the pause-all switch."""

    def show(
        self,
        status: dict[str, Any],
        *,
        tasks: int,
        active_runs: int,
        now: datetime,
        connected: bool,
        filter_text: str = "",
    ) -> None:
        """Render the status line from the daemon's status object and the live counts."""
        line = Text()
        if not connected:
            line.append("● connecting…", style="yellow")
            self.update(line)
            return
        line.append("● ", style="green")
        line.append(f"cronkeeper {status.get('version', '?')}", style="bold")
        line.append(f"  pid {status.get('pid', '?')}")
        started = status.get("started_at")
        if started:
            line.append(f"  up {fmt.relative(started, now).removesuffix(' ago')}")
        line.append(f"  │ {fmt.plural(tasks, 'task')}  {active_runs} running")
        line.append("  │ ")
        if status.get("paused_all"):
            line.append(" ALL PAUSED ", style="bold black on yellow")
        else:
            line.append("scheduling", style="green")
        if status.get("config"):
            line.append(f"  │ {status['config']}", style="dim")
        if filter_text:
            line.append(f"  │ filter: {filter_text}", style="bold cyan")
        self.update(line)

"""The live table of tasks on the main screen."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from cronkeeper.tui import formatting as fmt

COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    # (key, label, width); None lets the column grow with its content
    ("name", "Task", None),
    ("schedule", "Schedule", None),
    ("state", "State", 15),
    ("next", "Next run", 11),
    ("last", "Last result", 11),
    ("duration", "Duration", 9),
    ("active", "Active", 6),
)

_AUTO_WIDTH = frozenset(key for key, _, width in COLUMNS if width is None)


def _same(old: Any, new: Any) -> bool:
    """Whether a cell would look the same (Text equality ignores the base style)."""
    if isinstance(old, Text) and isinstance(new, Text):
        return old.plain == new.plain and old.style == new.style and old.spans == new.spans
    return bool(old == new)


class TaskTable(DataTable[Any]):
    """One row per task, keyed by task name; the app repaints only the rows that changed.

    The "next run" column is relative to the injected clock's ``now`` and is refreshed by
    the screen's timer through ``refresh_relative`` without touching any other cell.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._next_run: dict[str, str | None] = {}
        self._paused: dict[str, bool] = {}

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    @property
    def selected_name(self) -> str | None:
        """Name of the task under the cursor, or None when the table is empty."""
        if self.row_count == 0:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except CellDoesNotExist:
            return None
        return None if row_key.value is None else str(row_key.value)

    def _cells(self, task: dict[str, Any], now: datetime) -> dict[str, Any]:
        last = task.get("last_run") or {}
        name = Text(task["name"], style="bold" if task.get("enabled", True) else "dim")
        schedule = task.get("schedule_text") or task.get("schedule") or "by hand only"
        return {
            "name": name,
            "schedule": Text(str(schedule), style="" if task.get("schedule") else "dim"),
            "state": fmt.task_state_text(task.get("state")),
            "next": self._next_text(task["name"], now),
            "last": fmt.run_status_text(last.get("status")),
            "duration": Text(fmt.duration(last.get("duration_ms")), justify="right"),
            "active": Text(str(len(task.get("active_runs") or ())), justify="right"),
        }

    def _next_text(self, name: str, now: datetime) -> Text:
        text = fmt.relative(self._next_run.get(name), now)
        return Text(text, style="dim" if self._paused.get(name) else "")

    def _remember(self, task: dict[str, Any], paused_all: bool) -> None:
        self._next_run[task["name"]] = task.get("next_run")
        self._paused[task["name"]] = bool(task.get("paused")) or paused_all

    def set_tasks(self, tasks: Iterable[dict[str, Any]], now: datetime, *, paused_all: bool) -> None:
        """Rebuild every row, keeping the cursor on the same task when it is still shown."""
        keep = self.selected_name
        self.clear()
        self._next_run.clear()
        self._paused.clear()
        for task in tasks:
            self._remember(task, paused_all)
            cells = self._cells(task, now)
            self.add_row(*(cells[key] for key, _, _ in COLUMNS), key=task["name"])
        if keep is not None and keep in self._next_run:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    def update_task(self, task: dict[str, Any], now: datetime, *, paused_all: bool) -> bool:
        """Repaint one task's row; False when the row is not shown (filtered out)."""
        try:
            self.get_row_index(task["name"])
        except RowDoesNotExist:
            return False
        self._remember(task, paused_all)
        name = task["name"]
        for key, value in self._cells(task, now).items():
            if _same(self.get_cell(name, key), value):
                continue
            # Only auto-width columns are re-measured: when a cell narrows, DataTable
            # measures every cell of its column again, O(rows) per cell in an event flood.
            self.update_cell(name, key, value, update_width=key in _AUTO_WIDTH)
        return True

    def refresh_relative(self, now: datetime) -> None:
        """Re-render only the relative "next run" texts against ``now``."""
        for name in self._next_run:
            try:
                self.update_cell(name, "next", self._next_text(name, now))
            except (RowDoesNotExist, CellDoesNotExist):
                continue

"""The table of a task's runs on the history screen, loaded page by page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from cronkeeper.tui import formatting as fmt

COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("id", "Run", 8),
    ("trigger", "Trigger", 10),
    ("attempt", "Try", 3),
    ("status", "Status", 11),
    ("started", "Started", 19),
    ("duration", "Duration", 9),
    ("exit", "Exit", 9),
    ("error", "Error", None),
)

# Ask for the next page when the cursor comes this close to the last loaded row.
PREFETCH_ROWS = 3


class RunTable(DataTable[Any]):
    """Runs newest first, keyed by run id. It never fetches: it asks its screen for more."""

    @dataclass
    class NeedMore(Message):
        """The cursor is near the last loaded row; the screen should load the next page."""

        def can_replace(self, message: Message) -> bool:
            # Scrolling fast posts many of these; one pending request is enough.
            return isinstance(message, RunTable.NeedMore)

    def __init__(self, *, tz: tzinfo | None = None, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.tz = tz
        self.runs: list[dict[str, Any]] = []  # shown rows, newest first

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    @property
    def selected_run(self) -> dict[str, Any] | None:
        """The run under the cursor."""
        if not self.runs or not 0 <= self.cursor_row < len(self.runs):
            return None
        return self.runs[self.cursor_row]

    def _cells(self, run: dict[str, Any]) -> list[Any]:
        return [
            Text(f"#{run['id']}", justify="right"),
            run.get("trigger") or fmt.NONE_TEXT,
            Text(str(run.get("attempt") or 1), justify="right"),
            fmt.run_status_text(run.get("status")),
            fmt.timestamp(run.get("started_at") or run.get("queued_at"), self.tz),
            Text(fmt.duration(run.get("duration_ms")), justify="right"),
            Text(fmt.exit_text(run), justify="right"),
            Text(fmt.one_line(run.get("error"), 48), style="red"),
        ]

    def append_runs(self, runs: list[dict[str, Any]]) -> None:
        """Add an older page below the loaded rows (runs already shown are skipped)."""
        shown = {run["id"] for run in self.runs}
        for run in runs:
            if run["id"] in shown:
                continue
            self.runs.append(run)
            self.add_row(*self._cells(run), key=str(run["id"]))

    def upsert_run(self, run: dict[str, Any]) -> None:
        """Repaint a shown run, or put a new one on top (newest first)."""
        for index, known in enumerate(self.runs):
            if known["id"] == run["id"]:
                self.runs[index] = run
                for (key, _, _), value in zip(COLUMNS, self._cells(run), strict=True):
                    try:
                        self.update_cell(str(run["id"]), key, value)
                    except (RowDoesNotExist, CellDoesNotExist):
                        continue
                return
        if self.runs and run["id"] < self.runs[-1]["id"]:
            return  # older than the loaded pages: it will arrive with its page
        self._rebuild([run, *self.runs])

    def _rebuild(self, runs: list[dict[str, Any]]) -> None:
        """DataTable cannot insert at the top, so redraw the loaded rows in order."""
        keep = self.selected_run
        self.clear()
        self.runs = []
        self.append_runs(sorted(runs, key=lambda run: run["id"], reverse=True))
        if keep is not None:
            for index, run in enumerate(self.runs):
                if run["id"] == keep["id"]:
                    self.move_cursor(row=index, animate=False)
                    break

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= self.row_count - PREFETCH_ROWS:
            self.post_message(self.NeedMore())

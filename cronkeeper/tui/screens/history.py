"""One task's runs, newest first, paged by cursor, with a duration chart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from cronkeeper.tui import formatting as fmt
from cronkeeper.tui.messages import RunsChanged
from cronkeeper.tui.widgets.duration_chart import DurationChart
from cronkeeper.tui.widgets.run_table import RunTable

if TYPE_CHECKING:
    from cronkeeper.tui.app import CronkeeperApp

# Runs per request. The history may hold a million rows: only pages the user scrolls
# to are ever fetched.
PAGE_SIZE = 50


class HistoryScreen(Screen[None]):
    """Runs of ``task`` from ``list_runs(task=..., limit=50, before=cursor)``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o,enter", "output", "Output", id="history.output", key_display="enter/o",
                tooltip="View the selected run's captured output"),
        Binding("f", "follow", "Follow", id="history.follow",
                tooltip="Follow the selected run's output live while it runs"),
        Binding("c", "cancel", "Cancel run", id="history.cancel",
                tooltip="Cancel the selected run if it is queued or running (asks first)"),
        Binding("m", "more", "More", id="history.more",
                tooltip="Load the next 50 older runs (also happens at the bottom)"),
        Binding("escape", "back", "Back", id="history.back", key_display="esc",
                tooltip="Back to the task list"),
    ]

    def __init__(self, task_name: str) -> None:
        super().__init__()
        self.task_name = task_name
        self.page_cursor: int | None = None  # `before` for the next page
        self.exhausted = False
        self.fetching = False
        self.pages_loaded = 0

    @property
    def ck(self) -> CronkeeperApp:
        return cast("CronkeeperApp", self.app)

    @property
    def table(self) -> RunTable:
        return self.query_one(RunTable)

    def compose(self) -> ComposeResult:
        task = self.ck.board.tasks.get(self.task_name, {})
        title = Text(f"History of {self.task_name}", style="bold")
        if task.get("description"):
            title.append(f" — {task['description']}")
        schedule = task.get("schedule_text") or task.get("schedule") or "runs by hand only"
        title.append(f"\n{schedule}  ({task.get('timezone') or 'UTC'})", style="dim")
        yield Static(title, id="history-title", classes="screen-title")
        yield DurationChart(id="history-chart")
        yield RunTable(tz=fmt.zone(task.get("timezone")), id="history-runs")
        yield Static("", id="history-status", classes="status-line")
        yield Footer()

    def on_mount(self) -> None:
        self.load_page()

    def _show_status(self) -> None:
        count = len(self.table.runs)
        more = "all runs loaded" if self.exhausted else "more below: scroll down or press m"
        if self.fetching:
            more = "loading…"
        self.query_one("#history-status", Static).update(
            Text(f"{fmt.plural(count, 'run')} shown · {more}", style="dim")
        )

    @work(group="history-page")
    async def load_page(self) -> None:
        """Fetch one page older than what is shown; a no-op while loading or at the end."""
        if self.fetching or self.exhausted:
            return
        self.fetching = True
        self._show_status()
        try:
            runs, cursor = await self.ck.client.list_runs(
                task=self.task_name, limit=PAGE_SIZE, before=self.page_cursor
            )
        except Exception as exc:  # noqa: BLE001 - reported to the user (app.failure_message)
            self.fetching = False
            self._show_status()
            self.ck.report_error("Loading history failed", exc)
            return
        self.fetching = False
        self.pages_loaded += 1
        self.page_cursor = cursor
        self.exhausted = cursor is None
        self.table.append_runs(runs)
        self.query_one(DurationChart).show(self.table.runs)
        self._show_status()

    def on_run_table_need_more(self, _: RunTable.NeedMore) -> None:
        self.load_page()

    def on_runs_changed(self, message: RunsChanged) -> None:
        mine = [run for run in message.runs if run.get("task") == self.task_name]
        if not mine:
            return
        for run in mine:
            self.table.upsert_run(run)
        self.query_one(DurationChart).show(self.table.runs)
        self._show_status()

    @on(DataTable.RowSelected, "#history-runs")
    def _selected(self, _: DataTable.RowSelected) -> None:
        self.action_output()

    def _target_run(self) -> dict[str, Any] | None:
        run = self.table.selected_run
        if run is None:
            self.notify("No run selected", severity="warning")
        return run

    def action_output(self) -> None:
        if (run := self._target_run()) is not None:
            self.ck.open_output(run["id"], task=self.task_name, follow=False)

    def action_follow(self) -> None:
        if (run := self._target_run()) is not None:
            self.ck.open_output(run["id"], task=self.task_name,
                                follow=run.get("status") in fmt.ACTIVE_RUN_STATUSES)

    def action_cancel(self) -> None:
        if (run := self._target_run()) is None:
            return
        if run.get("status") not in fmt.ACTIVE_RUN_STATUSES:
            self.notify(f"Run #{run['id']} already {run.get('status')}", severity="warning")
            return
        self.ck.confirm_cancel(run["id"], self.task_name)

    def action_more(self) -> None:
        if self.exhausted:
            self.notify("All runs are loaded")
        self.load_page()

    def action_back(self) -> None:
        self.dismiss(None)

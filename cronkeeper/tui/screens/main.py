"""The task list: live status of every task, and the keys that act on them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from cronkeeper.tui import formatting as fmt
from cronkeeper.tui.messages import StatusChanged, TasksChanged
from cronkeeper.tui.screens.modals import ParamsModal
from cronkeeper.tui.widgets.status_bar import StatusBar
from cronkeeper.tui.widgets.task_table import TaskTable

if TYPE_CHECKING:
    from cronkeeper.tui.app import CronkeeperApp

# Seconds between re-renders of the relative "next run" texts. Only the texts move;
# the data itself changes through events.
RELATIVE_REFRESH = 5.0


class MainScreen(Screen[None]):
    """Status line, optional filter box, the task table, a detail line and the footer."""

    AUTO_FOCUS = "#tasks"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run", id="main.run",
                tooltip="Run the selected task now (trigger: manual)"),
        Binding("R", "run_params", "Run…", id="main.run_params",
                tooltip="Run the selected task now with parameters k=v k2=v2"),
        Binding("p", "toggle_pause", "Pause", id="main.pause",
                tooltip="Pause the selected task, or resume it when paused"),
        Binding("P", "toggle_pause_all", "Pause all", id="main.pause_all",
                tooltip="Pause every scheduled fire, or resume them all"),
        Binding("h,enter", "history", "History", id="main.history", key_display="enter/h",
                tooltip="Open the selected task's run history and duration chart"),
        Binding("o", "output", "Output", id="main.output",
                tooltip="View the output of the selected task's last run"),
        Binding("f", "follow", "Follow", id="main.follow",
                tooltip="Follow the live output of the selected task's active run"),
        Binding("c", "cancel", "Cancel", id="main.cancel",
                tooltip="Cancel the selected task's active run (asks for confirmation)"),
        Binding("ctrl+r", "reload", "Reload", id="main.reload",
                tooltip="Reload cronkeeper.toml in the daemon; errors are shown if rejected"),
        Binding("slash", "filter", "Filter", id="main.filter", key_display="/",
                tooltip="Filter tasks by name, description or schedule as you type"),
        Binding("escape", "clear_filter", "Clear filter", id="main.clear_filter",
                key_display="esc", show=False, tooltip="Clear and hide the filter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""

    @property
    def ck(self) -> CronkeeperApp:
        return cast("CronkeeperApp", self.app)

    @property
    def table(self) -> TaskTable:
        return self.query_one(TaskTable)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield Input(placeholder="filter: name, description or schedule", id="filter")
        yield TaskTable(id="tasks")
        yield Static("", id="task-detail", classes="status-line")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(RELATIVE_REFRESH, self.refresh_relative)
        self.rebuild()

    # -- rendering ---------------------------------------------------------------

    def rebuild(self) -> None:
        """Redraw every row (after connecting, a reload, or a filter change)."""
        board = self.ck.board
        self.table.set_tasks(board.matching(self.filter_text), self.ck.clock.now(),
                             paused_all=board.paused_all)
        self.show_status()
        self.show_detail()

    def show_status(self) -> None:
        board = self.ck.board
        self.query_one(StatusBar).show(
            board.status, tasks=len(board.tasks), active_runs=board.active_run_count,
            now=self.ck.clock.now(), connected=self.ck.connected, filter_text=self.filter_text,
        )

    def show_detail(self) -> None:
        """One line about the selected task: description, what it runs, its policies."""
        task = self.selected_task
        detail = self.query_one("#task-detail", Static)
        if task is None:
            empty = "no task matches the filter" if self.filter_text else "no tasks"
            detail.update(Text(empty if self.ck.connected else "", style="dim"))
            return
        line = Text()
        line.append(task["name"], style="bold")
        if task.get("description"):
            line.append(f" — {task['description']}")
        runs = task.get("command") if task.get("kind") == "command" else task.get("handler")
        if isinstance(runs, list):
            runs = " ".join(str(part) for part in runs)
        line.append(f"\n{task.get('kind', '')}: {fmt.one_line(runs, 70)}", style="dim")
        line.append(f"  tz {task.get('timezone') or 'UTC'}  overlap {task.get('overlap')}"
                    f"  retries {task.get('retry_count', 0)}/{task.get('retries', 0)}", style="dim")
        detail.update(line)

    def refresh_relative(self) -> None:
        """Timer: re-render the "in 3m" texts and the uptime against the clock."""
        self.table.refresh_relative(self.ck.clock.now())
        self.show_status()

    def on_tasks_changed(self, message: TasksChanged) -> None:
        board = self.ck.board
        if message.rebuild:
            self.rebuild()
            return
        now = self.ck.clock.now()
        for name in message.names:
            task = board.tasks.get(name)
            if task is not None:
                self.table.update_task(task, now, paused_all=board.paused_all)
        self.show_status()
        if self.table.selected_name in message.names:
            self.show_detail()

    def on_status_changed(self, _: StatusChanged) -> None:
        self.rebuild()

    @on(DataTable.RowHighlighted, "#tasks")
    def _highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.show_detail()

    @on(DataTable.RowSelected, "#tasks")
    def _selected(self, _: DataTable.RowSelected) -> None:
        self.action_history()

    # -- filter --------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("-shown")
        self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self.rebuild()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, _: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        box.set_class(bool(box.value), "-shown")
        self.table.focus()

    # -- task actions ----------------------------------------------------------------

    @property
    def selected_task(self) -> dict[str, Any] | None:
        name = self.table.selected_name
        return None if name is None else self.ck.board.tasks.get(name)

    def _target(self) -> dict[str, Any] | None:
        task = self.selected_task
        if task is None:
            self.notify("No task selected", severity="warning")
        return task

    def action_run(self) -> None:
        if (task := self._target()) is not None:
            self.ck.run_task(task["name"])

    def action_run_params(self) -> None:
        if (task := self._target()) is None:
            return
        name = task["name"]

        def chosen(params: dict[str, Any] | None) -> None:
            if params is not None:
                self.ck.run_task(name, params)

        self.app.push_screen(ParamsModal(name, task.get("params") or {}), chosen)

    def action_toggle_pause(self) -> None:
        if (task := self._target()) is not None:
            self.ck.toggle_pause(task)

    def action_toggle_pause_all(self) -> None:
        self.ck.toggle_pause_all()

    def action_history(self) -> None:
        if (task := self._target()) is not None:
            self.ck.open_history(task["name"])

    def action_output(self) -> None:
        if (task := self._target()) is None:
            return
        last = task.get("last_run")
        if not last:
            self.notify(f"{task['name']} has not run yet", severity="warning")
            return
        self.ck.open_output(last["id"], task=task["name"], follow=False)

    def action_follow(self) -> None:
        if (task := self._target()) is None:
            return
        active = task.get("active_runs") or []
        if not active:
            self.notify(f"{task['name']} has no active run to follow", severity="warning")
            return
        self.ck.open_output(active[-1], task=task["name"], follow=True)

    def action_cancel(self) -> None:
        if (task := self._target()) is None:
            return
        active = task.get("active_runs") or []
        if not active:
            self.notify(f"{task['name']} has no active run to cancel", severity="warning")
            return
        self.ck.confirm_cancel(active[-1], task["name"])

    def action_reload(self) -> None:
        self.ck.reload_config()

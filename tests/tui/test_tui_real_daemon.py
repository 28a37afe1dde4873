"""The dashboard driven like a user would, against a REAL daemon subprocess.

``tests/tui/test_tui_pilot.py`` checks the dashboard's logic against a FakeClient. These
tests check that the same keys work end to end: the real ``AsyncClient`` over the daemon's
Unix socket, its real event stream, real child processes and the real SQLite file. The
cross-checks go through the daemon's API (the sync ``Client``) and its database.

Every wait is a bounded poll between Pilot pauses with a generous deadline; nothing
sleeps for a fixed time and nothing asserts on timings. Each test has its own daemon in
its own ``tmp_path``, so the file is safe under ``pytest-xdist``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from harness import DEADLINE, DaemonProcess
from rich.text import Text
from textual.content import Content
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Log, Static

from cronkeeper.client import AsyncClient, Client
from cronkeeper.clock import SystemClock
from cronkeeper.tui.app import CronkeeperApp, make_app
from cronkeeper.tui.board import Changes, Event
from cronkeeper.tui.screens.history import HistoryScreen
from cronkeeper.tui.screens.main import MainScreen
from cronkeeper.tui.screens.modals import ConfirmModal, MessageModal
from cronkeeper.tui.screens.output import OutputScreen
from cronkeeper.tui.screens.unreachable import UnreachableScreen

SIZE = (120, 40)
T = TypeVar("T")

# Tasks without a schedule: nothing fires unless a test presses a key.
TASKS = """
    [tasks.hello]
    description = "Says hello"
    command = "echo hello-from-$CRONKEEPER_TASK; echo second line"

    [tasks.sleeper]
    description = "Runs until cancelled"
    command = "sleep 300"
"""


# -- helpers ---------------------------------------------------------------------------


async def until(pilot: Pilot[Any], predicate: Callable[[], Any], what: str,
                within: float = DEADLINE) -> Any:
    """Pause the pilot until ``predicate()`` is truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            app = pilot.app
            raise AssertionError(f"timed out after {within}s waiting for {what}; "
                                 f"screen stack: {[type(s).__name__ for s in app.screen_stack]}")
        await pilot.pause(0.02)


async def api(daemon: DaemonProcess, call: Callable[[Client], T]) -> T:
    """One blocking API request, in a thread so the app's event loop keeps running."""

    def send() -> T:
        with daemon.client() as client:
            return call(client)

    return await asyncio.to_thread(send)


def db_rows(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def cell(app: CronkeeperApp, task: str, column: str) -> str:
    value = app.main_screen.table.get_cell(task, column)
    return value.plain if isinstance(value, Text) else str(value)


def row_names(app: CronkeeperApp) -> list[str]:
    return [str(row.key.value) for row in app.main_screen.table.ordered_rows]


def static_text(widget: Static) -> str:
    content = widget.content
    return content.plain if isinstance(content, Text | Content) else str(content)


def visible_text(widget: Widget) -> str:
    """The lines the widget currently paints on screen (what a user would see)."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


def on_main(app: CronkeeperApp) -> bool:
    """Connected, back on the task list, with rows drawn."""
    return (app.connected and type(app.screen) is MainScreen
            and app.main_screen.table.row_count > 0)


async def select(pilot: Pilot[Any], task: str) -> None:
    """Move the cursor onto ``task`` with the arrow keys, as a user would."""
    app = pilot.app
    assert isinstance(app, CronkeeperApp)
    table = app.main_screen.table
    target = table.get_row_index(task)
    while table.cursor_row != target:
        await pilot.press("down" if table.cursor_row < target else "up")
    await until(pilot, lambda: table.selected_name == task, f"cursor on {task}")


def dashboard(daemon: DaemonProcess, client: AsyncClient | None = None) -> CronkeeperApp:
    """The app as ``cronkeeper tui`` builds it: the real client and the real clock."""
    return make_app(client or AsyncClient(daemon.socket_path), SystemClock(),
                    socket_path=str(daemon.socket_path), tried=("--socket",), close_client=True)


class EventSpy:
    """Records ``(kind, task name)`` of every event the app applies to its board."""

    def __init__(self, app: CronkeeperApp) -> None:
        self.applied: list[tuple[str, str]] = []
        apply = app.board.apply

        def spy(events: Iterable[Event]) -> Changes:
            batch = list(events)
            self.applied.extend((kind, str(data.get("name") or data.get("task")))
                                for kind, data in batch)
            return apply(batch)

        app.board.apply = spy

    async def stream_live(self, pilot: Pilot[Any], daemon: DaemonProcess,
                          probe: str = "hello") -> None:
        """Until the app's ``/v1/events`` subscription is open and delivering.

        The rows appear after the first task-list fetch, before the stream is open, so
        what a test does right then reaches the row only through the re-fetch on
        ``stream.open``. Waiting here makes each test see one path: live events.
        ``reset-retries`` is harmless and publishes ``task.updated``: once the app
        applies one, the stream is live, and SSE keeps every later event in order.
        """
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            seen = len(self.applied)

            def probed(seen: int = seen) -> bool:
                return ("task.updated", probe) in self.applied[seen:]

            await api(daemon, lambda c: c.task_action(probe, "reset-retries"))
            try:
                await until(pilot, probed, "the probe event", within=1.0)
                return
            except AssertionError:
                continue  # published before the subscription: probe again
        raise AssertionError("the dashboard never subscribed to /v1/events")


async def ready(pilot: Pilot[Any], daemon: DaemonProcess, spy: EventSpy,
                probe: str = "hello") -> None:
    """Connected, rows drawn, and the event stream live."""
    app = pilot.app
    assert isinstance(app, CronkeeperApp)
    await until(pilot, lambda: on_main(app), "the task list")
    await spy.stream_live(pilot, daemon, probe)


# -- tests ------------------------------------------------------------------------------


async def test_run_pause_history_output(start_daemon: Callable[..., DaemonProcess]) -> None:
    d = start_daemon(TASKS)
    app = dashboard(d)
    spy = EventSpy(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, d, spy)
        assert row_names(app) == ["hello", "sleeper"]
        assert cell(app, "hello", "last") == "—"

        # r: a manual run; the row follows the daemon's events to "succeeded".
        await pilot.press("r")
        await until(pilot, lambda: cell(app, "hello", "last") == "succeeded", "hello succeeded")
        assert cell(app, "hello", "active") == "0"
        runs, _ = await api(d, lambda c: c.list_runs(task="hello"))
        assert [(r["trigger"], r["status"]) for r in runs] == [("manual", "succeeded")]
        run_id = runs[0]["id"]
        assert db_rows(d.db_path, "SELECT task, trigger, status FROM run WHERE id = ?",
                       run_id) == [("hello", "manual", "succeeded")]

        # p pauses, p again resumes: the daemon's word, and the row.
        await pilot.press("p")
        await until(pilot, lambda: cell(app, "hello", "state") == "paused", "row paused")
        task = await api(d, lambda c: c.get_task("hello"))
        assert (task["state"], task["paused"]) == ("paused", True)
        await pilot.press("p")
        await until(pilot, lambda: cell(app, "hello", "state") == "active", "row resumed")
        task = await api(d, lambda c: c.get_task("hello"))
        assert (task["state"], task["paused"]) == ("active", False)

        # enter: the history lists the run.
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen), "history")
        history = app.screen
        assert isinstance(history, HistoryScreen)
        await until(pilot, lambda: history.pages_loaded == 1, "the first page of runs")
        assert [(r["id"], r["trigger"], r["status"]) for r in history.table.runs] == [
            (run_id, "manual", "succeeded")]
        assert history.exhausted
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen) is MainScreen, "back to the task list")

        # o: the last run's output, painted in the log widget.
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, OutputScreen), "the output screen")
        output = app.screen
        assert isinstance(output, OutputScreen)
        assert output.run_id == run_id
        await until(pilot, lambda: output.finished, "the output loaded")
        log = output.query_one("#output-log", Log)
        await until(pilot, lambda: "hello-from-hello" in visible_text(log), "the output shown")
        assert log.lines[:2] == ["hello-from-hello", "second line"]
        assert await api(d, lambda c: c.get_output(run_id)) == "hello-from-hello\nsecond line\n"
        status = static_text(output.query_one("#output-status", Static))
        assert f"#{run_id}" in status and "succeeded" in status and "exit 0" in status
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen) is MainScreen, "back to the task list")


async def test_cancel_a_running_task(start_daemon: Callable[..., DaemonProcess]) -> None:
    d = start_daemon(TASKS)
    app = dashboard(d)
    spy = EventSpy(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, d, spy)
        await select(pilot, "sleeper")
        await pilot.press("r")
        await until(pilot, lambda: cell(app, "sleeper", "last") == "running", "sleeper running")
        assert cell(app, "sleeper", "state") == "running"
        (run_id,) = app.board.tasks["sleeper"]["active_runs"]
        assert (await api(d, lambda c: c.get_run(run_id)))["status"] == "running"

        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: cell(app, "sleeper", "last") == "cancelled", "row cancelled")
        await until(pilot, lambda: cell(app, "sleeper", "active") == "0", "no active run")
        run = await api(d, lambda c: c.get_run(run_id))
        assert run["status"] == "cancelled"
        assert run["trigger"] == "manual"


async def test_reload_rejected_then_accepted(start_daemon: Callable[..., DaemonProcess]) -> None:
    d = start_daemon(TASKS)
    app = dashboard(d)
    spy = EventSpy(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, d, spy)

        # An invalid file: every error is listed, the daemon keeps its configuration.
        d.write_config(TASKS + """
            [tasks.broken]
            schedule = "61 * * * *"
            command = "true"
            retires = 3
        """)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: isinstance(app.screen, MessageModal), "the errors dialog")
        dialog = app.screen
        title = "\n".join(static_text(w) for w in dialog.query(".dialog-title").results(Static))
        assert "rejected" in title and "previous one" in title
        lines = "\n".join(static_text(w) for w in dialog.query(".dialog-line").results(Static))
        assert "[tasks.broken] schedule" in lines
        assert "retires" in lines
        tasks = await api(d, lambda c: c.list_tasks())
        assert [t["name"] for t in tasks] == ["hello", "sleeper"]
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen) is MainScreen, "dialog closed")
        assert row_names(app) == ["hello", "sleeper"]

        # A valid file: the new task appears in the table (config.reloaded → refetch).
        d.write_config(TASKS + """
            [tasks.newcomer]
            command = "true"
        """)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "newcomer" in row_names(app), "the new task's row")
        tasks = await api(d, lambda c: c.list_tasks())
        assert sorted(t["name"] for t in tasks) == ["hello", "newcomer", "sleeper"]


async def test_daemon_stop_then_reconnect(start_daemon: Callable[..., DaemonProcess]) -> None:
    d = start_daemon(TASKS)
    app = dashboard(d)
    spy = EventSpy(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, d, spy)

        await asyncio.to_thread(d.stop)
        await until(pilot, lambda: isinstance(app.screen, UnreachableScreen),
                    "the unreachable screen")
        screen = app.screen
        assert isinstance(screen, UnreachableScreen)
        await until(pilot, lambda: str(d.socket_path) in screen.reason, "the socket path shown")
        assert not app.connected

        # Started again: the dashboard reconnects by itself (no key pressed).
        await asyncio.to_thread(d.start)
        await ready(pilot, d, spy)
        assert row_names(app) == ["hello", "sleeper"]

        # The new event stream drives the rows.
        await pilot.press("r")
        await until(pilot, lambda: cell(app, "hello", "last") == "succeeded", "hello succeeded")
        runs, _ = await api(d, lambda c: c.list_runs(task="hello"))
        assert [(r["trigger"], r["status"]) for r in runs] == [("manual", "succeeded")]


class LateSubscriber(AsyncClient):
    """The real client, with one manual run of ``hello`` happening (and finishing) right
    after the dashboard's first task-list fetch, i.e. before it subscribes to events."""

    def __init__(self, daemon: DaemonProcess) -> None:
        super().__init__(daemon.socket_path)
        self.daemon = daemon
        self.run_id: int | None = None

    async def list_tasks(self) -> list[dict[str, Any]]:
        tasks = await super().list_tasks()
        if self.run_id is None:
            run = await api(self.daemon, lambda c: c.run_task("hello"))
            self.run_id = run["id"]
            await asyncio.to_thread(self.daemon.events.run_finished, "hello")
        return tasks


async def test_no_event_lost_between_list_and_subscribe(
    start_daemon: Callable[..., DaemonProcess]
) -> None:
    d = start_daemon(TASKS)
    client = LateSubscriber(d)
    app = dashboard(d, client)
    spy = EventSpy(app)
    async with app.run_test(size=SIZE) as pilot:
        # The probe (on the other task: a task.updated of hello would carry its new
        # last_run and mend the row) is published after the run finished. SSE keeps
        # order, so once the app has applied it, it has every event it subscribed for.
        await ready(pilot, d, spy, probe="sleeper")
        await pilot.pause()
        assert client.run_id is not None
        assert (await api(d, lambda c: c.get_task("hello")))["last_run"]["status"] == "succeeded"
        assert cell(app, "hello", "last") == "succeeded"

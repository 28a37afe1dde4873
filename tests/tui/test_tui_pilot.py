"""The dashboard driven like a user would, against an in-memory FakeClient.

Each test waits for conditions (bounded polling between Pilot pauses), never for a fixed
time, and asserts on what the fake daemon was asked to do and on what the screen shows.
"""

from __future__ import annotations

from typing import Any

import pytest
from fake_client import FakeClient, wait_for, wait_ready
from rich.console import Console
from rich.text import Text
from textual.content import Content
from textual.widgets import Input, Log, Static

from cronkeeper.clock import FakeClock
from cronkeeper.errors import ConfigIssue
from cronkeeper.tui.app import BACKOFF, CronkeeperApp, help_sections, make_app
from cronkeeper.tui.board import TaskBoard, coalesce
from cronkeeper.tui.screens.help import HelpScreen, as_binding, key_label
from cronkeeper.tui.screens.history import PAGE_SIZE, HistoryScreen
from cronkeeper.tui.screens.modals import ConfirmModal, MessageModal, ParamsModal, parse_params
from cronkeeper.tui.screens.output import OutputScreen
from cronkeeper.tui.screens.unreachable import UnreachableScreen

SIZE = (120, 40)


def cell(app: CronkeeperApp, task: str, column: str) -> str:
    value = app.main_screen.table.get_cell(task, column)
    return value.plain if isinstance(value, Text) else str(value)


def rows(app: CronkeeperApp) -> list[str]:
    table = app.main_screen.table
    return [str(row.key.value) for row in table.ordered_rows]


def static_text(widget: Static) -> str:
    """The plain text a Static shows (rich renderables rendered at a wide width)."""
    content = widget.content
    if isinstance(content, Text | Content):
        return content.plain
    if isinstance(content, str):
        return content
    console = Console(width=200, color_system=None)
    with console.capture() as capture:
        console.print(content)
    return capture.get()


def record_notifications(app: CronkeeperApp) -> list[str]:
    """Keep every notification text while still showing it."""
    seen: list[str] = []
    original = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        seen.append(f"{kwargs.get('title', '')}: {message}")
        original(message, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return seen


async def select(pilot: Any, task: str) -> None:
    """Move the task table's cursor onto ``task``."""
    table = pilot.app.main_screen.table
    table.move_cursor(row=table.get_row_index(task))
    await pilot.pause()


async def test_main_screen_lists_every_task_with_status(fake: FakeClient, clock: FakeClock) -> None:
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        assert rows(app) == list(fake.tasks)
        assert cell(app, "backup-db", "schedule") == "at 02:30 every day"
        assert cell(app, "backup-db", "next") == "in 13h 30m"
        assert cell(app, "heartbeat", "next") == "in 45s"
        assert cell(app, "report-weekly", "last") == "failed"
        assert cell(app, "sync-mirror", "state") == "running"
        assert cell(app, "migrate-2026", "next") == "—"
        header = static_text(app.main_screen.query_one("#status-bar", Static))
        assert "cronkeeper 0.1.0" in header and "pid 4242" in header and "9 tasks" in header
        assert [name for name, _ in fake.calls] == ["status", "list_tasks", "events"]
        # Relative times follow the clock; the screen's timer re-renders them, no polling.
        clock.advance(20)
        app.main_screen.refresh_relative()
        assert cell(app, "heartbeat", "next") == "in 25s"
        assert len(fake.calls) == 3


async def test_run_now_calls_run_task_and_the_row_follows_events(
    fake: FakeClient, clock: FakeClock
) -> None:
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: fake.calls_to("run_task"), "run_task")
        assert fake.calls_to("run_task") == [("backup-db", None)]
        await wait_for(pilot, lambda: cell(app, "backup-db", "last") == "running", "running")
        assert cell(app, "backup-db", "state") == "running"
        assert cell(app, "backup-db", "active") == "1"


async def test_run_with_params_parses_json_values(fake: FakeClient, clock: FakeClock) -> None:
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await pilot.press("R")  # escape closes the dialog without running anything
        await wait_for(pilot, lambda: isinstance(app.screen, ParamsModal), "the params dialog")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ParamsModal), "dialog closed")
        await select(pilot, "cleanup-logs")
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ParamsModal), "the params dialog")
        await pilot.press(*"days", "enter")  # not k=v: the dialog stays and says why
        await pilot.pause()
        assert isinstance(app.screen, ParamsModal)
        assert "not key=value" in static_text(app.screen.query_one("#params-error", Static))
        await pilot.press("ctrl+u", *"days=7 dry=true p=/x", "enter")
        await wait_for(pilot, lambda: fake.calls_to("run_task"), "run_task")
        assert fake.calls_to("run_task") == [
            ("cleanup-logs", {"days": 7, "dry": True, "p": "/x"})
        ]


def test_parse_params() -> None:
    assert parse_params("") == {}
    assert parse_params("n=3 f=1.5 b=false s=hello none=null") == {
        "n": 3, "f": 1.5, "b": False, "s": "hello", "none": None}
    assert parse_params("""msg='hello world' cfg='{"a": [1, 2]}' eq=a=b""") == {
        "msg": "hello world", "cfg": {"a": [1, 2]}, "eq": "a=b"}
    with pytest.raises(ValueError, match="not key=value"):
        parse_params("=x")
    with pytest.raises(ValueError):
        parse_params("unbalanced='quote")


async def test_pause_and_pause_all_toggle(fake: FakeClient, clock: FakeClock) -> None:
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: cell(app, "backup-db", "state") == "paused", "paused")
        await pilot.press("p")
        await wait_for(pilot, lambda: cell(app, "backup-db", "state") == "active", "resumed")
        assert [name for name, _ in fake.calls if name in ("pause", "resume")] == [
            "pause", "resume"]
        assert fake.calls_to("pause") == [("backup-db",)]
        header = app.main_screen.query_one("#status-bar", Static)
        await pilot.press("P")
        await wait_for(pilot, lambda: "ALL PAUSED" in static_text(header), "ALL PAUSED")
        await pilot.press("P")
        await wait_for(pilot, lambda: "ALL PAUSED" not in static_text(header), "resumed")
        assert [n for n, _ in fake.calls if n.endswith("_all")] == ["pause_all", "resume_all"]


async def test_history_opens_and_pages_by_cursor(fake: FakeClient, clock: FakeClock) -> None:
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await select(pilot, "heartbeat")  # 1,000,000 runs in its history
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), "history")
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        await wait_for(pilot, lambda: screen.pages_loaded == 1, "first page")
        assert screen.table.row_count == PAGE_SIZE
        first = fake.calls_to("list_runs")
        assert first == [("heartbeat", None, PAGE_SIZE, None)]
        await pilot.press("m")
        await wait_for(pilot, lambda: screen.pages_loaded == 2, "second page")
        oldest_shown = screen.table.runs[PAGE_SIZE - 1]["id"]
        assert fake.calls_to("list_runs")[1] == ("heartbeat", None, PAGE_SIZE, oldest_shown)
        # Reaching the bottom loads one more page, not the rest of the million.
        await pilot.press("ctrl+end")
        await wait_for(pilot, lambda: screen.pages_loaded == 3, "third page")
        await pilot.pause()
        assert screen.table.row_count == 3 * PAGE_SIZE
        assert all(args[2] == PAGE_SIZE for args in fake.calls_to("list_runs"))
        ids = [run["id"] for run in screen.table.runs]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HistoryScreen), "back")


async def test_history_stops_at_the_last_page(fake: FakeClient, clock: FakeClock) -> None:
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await select(pilot, "report-weekly")  # 12 runs: one page
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), "history")
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        await wait_for(pilot, lambda: screen.pages_loaded == 1, "first page")
        assert screen.exhausted and screen.table.row_count == 12
        await pilot.press("m", "ctrl+end")
        await pilot.pause()
        assert len(fake.calls_to("list_runs")) == 1


async def test_cancel_asks_first_and_cancels_only_on_yes(
    fake: FakeClient, clock: FakeClock
) -> None:
    app = make_app(fake, clock)
    run_id = fake.active_run("sync-mirror")
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await pilot.press("c")  # backup-db has no active run: nothing to ask
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmModal)
        await select(pilot, "sync-mirror")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirmation")
        await pilot.press("n")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmModal), "dismissed")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirmation")
        await pilot.press("enter")  # the focused button is "No": enter must not cancel
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmModal), "dismissed")
        assert fake.calls_to("cancel") == []
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: fake.calls_to("cancel"), "cancel")
        assert fake.calls_to("cancel") == [(run_id,)]
        await wait_for(pilot, lambda: cell(app, "sync-mirror", "last") == "cancelled", "row")


async def test_reload_errors_are_listed_in_a_modal(fake: FakeClient, clock: FakeClock) -> None:
    fake.reload_issues = [
        ConfigIssue("bad schedule '61 * * * *': minute must be 0-59", task="backup-db",
                    key="schedule"),
        ConfigIssue("unknown key 'retires' (did you mean 'retries'?)", task="fetch-rates"),
    ]
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageModal), "errors modal")
        text = "\n".join(static_text(w) for w in app.screen.query(".dialog-line").results(Static))
        assert "[tasks.backup-db] schedule: bad schedule" in text
        assert "[tasks.fetch-rates]: unknown key 'retires'" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, MessageModal), "closed")


async def test_reload_accepted_notifies_and_refreshes(fake: FakeClient, clock: FakeClock) -> None:
    fake.reload_result = {"added": ["new-task"], "removed": [], "changed": ["backup-db"]}
    app = make_app(fake, clock)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: any("reloaded" in n for n in notes), "notification")
        note = next(n for n in notes if "reloaded" in n)
        assert "added: new-task" in note and "changed: backup-db" in note
        # The config.reloaded event makes the dashboard fetch the task list again.
        await wait_for(pilot, lambda: len(fake.calls_to("list_tasks")) == 2, "refetch")


async def test_filter_narrows_rows_as_you_type(fake: FakeClient, clock: FakeClock) -> None:
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"back")
        await wait_for(pilot, lambda: rows(app) == ["backup-db"], "name filter")
        await pilot.press("ctrl+u", *"monday")  # the schedule in words
        await wait_for(pilot, lambda: rows(app) == ["report-weekly"], "schedule filter")
        await pilot.press("ctrl+u", *"CERTIF")  # the description, in any case
        await wait_for(pilot, lambda: rows(app) == ["rotate-certs"], "description filter")
        await pilot.press("enter")  # keep the filter, back to the table
        assert app.focused is app.main_screen.table
        await pilot.press("r")  # keys act on the filtered row
        await wait_for(pilot, lambda: fake.calls_to("run_task"), "run_task")
        assert fake.calls_to("run_task") == [("rotate-certs", None)]
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(rows(app)) == len(fake.tasks), "filter cleared")


async def test_run_finished_event_updates_the_row(fake: FakeClient, clock: FakeClock) -> None:
    app = make_app(fake, clock)
    run_id = fake.active_run("sync-mirror")
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        assert cell(app, "sync-mirror", "last") == "running"
        finished = dict(fake.extra_runs[run_id], status="failed", exit_code=3,
                        duration_ms=61_000, finished_at="2026-03-14T12:01:01+00:00")
        fake.push_event("run.finished", finished)  # no task.updated: the run alone suffices
        await wait_for(pilot, lambda: cell(app, "sync-mirror", "last") == "failed", "failed")
        assert cell(app, "sync-mirror", "duration") == "1m 01s"
        assert cell(app, "sync-mirror", "state") == "active"
        assert cell(app, "sync-mirror", "active") == "0"


async def test_an_event_flood_is_applied_in_a_few_batches(
    fake: FakeClient, clock: FakeClock
) -> None:
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        batches: list[int] = []
        apply = app.board.apply

        def counting_apply(events: Any) -> Any:
            events = list(events)
            batches.append(len(events))
            return apply(events)

        app.board.apply = counting_apply  # type: ignore[method-assign]
        base = fake.tasks["heartbeat"]["last_run"]
        for n in range(1, 501):
            fake.push_event("run.finished", dict(base, id=10_000_000 + n, duration_ms=n))
        await wait_for(pilot, lambda: cell(app, "heartbeat", "duration") == "500ms", "last run")
        assert len(batches) <= 3  # 500 events, a handful of repaints
        assert sum(batches) == 500  # nothing dropped before coalescing runs by id


def test_coalesce_keeps_the_last_state_per_run_and_task() -> None:
    run = {"id": 7, "task": "a", "status": "queued"}
    events = [
        ("run.queued", run),
        ("task.updated", {"name": "a", "state": "running"}),
        ("run.started", dict(run, status="running")),
        ("config.reloaded", {"added": [], "removed": [], "changed": []}),
        ("run.finished", dict(run, status="succeeded")),
        ("task.updated", {"name": "a", "state": "active"}),
    ]
    assert [(k, d.get("status") or d.get("state")) for k, d in coalesce(events)] == [
        ("config.reloaded", None), ("run.finished", "succeeded"), ("task.updated", "active")]
    board = TaskBoard()
    board.load({}, [{"name": "a", "state": "active", "active_runs": [], "last_run": None}])
    changes = board.apply(coalesce(events))
    assert changes.tasks == {"a"} and changes.reloaded and not changes.structure


async def test_daemon_down_shows_unreachable_then_recovers(
    fake: FakeClient, clock: FakeClock
) -> None:
    app = make_app(fake, clock, tried=("--socket",))
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await pilot.press("h")  # from a deeper screen too
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), "history")
        fake.go_down()
        await wait_for(pilot, lambda: isinstance(app.screen, UnreachableScreen), "unreachable")
        reason = static_text(app.screen.query_one("#unreachable-reason", Static))
        assert fake.socket_path in reason and "--socket" in reason
        retry = app.screen.query_one("#unreachable-retry", Static)
        await wait_for(pilot, lambda: "retrying in 1s" in static_text(retry), "countdown")
        fake.come_back()
        lists_before = len(fake.calls_to("list_tasks"))
        for _ in range(100):  # the backoff waits on the injected clock
            if not isinstance(app.screen, UnreachableScreen):
                break
            clock.advance(1)
            await pilot.pause(0.01)
        await wait_ready(pilot)
        assert type(app.screen).__name__ == "MainScreen"
        assert len(fake.calls_to("list_tasks")) == lists_before + 1  # whole list refreshed
        # The new event stream works.
        fake.finish_run(fake.active_run("sync-mirror"), "succeeded")
        await wait_for(pilot, lambda: cell(app, "sync-mirror", "last") == "succeeded", "event")


async def test_unreachable_at_start_backs_off_and_retry_now(
    fake: FakeClient, clock: FakeClock
) -> None:
    fake.down = True
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, UnreachableScreen), "unreachable")
        retry = app.screen.query_one("#unreachable-retry", Static)
        # Let attempts fail until the delay reaches its cap.
        for _ in range(sum(BACKOFF) + 10):
            if f"retrying in {BACKOFF[-1]}s" in static_text(retry):
                break
            clock.advance(1)
            await pilot.pause(0.01)
        assert f"retrying in {BACKOFF[-1]}s" in static_text(retry)
        assert app.attempt == len(BACKOFF)
        fake.come_back()
        await pilot.press("r")  # no need to wait out the 30 s
        await wait_ready(pilot)
        assert app.attempt == 0


async def test_view_output_of_the_last_run(fake: FakeClient, clock: FakeClock) -> None:
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, OutputScreen), "output screen")
        screen = app.screen
        assert isinstance(screen, OutputScreen)
        await wait_for(pilot, lambda: screen.finished, "output loaded")
        log = screen.query_one(Log)
        assert "run 130 of backup-db (succeeded)" in "\n".join(log.lines)
        assert "succeeded" in static_text(screen.query_one("#output-status", Static))
        assert fake.calls_to("get_output") == [(130,)]


async def test_follow_appends_live_output_until_the_run_ends(
    fake: FakeClient, clock: FakeClock
) -> None:
    app = make_app(fake, clock)
    run_id = fake.active_run("sync-mirror")
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await select(pilot, "sync-mirror")
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, OutputScreen), "output screen")
        screen = app.screen
        assert isinstance(screen, OutputScreen)
        log = screen.query_one(Log)
        await wait_for(pilot, lambda: fake.calls_to("follow_output"), "following")
        fake.write_output(run_id, "receiving file list\n")
        await wait_for(pilot, lambda: "receiving file list" in log.lines, "first chunk")
        fake.write_output(run_id, "sent 1.2M bytes\n")
        await wait_for(pilot, lambda: "sent 1.2M bytes" in log.lines, "second chunk")
        assert not screen.finished
        fake.finish_run(run_id, "succeeded", exit_code=0, duration_ms=42_000)
        await wait_for(pilot, lambda: screen.finished, "end of the run")
        status = static_text(screen.query_one("#output-status", Static))
        assert "succeeded" in status and "exit 0" in status and "42.0s" in status
        assert log.lines[:3] == ["starting sync-mirror", "receiving file list", "sent 1.2M bytes"]


async def test_history_follows_new_runs_live(fake: FakeClient, clock: FakeClock) -> None:
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), "history")
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        await wait_for(pilot, lambda: screen.pages_loaded == 1, "first page")
        run = await fake.run_task("backup-db")
        await wait_for(pilot, lambda: screen.table.runs[0]["id"] == run["id"], "new run on top")
        fake.finish_run(run["id"], "failed", exit_code=1, error="exit status 1")
        await wait_for(pilot, lambda: screen.table.runs[0]["status"] == "failed", "finished")
        assert len(fake.calls_to("list_runs")) == 1  # live rows come from events


async def test_help_lists_every_binding(fake: FakeClient, clock: FakeClock) -> None:
    app = make_app(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        text = "\n".join(static_text(w) for w in app.screen.query(".help-section").results(Static))
        sections = help_sections()
        for section in sections:
            assert section.title in text
            for entry in section.bindings:
                binding = as_binding(entry)
                assert binding.id and binding.description and binding.tooltip, binding
                assert binding.description in text and binding.tooltip in text
                assert key_label(binding) in text
        screens = {section.title for section in sections}
        assert {"Task list", "History", "Output", "Daemon not reachable"} <= screens
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen), "closed")


def test_every_screen_binding_has_id_description_and_tooltip() -> None:
    for section in help_sections():
        for entry in section.bindings:
            binding = as_binding(entry)
            assert binding.id and binding.description and binding.tooltip, binding
    ids = [as_binding(b).id for s in help_sections() for b in s.bindings]
    assert len(ids) == len(set(ids))

"""The cronkeeper dashboard: ``make_app(client, clock)`` and ``run_tui(socket_path, tried)``.

The app owns the API client, the injected clock and the ``TaskBoard``. One worker in the
``events`` group connects (status + task list), then consumes ``client.events()``; when
the stream breaks it shows the unreachable screen and reconnects with capped backoff.
Events are buffered and applied at most every ``FLUSH_INTERVAL`` seconds, so a flood of
finishing runs costs one repaint per touched row per interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer

from cronkeeper.clock import Clock
from cronkeeper.errors import ConfigError, DaemonUnreachable
from cronkeeper.tui.board import Event, TaskBoard, coalesce
from cronkeeper.tui.formatting import failure_message
from cronkeeper.tui.messages import RunsChanged, StatusChanged, TasksChanged
from cronkeeper.tui.screens.help import HelpScreen, HelpSection
from cronkeeper.tui.screens.history import HistoryScreen
from cronkeeper.tui.screens.main import MainScreen
from cronkeeper.tui.screens.modals import ConfirmModal, MessageModal, ParamsModal
from cronkeeper.tui.screens.output import OutputScreen
from cronkeeper.tui.screens.unreachable import UnreachableScreen

T = TypeVar("T")

# Events are applied in batches at most this often (seconds of real time: this paces
# repaints, it is not part of any schedule).
FLUSH_INTERVAL = 0.15
# Seconds to wait before each reconnection attempt; the last value repeats (the cap).
BACKOFF = (1, 2, 4, 8, 15, 30)


class CronkeeperApp(App[None]):
    """The dashboard. Build it with ``make_app``; any object with AsyncClient's methods works."""

    TITLE = "cronkeeper"
    CSS_PATH = "cronkeeper.tcss"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="app.quit",
                tooltip="Leave the dashboard (the daemon keeps running)"),
        Binding("question_mark", "help", "Help", id="app.help", key_display="?",
                tooltip="List every key of every screen"),
    ]

    def __init__(self, client: Any, clock: Clock, *, socket_path: str | None = None,
                 tried: Sequence[str] = (), close_client: bool = False) -> None:
        super().__init__()
        self.client = client
        self.clock = clock
        self.socket_path = socket_path or _socket_of(client)
        self.tried = tuple(tried)
        self.close_client = close_client
        self.board = TaskBoard()
        self.connected = False
        self.attempt = 0  # failed connection attempts since the last success
        self._buffer: list[Event] = []
        self._flush_timer: Timer | None = None
        self._retry_now = asyncio.Event()

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen()

    def on_mount(self) -> None:
        self.watch_events()

    async def on_unmount(self) -> None:
        if self.close_client:
            await self.client.aclose()

    @property
    def main_screen(self) -> MainScreen:
        """The task list: always the bottom of the screen stack while the app runs."""
        screen = self.screen_stack[0]
        assert isinstance(screen, MainScreen)
        return screen

    def _post_main(self, message: Message) -> None:
        # Timers and workers may still fire while the app shuts down and the stack is empty.
        if self.screen_stack:
            self.main_screen.post_message(message)

    # -- connection and events --------------------------------------------------------

    @work(exclusive=True, group="events")
    async def watch_events(self) -> None:
        """Connect, follow ``/v1/events``; on any break show the unreachable screen and retry.

        The task list is fetched again once the stream reports ``stream.open`` (the daemon
        has subscribed us), so no event between the listing and the stream is lost.
        """
        while True:
            try:
                await self.refresh_all()
                await self._connected()
                stream = self.client.events()
                try:
                    async for kind, data in stream:
                        if kind == "stream.open":
                            await self.refresh_all()
                            continue
                        self._enqueue(kind, data)
                finally:
                    closer = getattr(stream, "aclose", None)
                    if closer is not None:
                        await closer()
                reason = f"The daemon closed the event stream ({self.socket_path})."
            except DaemonUnreachable as exc:
                reason = self._describe(exc)
            except Exception as exc:  # noqa: BLE001 - any failure here means "reconnect"
                # Shown on the unreachable screen and logged, never swallowed.
                self.log.error(f"event stream failed: {exc!r}")
                reason = f"Connection to the daemon lost: {failure_message(exc)}"
            self._apply_buffered()
            await self._disconnected(reason)
            await self._wait_backoff()

    async def refresh_all(self) -> None:
        """Fetch status and every task again and redraw (on connect and after reloads)."""
        status = await self.client.status()
        tasks = await self.client.list_tasks()
        self.board.load(status, tasks)
        self._post_main(StatusChanged())

    async def _connected(self) -> None:
        self.attempt = 0
        if not self.connected:
            self.connected = True
            await self._pop_to_main()
            self._post_main(StatusChanged())

    async def _disconnected(self, reason: str) -> None:
        self.connected = False
        self.attempt += 1
        if not self.screen_stack:  # shutting down
            return
        top = self.screen
        if isinstance(top, UnreachableScreen):
            top.set_reason(reason)
            return
        await self._pop_to_main()
        await self.push_screen(UnreachableScreen(reason))

    async def _pop_to_main(self) -> None:
        while len(self.screen_stack) > 1:
            await self.pop_screen()

    async def _wait_backoff(self) -> None:
        """Count down this attempt's delay on the clock, or stop early on "retry now"."""
        delay = BACKOFF[min(self.attempt, len(BACKOFF)) - 1]
        self._retry_now.clear()
        for remaining in range(delay, 0, -1):
            self._countdown(remaining)
            sleep = asyncio.ensure_future(self.clock.sleep(1))
            retry = asyncio.ensure_future(self._retry_now.wait())
            try:
                await asyncio.wait({sleep, retry}, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when the app quits and cancels this worker
                sleep.cancel()
                retry.cancel()
            if retry.done() and not retry.cancelled():
                break
        self._countdown(0)

    def _countdown(self, seconds: int) -> None:
        if self.screen_stack and isinstance(self.screen, UnreachableScreen):
            self.screen.set_countdown(seconds, self.attempt)

    def retry_now(self) -> None:
        """Skip the rest of the backoff wait (the unreachable screen's ``r``)."""
        self._retry_now.set()

    def _describe(self, exc: DaemonUnreachable) -> str:
        """The client's message, plus where the socket was looked for when it did not say."""
        if exc.tried or not self.tried:
            return exc.message
        return f"{exc.message}\nLooked for the socket via: {', '.join(self.tried)}."

    def _enqueue(self, kind: str, data: dict[str, Any]) -> None:
        self._buffer.append((kind, data))
        if self._flush_timer is None:
            self._flush_timer = self.set_timer(FLUSH_INTERVAL, self._apply_buffered)

    def _apply_buffered(self) -> None:
        """Apply every buffered event, then tell the screens once what changed."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        events, self._buffer = self._buffer, []
        if not events:
            return
        changes = self.board.apply(coalesce(events))
        if changes.tasks or changes.structure:
            self._post_main(TasksChanged(changes.tasks, rebuild=changes.structure))
        if changes.runs:
            for screen in self.screen_stack:
                if isinstance(screen, HistoryScreen):
                    screen.post_message(RunsChanged(changes.runs))
        if changes.reloaded:
            self._refresh_in_background()

    @work(exclusive=True, group="refresh")
    async def _refresh_in_background(self) -> None:
        try:
            await self.refresh_all()
        except Exception as exc:  # noqa: BLE001 - reported; the events worker reconnects
            self.report_error("Refreshing the task list failed", exc)

    # -- actions shared by the screens ------------------------------------------------

    def report_error(self, what: str, exc: BaseException) -> None:
        """A failed request as an error notification (never markup: messages hold brackets)."""
        self.log.error(f"{what}: {exc!r}")
        self.notify(failure_message(exc), title=what, severity="error", markup=False, timeout=8)

    def call(self, what: str, request: Callable[[], Awaitable[T]],
             done: Callable[[T], None] | None = None) -> None:
        """Send one request in a worker; errors become notifications titled ``what``."""

        async def send() -> None:
            try:
                result = await request()
            except Exception as exc:  # noqa: BLE001 - reported to the user, see failure_message
                self.report_error(what, exc)
                return
            if done is not None:
                done(result)

        self.run_worker(send(), group="actions", description=what)

    def _task_updated(self, task: dict[str, Any]) -> None:
        rebuild = self.board.set_task(task)
        self._post_main(TasksChanged({task["name"]}, rebuild=rebuild))

    def run_task(self, name: str, params: dict[str, Any] | None = None) -> None:
        """Run ``name`` now (``params`` merged over the task's by the daemon)."""

        def started(run: dict[str, Any]) -> None:
            self.notify(f"Started run #{run.get('id')} of {name}", markup=False)

        self.call(f"Running {name} failed", lambda: self.client.run_task(name, params), started)

    def toggle_pause(self, task: dict[str, Any]) -> None:
        """Pause ``task``, or resume it when it is paused; the reply repaints its row."""
        name = task["name"]
        if task.get("paused"):
            self.call(f"Resuming {name} failed", lambda: self.client.resume(name),
                      self._task_updated)
        else:
            self.call(f"Pausing {name} failed", lambda: self.client.pause(name),
                      self._task_updated)

    def toggle_pause_all(self) -> None:
        """Flip the daemon's global pause switch, then re-read its status."""

        async def toggle() -> dict[str, Any]:
            if self.board.paused_all:
                await self.client.resume_all()
            else:
                await self.client.pause_all()
            return await self.client.status()

        def done(status: dict[str, Any]) -> None:
            self.board.status = dict(status)
            self._post_main(StatusChanged())
            state = "paused: no scheduled fire happens" if self.board.paused_all else "resumed"
            self.notify(f"All tasks {state}")

        self.call("Pause-all failed", toggle, done)

    def confirm_cancel(self, run_id: int, task: str) -> None:
        """Ask first; cancel ``run_id`` only on an explicit yes."""

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(f"Cancelling run #{run_id} failed",
                          lambda: self.client.cancel(run_id),
                          lambda run: self.notify(f"Run #{run_id} of {task}: {run.get('status')}",
                                                  markup=False))

        self.push_screen(ConfirmModal(f"Cancel run #{run_id} of {task}?", yes="Cancel run"),
                         answered)

    @work(group="actions")
    async def reload_config(self) -> None:
        """ctrl+r: a rejected file opens a modal listing every issue."""
        try:
            result = await self.client.reload()
        except ConfigError as exc:
            lines = [str(issue) for issue in exc.issues] or [exc.message]
            await self.push_screen(MessageModal("Configuration rejected — the daemon keeps "
                                                "running the previous one", lines))
            return
        except Exception as exc:  # noqa: BLE001 - reported to the user
            self.report_error("Reload failed", exc)
            return
        parts = [f"{key}: {', '.join(result.get(key) or []) or '—'}"
                 for key in ("added", "removed", "changed")]
        self.notify("\n".join(parts), title="Configuration reloaded", markup=False)

    def open_history(self, name: str) -> None:
        """Show the history screen of task ``name``."""
        self.push_screen(HistoryScreen(name))

    def open_output(self, run_id: int, *, task: str = "", follow: bool = False) -> None:
        """Show a run's output; ``follow`` streams it live until the run ends."""
        self.push_screen(OutputScreen(run_id, task=task, follow=follow))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(help_sections()))


def help_sections() -> list[HelpSection]:
    """Every screen's bindings, in the order a user meets them."""
    return [
        HelpSection("Task list", MainScreen.BINDINGS),
        HelpSection("History", HistoryScreen.BINDINGS),
        HelpSection("Output", OutputScreen.BINDINGS),
        HelpSection("Daemon not reachable", UnreachableScreen.BINDINGS),
        HelpSection("Dialogs", [*ParamsModal.BINDINGS, *ConfirmModal.BINDINGS,
                                *MessageModal.BINDINGS]),
        HelpSection("Everywhere", CronkeeperApp.BINDINGS),
    ]


def _socket_of(client: Any) -> str | None:
    path = getattr(client, "socket_path", None)
    return None if path is None else str(path)


def make_app(client: Any, clock: Clock, *, socket_path: str | None = None,
             tried: Sequence[str] = (), close_client: bool = False) -> CronkeeperApp:
    """The dashboard over ``client`` (AsyncClient or anything with the same async methods).

    ``clock.now()`` is the "now" of every relative time, so a FakeClock pins them.
    ``tried`` lists where the socket was looked for, shown when the daemon is unreachable.
    """
    return CronkeeperApp(client, clock, socket_path=socket_path, tried=tried,
                         close_client=close_client)


def run_tui(socket_path: str | Path, tried: Sequence[str] = ()) -> int:
    """Run the dashboard against the daemon at ``socket_path`` until the user quits."""
    # Imported here: the dashboard module must import without the client's dependencies.
    from cronkeeper.async_client import AsyncClient
    from cronkeeper.clock import SystemClock

    client = AsyncClient(socket_path, tuple(tried))
    app = make_app(client, SystemClock(), socket_path=str(socket_path), tried=tried,
                   close_client=True)
    app.run()
    return app.return_code or 0

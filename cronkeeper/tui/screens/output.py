"""A run's captured output, either as a snapshot or followed live until the run ends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

from cronkeeper.tui import formatting as fmt

if TYPE_CHECKING:
    from cronkeeper.tui.app import CronkeeperApp


class OutputScreen(Screen[None]):
    """Shows ``get_output(run_id)``, or appends ``follow_output(run_id)`` chunks live.

    When a followed run ends the status line shows its final status, exit code and
    duration (fetched once with ``get_run``).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="output.back", key_display="esc",
                tooltip="Close the output and go back"),
        Binding("end,G", "bottom", "Bottom", id="output.bottom", key_display="end/G",
                tooltip="Jump to the end of the output and keep following it"),
        Binding("home,g", "top", "Top", id="output.top", key_display="home/g",
                tooltip="Jump to the start of the output"),
    ]

    def __init__(self, run_id: int, *, task: str = "", follow: bool = False) -> None:
        super().__init__()
        self.run_id = run_id
        self.task_name = task
        self.follow = follow
        self.finished = False  # True once the output is complete (tests wait on it)

    @property
    def ck(self) -> CronkeeperApp:
        return cast("CronkeeperApp", self.app)

    def compose(self) -> ComposeResult:
        mode = "following" if self.follow else "output of"
        title = f"{mode} run #{self.run_id}" + (f" of {self.task_name}" if self.task_name else "")
        yield Static(Text(title, style="bold"), id="output-title", classes="screen-title")
        yield Log(id="output-log", highlight=False, auto_scroll=True)
        yield Static("loading…", id="output-status", classes="status-line")
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    @property
    def log_widget(self) -> Log:
        return self.query_one("#output-log", Log)

    def _status(self, text: Text | str) -> None:
        self.query_one("#output-status", Static).update(
            text if isinstance(text, Text) else Text(text)
        )

    @work(exclusive=True, group="output")
    async def _load(self) -> None:
        client = self.ck.client
        try:
            run = await client.get_run(self.run_id)
            if not self.task_name and run.get("task"):
                self.task_name = str(run["task"])
            if self.follow and run.get("status") in fmt.ACTIVE_RUN_STATUSES:
                self._status(Text(f"● {run['status']} — following live output…", style="blue"))
                async for chunk in client.follow_output(self.run_id):
                    self.log_widget.write(chunk)
                run = await client.get_run(self.run_id)
            else:
                self.log_widget.write(await client.get_output(self.run_id))
        except Exception as exc:  # noqa: BLE001 - shown in the status line, and logged
            self.log.error(f"output of run {self.run_id}: {exc!r}")
            self._status(Text(f"✗ {fmt.failure_message(exc)}", style="red"))
            self.finished = True
            return
        self._status(self._final(run))
        self.finished = True

    def _final(self, run: dict[str, Any]) -> Text:
        status = run.get("status") or "?"
        text = Text("run ")
        text.append(f"#{run.get('id', self.run_id)} ")
        text.append_text(fmt.run_status_text(status))
        if status not in fmt.ACTIVE_RUN_STATUSES:
            text.append(f"  exit {fmt.exit_text(run)}  in {fmt.duration(run.get('duration_ms'))}")
        else:
            text.append("  (still running: press f on the task to follow it)")
        if run.get("output_truncated"):
            text.append(f"  output truncated ({run.get('output_bytes')} bytes in total)",
                        style="yellow")
        if run.get("error"):
            text.append(f"  {fmt.one_line(run['error'], 60)}", style="red")
        return text

    def action_back(self) -> None:
        self.dismiss(None)

    def action_bottom(self) -> None:
        self.log_widget.auto_scroll = True
        self.log_widget.scroll_end(animate=False)

    def action_top(self) -> None:
        self.log_widget.auto_scroll = False
        self.log_widget.scroll_home(animate=False)

"""Shown while the daemon does not answer; the app keeps reconnecting underneath it."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

if TYPE_CHECKING:
    from cronkeeper.tui.app import CronkeeperApp


class UnreachableScreen(Screen[None]):
    """Says where the socket was looked for, why it failed, and when the next try is.

    It does not reconnect by itself: the app's events worker does, and updates this
    screen through ``set_reason`` / ``set_countdown``; ``r`` asks the worker to retry now.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retry", "Retry now", id="unreachable.retry",
                tooltip="Try to reach the daemon now instead of waiting"),
    ]

    def __init__(self, reason: str = "") -> None:
        super().__init__()
        self.reason = reason
        self.retry_text = "connecting…"

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="unreachable-box"):
            yield Static("✗ cronkeeper daemon not reachable", id="unreachable-title")
            yield Static(Content(self.reason), id="unreachable-reason")
            yield Static(Content(self._hint()), id="unreachable-hint")
            yield Static(self.retry_text, id="unreachable-retry")
        yield Footer()

    def _hint(self) -> str:
        return (
            "Point the dashboard at another socket with --socket, $CRONKEEPER_SOCKET or\n"
            "--config. This screen goes back to the task list by itself as soon as the\n"
            "daemon answers."
        )

    def set_reason(self, reason: str) -> None:
        """Show why the last attempt failed."""
        self.reason = reason
        if self.is_mounted:
            self.query_one("#unreachable-reason", Static).update(Content(reason))

    def set_countdown(self, seconds: int, attempt: int) -> None:
        """Show "retrying in Ns…" (``seconds`` = 0 while an attempt is in flight)."""
        text = f"retrying in {seconds}s…" if seconds > 0 else "connecting…"
        if attempt > 1:
            text += f"  (attempt {attempt})"
        self.retry_text = text
        if self.is_mounted:
            self.query_one("#unreachable-retry", Static).update(text)

    def action_retry(self) -> None:
        cast("CronkeeperApp", self.app).retry_now()

"""Layout snapshots of the dashboard's main screens (SVG files in __snapshots__/).

Everything unstable is pinned: the FakeClock ("in 3m"), the fake daemon's pid, version,
uptime and data. Regenerate after an intended layout change, then review the SVGs:

    .venv/bin/pytest tests/tui/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

from typing import Any

from fake_client import FakeClient, wait_for, wait_ready

from cronkeeper.clock import FakeClock
from cronkeeper.tui.app import make_app
from cronkeeper.tui.screens.help import HelpScreen
from cronkeeper.tui.screens.history import HistoryScreen
from cronkeeper.tui.screens.unreachable import UnreachableScreen

SIZE = (120, 40)
TRIED = ("$CRONKEEPER_SOCKET",)


def test_main_screen(snap_compare: Any, fake: FakeClient, clock: FakeClock) -> None:
    app = make_app(fake, clock)
    assert snap_compare(app, terminal_size=SIZE, run_before=wait_ready)


def test_history_screen(snap_compare: Any, fake: FakeClient, clock: FakeClock) -> None:
    async def open_history(pilot: Any) -> None:
        await wait_ready(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HistoryScreen), "history")
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.pages_loaded == 1, "first page")

    app = make_app(fake, clock)
    assert snap_compare(app, terminal_size=SIZE, run_before=open_history)


def test_unreachable_screen(snap_compare: Any, fake: FakeClient, clock: FakeClock) -> None:
    fake.down = True

    async def wait_unreachable(pilot: Any) -> None:
        def counting_down() -> bool:
            screen = pilot.app.screen
            return (isinstance(screen, UnreachableScreen) and screen.is_mounted
                    and screen.retry_text.startswith("retrying in 1s"))

        await wait_for(pilot, counting_down, "the unreachable screen's countdown")

    app = make_app(fake, clock, tried=TRIED)
    assert snap_compare(app, terminal_size=SIZE, run_before=wait_unreachable)


def test_help_screen(snap_compare: Any, fake: FakeClient, clock: FakeClock) -> None:
    async def open_help(pilot: Any) -> None:
        await wait_ready(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "help")

    app = make_app(fake, clock)
    assert snap_compare(app, terminal_size=SIZE, run_before=open_help)

"""The Textual dashboard (`cronkeeper tui`): ``make_app(client, clock)`` and ``run_tui``."""

from __future__ import annotations

from cronkeeper.tui.app import CronkeeperApp, make_app, run_tui

__all__ = ["CronkeeperApp", "make_app", "run_tui"]

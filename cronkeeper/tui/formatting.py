"""Pure helpers that turn API objects into the short, coloured text the dashboard shows.

Everything here depends only on its arguments (``now`` is passed in, never read), so the
relative times in snapshots are pinned by the injected clock.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.text import Text

from cronkeeper.errors import CronkeeperError
from cronkeeper.humanize import NONE_TEXT, duration, parse_time, relative, timestamp

__all__ = ["NONE_TEXT", "duration", "parse_time", "relative", "timestamp"]  # re-exported

# Colours of SPEC section 4's words. Finished-but-not-failed outcomes are yellow; a run
# still in flight is blue, so "something is happening" reads the same on every screen.
RUN_STATUS_STYLE: dict[str, str] = {
    "queued": "cyan",
    "running": "bold blue",
    "succeeded": "green",
    "failed": "bold red",
    "timed_out": "bold red",
    "skipped": "yellow dim",
    "interrupted": "yellow",
    "cancelled": "yellow",
}

TASK_STATE_STYLE: dict[str, str] = {
    "active": "green",
    "paused": "yellow",
    "running": "bold blue",
    "retry-scheduled": "magenta",
    "completed": "dim",
    "disabled": "dim",
}

ACTIVE_RUN_STATUSES = frozenset({"queued", "running"})


def zone(name: str | None) -> tzinfo | None:
    """The named zone, or None when it is missing or unknown (the caller keeps UTC)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def run_status_text(status: str | None) -> Text:
    """A run status in its colour (``—`` when there is no run)."""
    if not status:
        return Text(NONE_TEXT, style="dim")
    return Text(status, style=RUN_STATUS_STYLE.get(status, ""))


def task_state_text(state: str | None) -> Text:
    """A task state in its colour."""
    return Text(state or NONE_TEXT, style=TASK_STATE_STYLE.get(state or "", ""))


def exit_text(run: dict[str, Any]) -> str:
    """Exit code, or the signal that ended the run."""
    if run.get("signal"):
        signal = run["signal"]
        return str(signal) if not isinstance(signal, int) else f"signal {signal}"
    code = run.get("exit_code")
    return NONE_TEXT if code is None else str(code)


def plural(count: int, noun: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def one_line(text: Any, width: int = 60) -> str:
    """First line of ``text``, cut to ``width`` with an ellipsis."""
    if text is None or text == "":
        return ""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def failure_message(exc: BaseException) -> str:
    """What to tell the user about a failed request.

    Requests are caught broadly (``except Exception``) because a client may let a
    transport error through untranslated; the dashboard reports it instead of crashing.
    Only the request is inside such a ``try``, so bugs in our own code still surface.
    """
    if isinstance(exc, CronkeeperError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

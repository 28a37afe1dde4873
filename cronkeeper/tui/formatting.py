"""Pure helpers that turn API objects into the short, coloured text the dashboard shows.

Everything here depends only on its arguments (``now`` is passed in, never read), so the
relative times in snapshots are pinned by the injected clock.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.text import Text

from cronkeeper.errors import CronkeeperError

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
NONE_TEXT = "—"


def parse_time(value: str | None) -> datetime | None:
    """An API timestamp (ISO 8601 with offset) as an aware datetime, or None."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _span(seconds: float) -> str:
    """A coarse, two-unit span: ``42s``, ``3m``, ``2h 5m``, ``3d 4h``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def relative(when: datetime | str | None, now: datetime) -> str:
    """``in 3m`` for the future, ``5m ago`` for the past, ``now`` within a second."""
    moment = parse_time(when) if isinstance(when, str) or when is None else when
    if moment is None:
        return NONE_TEXT
    delta = (moment - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {_span(delta)}" if delta > 0 else f"{_span(-delta)} ago"


def duration(ms: float | int | None) -> str:
    """A run's duration: ``850ms``, ``3.2s``, ``1m 05s``, ``2h 03m``."""
    if ms is None:
        return NONE_TEXT
    if ms < 1000:
        return f"{int(ms)}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def zone(name: str | None) -> tzinfo | None:
    """The named zone, or None when it is missing or unknown (the caller keeps UTC)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def timestamp(value: str | None, tz: tzinfo | None = None) -> str:
    """An absolute time for tables, in ``tz`` (the task's zone) when given."""
    moment = parse_time(value)
    if moment is None:
        return NONE_TEXT
    if tz is not None:
        moment = moment.astimezone(tz)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


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

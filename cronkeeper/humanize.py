"""Short human renderings shared by the CLI tables and the dashboard.

Everything depends only on its arguments (``now`` is passed in, never read), so relative
times in the dashboard's snapshots are pinned by the injected clock.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

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


def span(seconds: float) -> str:
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
    return f"in {span(delta)}" if delta > 0 else f"{span(-delta)} ago"


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


def timestamp(value: str | None, tz: tzinfo | None = None) -> str:
    """An absolute time for tables, in ``tz`` (the task's zone) when given."""
    moment = parse_time(value)
    if moment is None:
        return NONE_TEXT
    if tz is not None:
        moment = moment.astimezone(tz)
    return moment.strftime("%Y-%m-%d %H:%M:%S")

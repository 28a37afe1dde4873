"""Short human renderings shared by the CLI tables and the dashboard."""

from __future__ import annotations

from datetime import datetime


def parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def relative(when: datetime | None, now: datetime) -> str:
    """"in 3m", "5s ago", "now"; two units at most ("in 2h 5m")."""
    if when is None:
        return "-"
    seconds = (when - now).total_seconds()
    future = seconds >= 0
    span = abs(seconds)
    if span < 1:
        return "now"
    text = span_text(span)
    return f"in {text}" if future else f"{text} ago"


def span_text(seconds: float) -> str:
    seconds = int(round(seconds))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    parts = []
    for name, size in units:
        if seconds >= size:
            parts.append(f"{seconds // size}{name}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts) or "0s"


def duration_ms(ms: int | float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{int(ms)}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    return span_text(ms / 1000)


def local_time(value: str | None) -> str:
    """An API timestamp as local wall time, "2026-11-25 18:30:01"."""
    when = parse_iso(value)
    if when is None:
        return "-"
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")

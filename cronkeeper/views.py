"""API objects (SPEC 5): how runs and tasks look in JSON, SSE and ``--json`` output.

Records hold epoch floats; here they become ISO 8601 strings with the offset of the daemon's
time zone, so one spelling serves the API, the events stream and the CLI.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from cronkeeper.engine import Engine, TaskRuntime

RUN_KEYS = ("id", "task", "trigger", "attempt", "status", "scheduled_for", "queued_at",
            "started_at", "finished_at", "duration_ms", "exit_code", "signal", "error",
            "result", "params", "output_bytes", "output_truncated", "pid")
_TIME_KEYS = ("scheduled_for", "queued_at", "started_at", "finished_at")


def iso(ts: float | None, tz: ZoneInfo) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="milliseconds")


def run_json(record: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    out = {key: record.get(key) for key in RUN_KEYS}
    for key in _TIME_KEYS:
        out[key] = iso(record.get(key), tz)
    if "host" in record:
        out["host"] = record["host"]
    return out


def task_json(engine: Engine, rt: TaskRuntime, tz: ZoneInfo) -> dict[str, Any]:
    task = rt.config
    sched = task.schedule
    next_run = engine.next_run(rt)
    command: Any = task.command if isinstance(task.command, str) or task.command is None \
        else list(task.command)
    return {
        "name": task.name,
        "description": task.description,
        "schedule": sched.text if sched is not None else None,
        "schedule_text": sched.describe() if sched is not None else "manual only",
        "timezone": task.timezone,
        "kind": task.kind,
        "command": command,
        "handler": task.handler,
        "params": dict(task.params),
        "enabled": task.enabled,
        "state": rt.state(engine.paused_all).value,
        "paused": rt.paused,
        "next_run": next_run.astimezone(tz).isoformat() if next_run is not None else None,
        "last_run": run_json(rt.last_run, tz) if rt.last_run is not None else None,
        "active_runs": sorted(list(rt.active) + ([rt.pending.id] if rt.pending else [])),
        "retry_count": rt.retry_count,
        "retry_at": iso(rt.retry_due, tz),
        "overlap": task.overlap.value,
        "timeout": task.timeout,
        "retries": task.retries,
    }

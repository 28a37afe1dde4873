"""An in-memory stand-in for ``cronkeeper.client.AsyncClient``, for dashboard tests.

It has the same async methods, realistic SPEC 5 objects, an event stream fed by
``push_event``, a "daemon down" switch, and a log of every call in ``calls``. Run history
is generated on demand from the run id, so a task can have 1,000,000 runs without any
of them existing until a page is asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

from cronkeeper.errors import (
    ConfigError,
    ConfigIssue,
    Conflict,
    DaemonUnreachable,
    RunNotFound,
    TaskNotFound,
)

NOW = datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC)
SOCKET = "/run/cronkeeper/cronkeeper.sock"
_DROP = object()  # queued into an event stream: the connection drops there


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@dataclass(frozen=True)
class _History:
    """A task's past runs: ids first_id .. first_id+count-1, one every ``every``."""

    first_id: int
    count: int
    every: timedelta
    base_ms: int
    anchor: datetime  # the next fire; past runs fell on whole intervals before it

    @property
    def last_id(self) -> int:
        return self.first_id + self.count - 1


# name, description, schedule, words, tz, kind, what, state, next (delta from NOW),
# history size, interval, base duration ms
_TASKS: list[tuple[Any, ...]] = [
    ("backup-db", "Nightly database backup", "30 2 * * *", "at 02:30 every day",
     "Europe/Berlin", "command", "pg_dump app > /var/backups/app.sql", "active",
     timedelta(hours=13, minutes=30), 130, timedelta(days=1), 72_000),
    ("cleanup-logs", "Delete old application logs", "every 6h", "every 6 hours", "UTC",
     "handler", "maintenance:cleanup_files", "active", timedelta(hours=6), 40,
     timedelta(hours=6), 2_400),
    ("sync-mirror", "Mirror packages from upstream", "*/5 * * * *", "every 5 minutes", "UTC",
     "command", ["rsync", "-a", "rsync://mirror/pkgs", "/srv/mirror"], "running",
     timedelta(minutes=5), 200, timedelta(minutes=5), 95_000),
    ("report-weekly", "Weekly usage report for finance", "0 8 * * mon",
     "at 08:00 on Monday", "Europe/Berlin", "handler", "reports:weekly", "active",
     timedelta(days=1, hours=19), 12, timedelta(days=7), 41_000),
    ("fetch-rates", "Fetch exchange rates", "every 15m", "every 15 minutes", "UTC",
     "command", "curl -fsS https://rates.example/api > /srv/rates.json", "retry-scheduled",
     timedelta(seconds=30), 300, timedelta(minutes=15), 1_300),
    ("rotate-certs", "Renew TLS certificates", "@weekly", "at 00:00 on Sunday", "UTC",
     "command", "certbot renew --quiet", "paused", timedelta(days=1, hours=12), 8,
     timedelta(days=7), 12_500),
    ("migrate-2026", "One-off data migration", "at 2026-03-01T09:00", "once at 2026-03-01 09:00",
     "UTC", "handler", "migrations:run", "completed", None, 1, timedelta(days=1), 600_000),
    ("legacy-export", "Export for the old billing system", "0 * * * *", "every hour at :00",
     "UTC", "command", "/opt/legacy/export.sh", "disabled", None, 25, timedelta(hours=1),
     8_000),
    ("heartbeat", "Tell the monitoring we are alive", "* * * * *", "every minute", "UTC",
     "command", "curl -fsS https://hc.example/ping", "active", timedelta(seconds=45),
     1_000_000, timedelta(minutes=1), 35),
]


class FakeClient:
    """In-memory daemon with AsyncClient's methods. Set ``down = True`` to make it unreachable."""

    def __init__(self, *, now: datetime = NOW, version: str = "0.1.0", pid: int = 4242,
                 socket_path: str = SOCKET) -> None:
        self.now = now
        self.version = version
        self.pid = pid
        self.socket_path = socket_path
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.down = False
        self.paused_all = False
        self.reload_issues: list[ConfigIssue] = []
        self.reload_result: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, _History] = {}
        self.extra_runs: dict[int, dict[str, Any]] = {}  # runs made during the test
        self.outputs: dict[int, str] = {}
        self._follow: dict[int, asyncio.Queue[str | None]] = {}
        self._streams: list[asyncio.Queue[Any]] = []
        self._build()

    # -- fixture data ---------------------------------------------------------------

    def _build(self) -> None:
        next_id = 1
        for (name, description, schedule, words, tz, kind, what, state, next_in,
             count, every, base_ms) in _TASKS:
            anchor = self.now + (next_in if next_in is not None else timedelta(0))
            history = _History(next_id, count, every, base_ms, anchor)
            next_id += count
            self.histories[name] = history
            self.tasks[name] = {
                "name": name, "description": description, "schedule": schedule,
                "schedule_text": words, "timezone": tz, "kind": kind,
                "command": what if kind == "command" else None,
                "handler": what if kind == "handler" else None,
                "params": {"path": "/var/log/app", "older_than_days": 30} if kind == "handler" else {},
                "enabled": state != "disabled", "state": state, "paused": state == "paused",
                "next_run": iso(self.now + next_in) if next_in is not None else None,
                "last_run": None, "active_runs": [], "retry_count": 1 if state == "retry-scheduled" else 0,
                "overlap": "skip", "timeout": 1800.0, "retries": 3,
            }
        self._next_id = next_id
        for name, task in self.tasks.items():
            task["last_run"] = self._historic(self.histories[name].last_id)
        # sync-mirror is running right now
        self._new_run("sync-mirror", "schedule", status="running", started=self.now - timedelta(seconds=40))

    def _historic(self, run_id: int) -> dict[str, Any] | None:
        for name, history in self.histories.items():
            if history.first_id <= run_id <= history.last_id:
                n = run_id - history.first_id  # 0 = oldest
                age = history.count - n
                started = history.anchor - history.every * age + timedelta(seconds=n % 7)
                status, exit_code, error = "succeeded", 0, None
                if n % 11 == 5:
                    status, exit_code, error = "failed", 1, "exit status 1"
                elif n % 23 == 9:
                    status, exit_code, error = "timed_out", None, "timed out after 30m"
                elif n % 31 == 17:
                    status, exit_code, error = "cancelled", None, "cancelled by user"
                if n == history.count - 1:  # the newest run fixes each task's "last result"
                    status, exit_code, error = {
                        "report-weekly": ("failed", 2, "exit status 2"),
                        "fetch-rates": ("timed_out", None, "timed out after 30s"),
                        "rotate-certs": ("cancelled", None, "cancelled by user"),
                        "legacy-export": ("interrupted", None, "daemon stopped during the run"),
                    }.get(name, ("succeeded", 0, None))
                ms = history.base_ms + (n * 7919) % max(history.base_ms // 2, 1)
                finished = started + timedelta(milliseconds=ms)
                return self._run_object(run_id, name, "manual" if n % 10 == 3 else "schedule",
                                        status, started, finished, ms, exit_code, error)
        return None

    def _run_object(self, run_id: int, task: str, trigger: str, status: str,
                    started: datetime | None, finished: datetime | None, ms: int | None,
                    exit_code: int | None, error: str | None) -> dict[str, Any]:
        return {
            "id": run_id, "task": task, "trigger": trigger, "attempt": 1, "status": status,
            "scheduled_for": iso(started), "queued_at": iso(started), "started_at": iso(started),
            "finished_at": iso(finished), "duration_ms": ms, "exit_code": exit_code,
            "signal": "SIGTERM" if status == "timed_out" else None, "error": error,
            "result": None, "params": {}, "output_bytes": 120, "output_truncated": False,
            "pid": None if finished else 31337,
        }

    def _new_run(self, task: str, trigger: str, *, status: str = "running",
                 started: datetime | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
        run = self._run_object(self._next_id, task, trigger, status, started or self.now,
                               None, None, None, None)
        run["params"] = params or {}
        self._next_id += 1
        self.extra_runs[run["id"]] = run
        record = self.tasks[task]
        record["active_runs"] = [*record["active_runs"], run["id"]]
        record["last_run"] = run
        if record["state"] in ("active", "retry-scheduled"):
            record["state"] = "running"
        self.outputs[run["id"]] = f"starting {task}\n"
        self._follow[run["id"]] = asyncio.Queue()
        return run

    # -- test controls ------------------------------------------------------------------

    def push_event(self, kind: str, data: dict[str, Any]) -> None:
        """Deliver one server-sent event to every open ``events()`` stream."""
        for queue in self._streams:
            queue.put_nowait((kind, dict(data)))

    def go_down(self) -> None:
        """The daemon stops: open streams drop, every call raises DaemonUnreachable."""
        self.down = True
        for queue in self._streams:
            queue.put_nowait(_DROP)
        self._streams.clear()

    def come_back(self) -> None:
        self.down = False

    def write_output(self, run_id: int, chunk: str) -> None:
        """The run prints ``chunk`` (followers receive it)."""
        self.outputs[run_id] = self.outputs.get(run_id, "") + chunk
        self._follow[run_id].put_nowait(chunk)

    def finish_run(self, run_id: int, status: str = "succeeded", *, exit_code: int | None = 0,
                   duration_ms: int = 1500, error: str | None = None) -> dict[str, Any]:
        """End an active run: followers stop, ``run.finished`` and ``task.updated`` are sent."""
        run = self.extra_runs[run_id]
        run.update(status=status, exit_code=exit_code, duration_ms=duration_ms, error=error,
                   finished_at=iso(self.now + timedelta(milliseconds=duration_ms)), pid=None)
        task = self.tasks[run["task"]]
        task["active_runs"] = [rid for rid in task["active_runs"] if rid != run_id]
        task["last_run"] = dict(run)
        if task["state"] == "running" and not task["active_runs"]:
            task["state"] = "active"
        self._follow[run_id].put_nowait(None)
        self.push_event("run.finished", run)
        self.push_event("task.updated", task)
        return run

    def active_run(self, task: str) -> int:
        return int(self.tasks[task]["active_runs"][-1])

    def calls_to(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]

    # -- the AsyncClient surface ----------------------------------------------------------

    def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if self.down:
            raise DaemonUnreachable(self.socket_path, reason="connection refused")

    def _task(self, name: str) -> dict[str, Any]:
        if name not in self.tasks:
            raise TaskNotFound(name)
        return self.tasks[name]

    def _run(self, run_id: int) -> dict[str, Any]:
        run = self.extra_runs.get(run_id) or self._historic(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def status(self) -> dict[str, Any]:
        self._call("status")
        running = sum(len(task["active_runs"]) for task in self.tasks.values())
        return {"version": self.version, "pid": self.pid,
                "started_at": iso(self.now - timedelta(hours=3, minutes=12)),
                "config": "/etc/cronkeeper/cronkeeper.toml", "tasks": len(self.tasks),
                "running": running, "paused_all": self.paused_all}

    async def list_tasks(self) -> list[dict[str, Any]]:
        self._call("list_tasks")
        return [dict(task) for task in self.tasks.values()]

    async def get_task(self, name: str) -> dict[str, Any]:
        self._call("get_task", name)
        return dict(self._task(name))

    async def run_task(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._call("run_task", name, params)
        self._task(name)
        run = self._new_run(name, "manual", status="running", params=params)
        queued = dict(run, status="queued", started_at=None)
        self.push_event("run.queued", queued)
        self.push_event("run.started", run)
        self.push_event("task.updated", self.tasks[name])
        return dict(queued)

    async def _set_paused(self, method: str, name: str, paused: bool) -> dict[str, Any]:
        self._call(method, name)
        task = self._task(name)
        task["paused"] = paused
        if paused:
            task["state"] = "paused"
        elif task["state"] == "paused":
            task["state"] = "running" if task["active_runs"] else "active"
        self.push_event("task.updated", task)
        return dict(task)

    async def pause(self, name: str) -> dict[str, Any]:
        return await self._set_paused("pause", name, True)

    async def resume(self, name: str) -> dict[str, Any]:
        return await self._set_paused("resume", name, False)

    async def reset_retries(self, name: str) -> dict[str, Any]:
        self._call("reset_retries", name)
        task = self._task(name)
        task["retry_count"] = 0
        return dict(task)

    async def pause_all(self) -> dict[str, Any]:
        self._call("pause_all")
        self.paused_all = True
        return {"paused_all": True}

    async def resume_all(self) -> dict[str, Any]:
        self._call("resume_all")
        self.paused_all = False
        return {"paused_all": False}

    async def list_runs(self, task: str | None = None, status: str | None = None,
                        limit: int = 50, before: int | None = None
                        ) -> tuple[list[dict[str, Any]], int | None]:
        self._call("list_runs", task, status, limit, before)
        top = self._next_id - 1 if before is None else before - 1
        ids: Iterable[int]
        if task is None:
            ids = range(top, 0, -1)
        else:
            history = self.histories[self._task(task)["name"]]
            # Runs made during the test have higher ids than every historic run.
            extra = sorted((rid for rid, run in self.extra_runs.items()
                            if run["task"] == task and rid <= top), reverse=True)
            ids = chain(extra, range(min(top, history.last_id), history.first_id - 1, -1))
        found: list[dict[str, Any]] = []
        for run_id in ids:
            run = self._run(run_id)
            if status is None or run["status"] == status:
                found.append(dict(run))
            if len(found) > limit:
                break
        page = found[:limit]
        return page, (page[-1]["id"] if len(found) > limit else None)

    async def get_run(self, run_id: int) -> dict[str, Any]:
        self._call("get_run", run_id)
        return dict(self._run(run_id))

    async def get_output(self, run_id: int) -> str:
        self._call("get_output", run_id)
        run = self._run(run_id)
        if run_id in self.outputs:
            return self.outputs[run_id]
        return (f"$ {self.tasks[run['task']].get('command') or run['task']}\n"
                f"run {run_id} of {run['task']} ({run['status']})\n" + "".join(
                    f"line {i}: processed {i * 17} items\n" for i in range(1, 6)))

    async def follow_output(self, run_id: int) -> AsyncIterator[str]:
        self._call("follow_output", run_id)
        run = self._run(run_id)
        yield self.outputs.get(run_id, "")
        queue = self._follow.get(run_id)
        if queue is None or run["status"] not in ("queued", "running"):
            return
        while (chunk := await queue.get()) is not None:
            yield chunk

    async def cancel(self, run_id: int) -> dict[str, Any]:
        self._call("cancel", run_id)
        run = self._run(run_id)
        if run["status"] not in ("queued", "running"):
            raise Conflict(f"run {run_id} already {run['status']}")
        return self.finish_run(run_id, "cancelled", exit_code=None, duration_ms=2000,
                               error="cancelled by user")

    async def reload(self) -> dict[str, Any]:
        self._call("reload")
        if self.reload_issues:
            raise ConfigError(self.reload_issues, path="/etc/cronkeeper/cronkeeper.toml")
        self.push_event("config.reloaded", self.reload_result)
        return dict(self.reload_result)

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self._call("events")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams.append(queue)
        try:
            while True:
                item = await queue.get()
                if item is _DROP:
                    raise DaemonUnreachable(self.socket_path, reason="connection reset")
                yield item
        finally:
            if queue in self._streams:
                self._streams.remove(queue)

    async def aclose(self) -> None:
        self.calls.append(("aclose", ()))


# -- helpers for Pilot tests -----------------------------------------------------------------


async def wait_for(pilot: Any, predicate: Any, what: str = "condition", tries: int = 400) -> None:
    """Poll ``predicate`` between short pauses; fail (never hang) after ``tries`` polls."""
    for _ in range(tries):
        if predicate():
            return
        await pilot.pause(0.01)
    raise AssertionError(f"gave up waiting for {what}")


async def wait_ready(pilot: Any) -> None:
    """Until the app has connected, drawn its rows and filled its footer."""
    from textual.widgets import Footer

    app = pilot.app
    await wait_for(pilot, lambda: app.connected and app.main_screen.table.row_count > 0,
                   "the task list")
    await wait_for(pilot, lambda: len(app.screen.query_one(Footer).children) > 0, "the footer")

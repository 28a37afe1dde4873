"""The dashboard's in-memory copy of the daemon's tasks, kept current by API events.

``TaskBoard`` holds plain API objects (SPEC 5) and applies events to them; it knows
nothing about widgets, so a flood of events costs dict updates here and one repaint
per touched row there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cronkeeper.tui.formatting import ACTIVE_RUN_STATUSES

Event = tuple[str, dict[str, Any]]


def coalesce(events: Sequence[Event]) -> list[Event]:
    """Drop events superseded later in the same batch.

    A run's later event carries its whole newer state, as does a later ``task.updated``
    for the same task, so only the last one per run id / task name is kept. The kept
    events stay in their original order.
    """
    last: dict[tuple[str, object], int] = {}
    for index, (kind, data) in enumerate(events):
        if kind.startswith("run.") and "id" in data:
            last[("run", data["id"])] = index
        elif kind == "task.updated" and "name" in data:
            last[("task", data["name"])] = index
    keep = set(last.values())
    result: list[Event] = []
    for index, (kind, data) in enumerate(events):
        if kind.startswith("run.") and "id" in data:
            if index in keep:
                result.append((kind, data))
        elif kind == "task.updated" and "name" in data:
            if index in keep:
                result.append((kind, data))
        else:
            result.append((kind, data))
    return result


@dataclass
class Changes:
    """What one batch of events touched."""

    tasks: set[str] = field(default_factory=set)
    runs: list[dict[str, Any]] = field(default_factory=list)
    structure: bool = False  # tasks were added or removed: the table must be rebuilt
    reloaded: bool = False  # config.reloaded: the full task list must be fetched again

    def __bool__(self) -> bool:
        return bool(self.tasks or self.runs or self.structure or self.reloaded)


class TaskBoard:
    """Tasks by name in the daemon's order, plus the daemon's status object."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.status: dict[str, Any] = {}

    def load(self, status: dict[str, Any], tasks: Iterable[dict[str, Any]]) -> None:
        """Replace everything with a fresh snapshot (on connect and after a reload)."""
        self.status = dict(status)
        self.tasks = {task["name"]: dict(task) for task in tasks}

    def set_task(self, task: dict[str, Any]) -> bool:
        """Store one task object; True when the task is new."""
        new = task["name"] not in self.tasks
        self.tasks[task["name"]] = dict(task)
        return new

    @property
    def paused_all(self) -> bool:
        return bool(self.status.get("paused_all"))

    @property
    def active_run_count(self) -> int:
        return sum(len(task.get("active_runs") or ()) for task in self.tasks.values())

    def apply(self, events: Iterable[Event]) -> Changes:
        """Apply events in order and report what changed."""
        changes = Changes()
        for kind, data in events:
            if kind == "task.updated":
                changes.structure |= self.set_task(data)
                changes.tasks.add(data["name"])
            elif kind in ("run.queued", "run.started", "run.finished"):
                changes.runs.append(data)
                if self._apply_run(kind, data):
                    changes.tasks.add(data["task"])
            elif kind == "config.reloaded":
                changes.reloaded = True
        return changes

    def _apply_run(self, kind: str, run: dict[str, Any]) -> bool:
        """Fold a run event into its task; the next ``task.updated`` will confirm it."""
        task = self.tasks.get(run.get("task", ""))
        if task is None:
            return False
        active = [rid for rid in task.get("active_runs") or () if rid != run["id"]]
        if run.get("status") in ACTIVE_RUN_STATUSES:
            active.append(run["id"])
        task["active_runs"] = active
        if kind != "run.queued":
            task["last_run"] = run
        state = task.get("state")
        if kind == "run.started" and state in ("active", "retry-scheduled"):
            task["state"] = "running"
        elif kind == "run.finished" and state == "running" and not active:
            task["state"] = "active"
        return True

    def matching(self, needle: str) -> list[dict[str, Any]]:
        """Tasks whose name, description or schedule contains ``needle`` (case-insensitive)."""
        needle = needle.strip().lower()
        if not needle:
            return list(self.tasks.values())
        return [task for task in self.tasks.values() if needle in _haystack(task)]


def _haystack(task: dict[str, Any]) -> str:
    parts = (task.get(key) for key in ("name", "description", "schedule", "schedule_text"))
    return "\n".join(str(part) for part in parts if part).lower()

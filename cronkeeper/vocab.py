"""The words of SPEC section 4, spelled once: DB rows, JSON, SSE and ``--json`` share them."""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)

    def __str__(self) -> str:
        return self.value


class RunTrigger(str, Enum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    CATCH_UP = "catch-up"
    REBOOT = "reboot"
    ON_FAILURE = "on_failure"
    ON_SUCCESS = "on_success"

    def __str__(self) -> str:
        return self.value


class TaskState(str, Enum):
    ACTIVE = "active"
    PAUSED = "paused"
    RUNNING = "running"
    RETRY_SCHEDULED = "retry-scheduled"
    COMPLETED = "completed"
    DISABLED = "disabled"

    def __str__(self) -> str:
        return self.value


class Overlap(str, Enum):
    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"
    REPLACE = "replace"

    def __str__(self) -> str:
        return self.value

"""The words of SPEC section 4, spelled once: DB rows, JSON, SSE and ``--json`` share them."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
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


class RunTrigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    CATCH_UP = "catch-up"
    REBOOT = "reboot"
    ON_FAILURE = "on_failure"
    ON_SUCCESS = "on_success"


class TaskState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    RUNNING = "running"
    RETRY_SCHEDULED = "retry-scheduled"
    COMPLETED = "completed"
    DISABLED = "disabled"


class Overlap(StrEnum):
    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"
    REPLACE = "replace"

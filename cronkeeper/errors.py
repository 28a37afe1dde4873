"""One exception root for everything cronkeeper reports to a user.

Each class builds its message from identifiers in ``__init__``. ``HTTP_STATUS`` and
``EXIT_CODE`` are the one table mapping errors to API status codes and CLI exit codes;
nothing else decides them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class CronkeeperError(Exception):
    """Root of every error cronkeeper reports to a user."""

    http_status = 500
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, object]:
        return {"error": self.message}


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration: where (file, task, key) and what."""

    message: str
    task: str | None = None
    key: str | None = None
    section: str | None = None  # "daemon", "defaults" or None for a task / the file

    def where(self) -> str:
        if self.task is not None:
            place = f"[tasks.{self.task}]"
        elif self.section is not None:
            place = f"[{self.section}]"
        else:
            place = ""
        if self.key:
            place = f"{place} {self.key}".strip()
        return place

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message

    def to_json(self) -> dict[str, object]:
        return {"task": self.task, "section": self.section, "key": self.key,
                "message": self.message, "text": str(self)}


class ConfigError(CronkeeperError):
    """The configuration is invalid; ``issues`` lists every problem found, not just the first."""

    http_status = 422
    exit_code = 2

    def __init__(self, issues: Iterable[ConfigIssue], path: str | None = None) -> None:
        self.issues: Sequence[ConfigIssue] = tuple(issues)
        self.path = path
        head = f"{path}: " if path else ""
        count = len(self.issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        noun = "error" if count == 1 else "errors"
        super().__init__(f"{head}{count} configuration {noun}:\n{lines}")

    def to_json(self) -> dict[str, object]:
        return {"error": self.message, "errors": [i.to_json() for i in self.issues]}


class UsageError(CronkeeperError):
    """A malformed request or command line."""

    http_status = 400
    exit_code = 2


class TaskNotFound(CronkeeperError):
    http_status = 404
    exit_code = 1

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown task {name!r}")


class RunNotFound(CronkeeperError):
    http_status = 404
    exit_code = 1

    def __init__(self, run_id: int | str) -> None:
        self.run_id = run_id
        super().__init__(f"unknown run {run_id}")


class Conflict(CronkeeperError):
    """The request is well-formed but the current state forbids it (e.g. cancel a finished run)."""

    http_status = 409
    exit_code = 1


class DaemonUnreachable(CronkeeperError):
    http_status = 503
    exit_code = 3

    def __init__(self, socket_path: str, tried: Sequence[str] = (), reason: str = "") -> None:
        self.socket_path = socket_path
        self.tried = tuple(tried)
        why = f" ({reason})" if reason else ""
        looked = f"; looked for the socket via {', '.join(self.tried)}" if self.tried else ""
        super().__init__(
            f"cannot reach the cronkeeper daemon at {socket_path}{why}{looked}. "
            "Is it running? Start it with `cronkeeper daemon` or `systemctl start cronkeeper`."
        )


class RunFailed(CronkeeperError):
    """A run the user waited for ended without success (CLI exit 1)."""

    exit_code = 1


# The one table: error class -> HTTP status -> CLI exit code. Read it through these helpers.
def http_status(error: BaseException) -> int:
    return error.http_status if isinstance(error, CronkeeperError) else 500


def exit_code(error: BaseException) -> int:
    return error.exit_code if isinstance(error, CronkeeperError) else 1

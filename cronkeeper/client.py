"""The socket API from Python: ``Client`` (sync, for the CLI) and ``AsyncClient`` (the dashboard).

Both speak HTTP/1.1 over the daemon's Unix socket through httpx, and turn error responses
back into the ``errors.py`` classes, so callers handle one vocabulary of failures.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from cronkeeper.errors import (
    ConfigError,
    ConfigIssue,
    Conflict,
    CronkeeperError,
    DaemonUnreachable,
    RunNotFound,
    TaskNotFound,
    UsageError,
)

if TYPE_CHECKING:
    import httpx

    from cronkeeper.async_client import AsyncClient as AsyncClient

BASE_URL = "http://cronkeeper"
# Generous: a history page on a loaded disk still answers well within this.
TIMEOUT_SECONDS = 30.0


def _raise_for(response: httpx.Response | _Reply, what: str | int | None = None) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text or response.reason_phrase}
    message = str(body.get("error", response.reason_phrase)) if isinstance(body, dict) else str(body)
    status = response.status_code
    if status == 404 and isinstance(what, str) and "unknown task" in message:
        raise TaskNotFound(what)
    if status == 404 and isinstance(what, int) and "unknown run" in message:
        raise RunNotFound(what)
    if status == 422 and isinstance(body, dict):
        issues = [
            ConfigIssue(message=i.get("message", ""), task=i.get("task"), key=i.get("key"),
                        section=i.get("section"))
            for i in body.get("errors", [])
        ]
        raise ConfigError(issues, path=body.get("path"))
    if status == 409:
        raise Conflict(message)
    if status in (400, 405):
        raise UsageError(message)
    error = CronkeeperError(message)
    error.http_status = status
    raise error


def _runs_query(task: str | None, status: str | None, limit: int | None,
                before: int | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if task:
        query["task"] = task
    if status:
        query["status"] = status
    if limit is not None:
        query["limit"] = limit
    if before is not None:
        query["before"] = before
    return query


class _UnixHTTPConnection(http.client.HTTPConnection):
    """stdlib HTTP/1.1 over a Unix socket: the CLI starts in a fraction of httpx's import time."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _Reply:
    """What ``_raise_for`` needs of a response, for both clients."""

    def __init__(self, status: int, reason: str, content_type: str, body: bytes) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.content_type = content_type
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Client:
    """Blocking client for the CLI; every method is one request."""

    def __init__(self, socket_path: str | Path, tried: tuple[str, ...] = ()) -> None:
        self.socket_path = str(socket_path)
        self.tried = tried
        self._conn: _UnixHTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, exc: Exception) -> DaemonUnreachable:
        return DaemonUnreachable(self.socket_path, self.tried, reason=str(exc) or type(exc).__name__)

    def _send(self, method: str, path: str, params: dict[str, Any] | None, body: Any,
              timeout: float | None) -> http.client.HTTPResponse:
        if params:
            path = f"{path}?{urlencode(params)}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._conn is None:
            self._conn = _UnixHTTPConnection(self.socket_path, TIMEOUT_SECONDS)
        self._conn.timeout = timeout
        try:
            self._conn.request(method, path, body=data, headers=headers)
            return self._conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise self._unreachable(exc) from exc

    def request(self, method: str, path: str, *, what: str | int | None = None,
                params: dict[str, Any] | None = None, json_body: Any = None) -> Any:
        response = self._send(method, path, params, json_body, TIMEOUT_SECONDS)
        try:
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise self._unreachable(exc) from exc
        content_type = response.getheader("Content-Type", "")
        _raise_for(_Reply(response.status, response.reason, content_type, body), what)
        if content_type.startswith("application/json"):
            return json.loads(body)
        return body.decode("utf-8", "replace")

    def status(self) -> dict[str, Any]:
        return self.request("GET", "/v1/status")

    def list_tasks(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/tasks")["tasks"]

    def get_task(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/tasks/{quote(name)}", what=name)

    def run_task(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"params": params} if params else {}
        return self.request("POST", f"/v1/tasks/{quote(name)}/run", json_body=body, what=name)

    def task_action(self, name: str, action: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/tasks/{quote(name)}/{action}", what=name)

    def global_action(self, action: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/{action}")

    def list_runs(self, task: str | None = None, status: str | None = None,
                  limit: int | None = 50, before: int | None = None
                  ) -> tuple[list[dict[str, Any]], int | None]:
        body = self.request("GET", "/v1/runs", params=_runs_query(task, status, limit, before),
                            what=task)
        return body["runs"], body["next"]

    def get_run(self, run_id: int) -> dict[str, Any]:
        return self.request("GET", f"/v1/runs/{run_id}", what=run_id)

    def get_output(self, run_id: int) -> str:
        return self.request("GET", f"/v1/runs/{run_id}/output", what=run_id)

    def follow_output(self, run_id: int) -> Iterator[bytes]:
        """The run's output as it is produced, until the run ends."""
        response = self._send("GET", f"/v1/runs/{run_id}/output", {"follow": 1}, None, None)
        if response.status >= 400:
            body = response.read()
            _raise_for(_Reply(response.status, response.reason,
                              response.getheader("Content-Type", ""), body), run_id)
        try:
            while chunk := response.read1(65536):
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise self._unreachable(exc) from exc

    def cancel(self, run_id: int) -> dict[str, Any]:
        return self.request("POST", f"/v1/runs/{run_id}/cancel", what=run_id)

    def reload(self) -> dict[str, Any]:
        return self.request("POST", "/v1/reload")

    def metrics(self) -> str:
        return self.request("GET", "/metrics")


def __getattr__(name: str) -> Any:
    # The dashboard's AsyncClient needs httpx, which the CLI's start-up should not pay for.
    if name == "AsyncClient":
        from cronkeeper.async_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The socket API from Python: ``Client`` (sync, for the CLI) and ``AsyncClient`` (the dashboard).

Both speak HTTP/1.1 over the daemon's Unix socket through httpx, and turn error responses
back into the ``errors.py`` classes, so callers handle one vocabulary of failures.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

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

BASE_URL = "http://cronkeeper"
# Generous: a history page on a loaded disk still answers well within this.
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def _raise_for(response: httpx.Response, what: str | int | None = None) -> None:
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


class Client:
    """Blocking client; every method is one request."""

    def __init__(self, socket_path: str | Path, tried: tuple[str, ...] = ()) -> None:
        self.socket_path = str(socket_path)
        self.tried = tried
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=self.socket_path),
                                  base_url=BASE_URL, timeout=TIMEOUT)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, exc: Exception) -> DaemonUnreachable:
        return DaemonUnreachable(self.socket_path, self.tried, reason=str(exc) or type(exc).__name__)

    def request(self, method: str, path: str, *, what: str | int | None = None,
                **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
            raise self._unreachable(exc) from exc
        _raise_for(response, what)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def status(self) -> dict[str, Any]:
        return self.request("GET", "/v1/status")

    def list_tasks(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/tasks")["tasks"]

    def get_task(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/tasks/{name}", what=name)

    def run_task(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"params": params} if params else {}
        return self.request("POST", f"/v1/tasks/{name}/run", json=body, what=name)

    def task_action(self, name: str, action: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/tasks/{name}/{action}", what=name)

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
        try:
            with self._http.stream("GET", f"/v1/runs/{run_id}/output",
                                   params={"follow": 1}, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response, run_id)
                yield from response.iter_raw()
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
            raise self._unreachable(exc) from exc

    def cancel(self, run_id: int) -> dict[str, Any]:
        return self.request("POST", f"/v1/runs/{run_id}/cancel", what=run_id)

    def reload(self) -> dict[str, Any]:
        return self.request("POST", "/v1/reload")

    def metrics(self) -> str:
        return self.request("GET", "/metrics")


class AsyncClient:
    """Non-blocking client for the dashboard; same methods as ``Client``, plus ``events()``."""

    def __init__(self, socket_path: str | Path, tried: tuple[str, ...] = ()) -> None:
        self.socket_path = str(socket_path)
        self.tried = tried
        self._http = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=self.socket_path),
                                       base_url=BASE_URL, timeout=TIMEOUT)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _unreachable(self, exc: Exception) -> DaemonUnreachable:
        return DaemonUnreachable(self.socket_path, self.tried, reason=str(exc) or type(exc).__name__)

    async def request(self, method: str, path: str, *, what: str | int | None = None,
                      **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                FileNotFoundError) as exc:
            raise self._unreachable(exc) from exc
        _raise_for(response, what)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    async def status(self) -> dict[str, Any]:
        return await self.request("GET", "/v1/status")

    async def list_tasks(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/v1/tasks"))["tasks"]

    async def get_task(self, name: str) -> dict[str, Any]:
        return await self.request("GET", f"/v1/tasks/{name}", what=name)

    async def run_task(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"params": params} if params else {}
        return await self.request("POST", f"/v1/tasks/{name}/run", json=body, what=name)

    async def pause(self, name: str) -> dict[str, Any]:
        return await self.request("POST", f"/v1/tasks/{name}/pause", what=name)

    async def resume(self, name: str) -> dict[str, Any]:
        return await self.request("POST", f"/v1/tasks/{name}/resume", what=name)

    async def reset_retries(self, name: str) -> dict[str, Any]:
        return await self.request("POST", f"/v1/tasks/{name}/reset-retries", what=name)

    async def pause_all(self) -> dict[str, Any]:
        return await self.request("POST", "/v1/pause-all")

    async def resume_all(self) -> dict[str, Any]:
        return await self.request("POST", "/v1/resume-all")

    async def list_runs(self, task: str | None = None, status: str | None = None,
                        limit: int | None = 50, before: int | None = None
                        ) -> tuple[list[dict[str, Any]], int | None]:
        body = await self.request("GET", "/v1/runs",
                                  params=_runs_query(task, status, limit, before), what=task)
        return body["runs"], body["next"]

    async def get_run(self, run_id: int) -> dict[str, Any]:
        return await self.request("GET", f"/v1/runs/{run_id}", what=run_id)

    async def get_output(self, run_id: int) -> str:
        return await self.request("GET", f"/v1/runs/{run_id}/output", what=run_id)

    async def follow_output(self, run_id: int) -> AsyncIterator[str]:
        try:
            async with self._http.stream("GET", f"/v1/runs/{run_id}/output",
                                         params={"follow": 1}, timeout=None) as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for(response, run_id)
                async for chunk in response.aiter_text():
                    yield chunk
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                FileNotFoundError) as exc:
            raise self._unreachable(exc) from exc

    async def cancel(self, run_id: int) -> dict[str, Any]:
        return await self.request("POST", f"/v1/runs/{run_id}/cancel", what=run_id)

    async def reload(self) -> dict[str, Any]:
        return await self.request("POST", "/v1/reload")

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Server-sent events as ``(kind, data)`` until the connection ends."""
        try:
            async with aconnect_sse(self._http, "GET", "/v1/events", timeout=None) as source:
                _raise_for(source.response)
                async for sse in source.aiter_sse():
                    if sse.event and sse.data:
                        yield sse.event, json.loads(sse.data)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                FileNotFoundError) as exc:
            raise self._unreachable(exc) from exc

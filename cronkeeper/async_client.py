"""The socket API for asyncio code (the dashboard): same methods as ``Client``, plus ``events()``.

Built on httpx over the Unix socket, with httpx-sse for ``/v1/events``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from cronkeeper.client import BASE_URL, TIMEOUT_SECONDS, _raise_for, _runs_query
from cronkeeper.errors import DaemonUnreachable


class AsyncClient:
    """Non-blocking client for the dashboard; same methods as ``Client``, plus ``events()``."""

    def __init__(self, socket_path: str | Path, tried: tuple[str, ...] = ()) -> None:
        self.socket_path = str(socket_path)
        self.tried = tried
        self._http = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=self.socket_path),
                                       base_url=BASE_URL,
                                       timeout=httpx.Timeout(TIMEOUT_SECONDS, connect=5.0))

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
        """Server-sent events as ``(kind, data)`` until the connection ends.

        The first item is ``("stream.open", {})``, once the subscription is in place.
        """
        try:
            async with aconnect_sse(self._http, "GET", "/v1/events", timeout=None) as source:
                _raise_for(source.response)
                # The daemon subscribes before it answers: from here on no event is missed,
                # so a caller can (re)load its state now and apply the events that follow.
                yield "stream.open", {}
                async for sse in source.aiter_sse():
                    if sse.event and sse.data:
                        yield sse.event, json.loads(sse.data)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                FileNotFoundError) as exc:
            raise self._unreachable(exc) from exc

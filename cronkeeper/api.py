"""HTTP/1.1 + JSON on the Unix socket (SPEC 5), served by aiohttp.

Every request's peer is checked with SO_PEERCRED; errors from ``errors.py`` become
``{"error": ...}`` with the status of the one table in that module.
"""

from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp_sse import sse_response

from cronkeeper import __version__
from cronkeeper.errors import CronkeeperError, RunNotFound, TaskNotFound, UsageError
from cronkeeper.events import ConfigReloaded, Event, TaskUpdated
from cronkeeper.metrics import render_metrics
from cronkeeper.openapi import openapi_document
from cronkeeper.views import run_json, task_json
from cronkeeper.vocab import RunStatus

if TYPE_CHECKING:
    from cronkeeper.daemon import Daemon

log = logging.getLogger("cronkeeper.api")

MAX_REQUEST_BYTES = 64 * 1024  # bodies are tiny JSON objects; anything bigger is abuse
MAX_PAGE = 1000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DAEMON_KEY: web.AppKey[Daemon] = web.AppKey("daemon")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _peer_allowed(request: web.Request, allowed_gid: int | None) -> bool:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return False
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    if uid == 0 or uid == os.getuid():
        return True
    if allowed_gid is None:
        return False
    if gid == allowed_gid:
        return True
    # Supplementary groups of the peer: read from /proc since SO_PEERGROUPS is not exposed.
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("Groups:"):
                    return str(allowed_gid) in line.split()[1:]
    except OSError:
        return False
    return False


def _make_middleware(allowed_gid: int | None) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _peer_allowed(request, allowed_gid):
            # "Anyone else gets nothing": drop the connection without an answer.
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPForbidden()
        try:
            return await handler(request)
        except CronkeeperError as exc:
            return _json(exc.to_json(), exc.http_status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if exc.status == 404:
                message = f"no such endpoint: {request.method} {request.path}"
            elif exc.status == 405:
                message = f"method {request.method} not allowed on {request.path}"
            elif exc.status == 413:
                message = f"request body too large (limit {MAX_REQUEST_BYTES} bytes)"
            else:
                message = exc.reason
            return _json({"error": message}, exc.status)

    return middleware


def _int_param(request: web.Request, name: str, default: int | None = None,
               lo: int | None = None, hi: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UsageError(f"query parameter {name!r} must be between {lo} and {hi}, got {value}")
    return value


def _run_id(request: web.Request) -> int:
    raw = request.match_info["run_id"]
    try:
        return int(raw)
    except ValueError:
        raise RunNotFound(raw) from None


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise UsageError("request body must be a JSON object")
    return body


class Api:
    """Route handlers bound to one daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    @property
    def tz(self) -> Any:
        return self.d.tz

    def _task_json(self, name: str) -> dict[str, Any]:
        rt = self.d.engine.tasks.get(name)
        if rt is None:
            raise TaskNotFound(name)
        return task_json(self.d.engine, rt, self.tz)

    async def status(self, request: web.Request) -> web.Response:
        return _json(self.d.status())

    async def list_tasks(self, request: web.Request) -> web.Response:
        engine = self.d.engine
        return _json({"tasks": [task_json(engine, rt, self.tz) for rt in engine.tasks.values()]})

    async def get_task(self, request: web.Request) -> web.Response:
        return _json(self._task_json(request.match_info["name"]))

    async def run_task(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await _body(request)
        unknown = set(body) - {"params"}
        if unknown:
            raise UsageError(f"unknown key(s) in request body: {', '.join(sorted(unknown))}; "
                             "allowed: params")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise UsageError("'params' must be a JSON object")
        record = self.d.engine.run_now(name, params)
        return _json(run_json(record, self.tz), 202)

    async def task_action(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        action = request.match_info["action"]
        engine = self.d.engine
        if action == "pause":
            engine.pause(name)
        elif action == "resume":
            engine.resume(name)
        else:
            engine.reset_retries(name)
        return _json(self._task_json(name))

    async def pause_all(self, request: web.Request) -> web.Response:
        self.d.engine.set_paused_all(True)
        return _json(self.d.status())

    async def resume_all(self, request: web.Request) -> web.Response:
        self.d.engine.set_paused_all(False)
        return _json(self.d.status())

    async def list_runs(self, request: web.Request) -> web.Response:
        task = request.query.get("task") or None
        status = request.query.get("status") or None
        if status is not None and status not in {s.value for s in RunStatus}:
            raise UsageError(f"unknown status {status!r}; one of: "
                             + ", ".join(s.value for s in RunStatus))
        limit = _int_param(request, "limit", 50, 1, MAX_PAGE) or 50
        before = _int_param(request, "before", None, 1, None)
        store = self.d.store
        await asyncio.wrap_future(store.barrier())
        runs, cursor = await asyncio.to_thread(store.list_runs, task, status, limit, before)
        if task is not None and not runs and task not in self.d.engine.tasks:
            raise TaskNotFound(task)
        live = self.d.engine.runs
        out = [run_json(live[r["id"]].record if r["id"] in live else r, self.tz) for r in runs]
        return _json({"runs": out, "next": cursor})

    async def _find_run(self, run_id: int) -> dict[str, Any]:
        ar = self.d.engine.runs.get(run_id)
        if ar is not None:
            return ar.record
        store = self.d.store
        await asyncio.wrap_future(store.barrier())
        record = await asyncio.to_thread(store.get_run, run_id)
        if record is None:
            raise RunNotFound(run_id)
        return record

    async def get_run(self, request: web.Request) -> web.Response:
        return _json(run_json(await self._find_run(_run_id(request)), self.tz))

    async def cancel_run(self, request: web.Request) -> web.Response:
        record = self.d.engine.cancel(_run_id(request))
        return _json(run_json(record, self.tz))

    async def output(self, request: web.Request) -> web.StreamResponse:
        run_id = _run_id(request)
        follow = request.query.get("follow", "") not in ("", "0", "false")
        ar = self.d.engine.runs.get(run_id)
        if ar is None:
            await self._find_run(run_id)
            data = await asyncio.to_thread(self.d.store.get_output, run_id)
            return web.Response(body=data or b"", content_type="text/plain", charset="utf-8")
        if not follow:
            data = ar.process.output.getvalue() if ar.process is not None else b""
            return web.Response(body=data, content_type="text/plain", charset="utf-8")
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        # A queued run has no process yet: wait for it to start (or to end without starting).
        await ar.started.wait()
        if ar.process is not None:
            async for chunk in ar.process.output.follow():
                await response.write(chunk)
        await ar.done.wait()  # "until the run ends": its final status is recorded by now
        await response.write_eof()
        return response

    async def reload(self, request: web.Request) -> web.Response:
        return _json(await self.d.reload())

    async def events(self, request: web.Request) -> web.StreamResponse:
        with self.d.bus.subscribe() as sub:
            async with sse_response(request) as resp:
                async for event in sub:
                    data = self._event_data(event)
                    if data is None:
                        continue
                    await resp.send(json.dumps(data, default=str), event=event.kind)
        return resp

    def _event_data(self, event: Event) -> dict[str, Any] | None:
        if isinstance(event, TaskUpdated):
            rt = self.d.engine.tasks.get(str(event.data["name"]))
            return task_json(self.d.engine, rt, self.tz) if rt is not None else None
        if isinstance(event, ConfigReloaded):
            return dict(event.data)
        return run_json(dict(event.data), self.tz)

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = await render_metrics(self.d)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document(__version__))


ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/v1/status", "status"),
    ("GET", "/v1/tasks", "list_tasks"),
    ("GET", "/v1/tasks/{name}", "get_task"),
    ("POST", "/v1/tasks/{name}/run", "run_task"),
    ("POST", "/v1/tasks/{name}/{action:pause|resume|reset-retries}", "task_action"),
    ("POST", "/v1/pause-all", "pause_all"),
    ("POST", "/v1/resume-all", "resume_all"),
    ("GET", "/v1/runs", "list_runs"),
    ("GET", "/v1/runs/{run_id}", "get_run"),
    ("GET", "/v1/runs/{run_id}/output", "output"),
    ("POST", "/v1/runs/{run_id}/cancel", "cancel_run"),
    ("POST", "/v1/reload", "reload"),
    ("GET", "/v1/events", "events"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/openapi.json", "openapi"),
]


def make_app(daemon: Daemon) -> web.Application:
    group = daemon.config.daemon.socket_group
    allowed_gid = grp.getgrnam(group).gr_gid if group else None
    app = web.Application(middlewares=[_make_middleware(allowed_gid)],
                          client_max_size=MAX_REQUEST_BYTES)
    app[DAEMON_KEY] = daemon
    api = Api(daemon)
    for method, path, name in ROUTES:
        app.router.add_route(method, path, getattr(api, name))
    return app


def route_table() -> list[tuple[str, str]]:
    """(method, path) of every route, with ``{action:...}`` expanded, for the OpenAPI test."""
    out = []
    for method, path, _ in ROUTES:
        if "{action:" in path:
            for action in ("pause", "resume", "reset-retries"):
                out.append((method, path.replace("{action:pause|resume|reset-retries}", action)))
        else:
            out.append((method, path))
    return out

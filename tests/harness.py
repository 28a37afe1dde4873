"""A real daemon in a subprocess on a temporary config, and ways to wait on what it does.

Tests wait on the daemon's own event stream (``/v1/events``) with generous deadlines; they
never sleep for a fixed time and never assert on timings.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from cronkeeper.client import Client

DEADLINE = 60.0  # generous: CI machines are slow and shared
REPO = Path(__file__).resolve().parent.parent


@dataclass
class SeenEvent:
    kind: str
    data: dict[str, Any]


class EventTap:
    """Reads ``/v1/events`` in a thread; tests wait for matching events with a deadline."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.events: list[SeenEvent] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._connected.wait(DEADLINE):
            raise TimeoutError("could not subscribe to /v1/events")

    def _read(self) -> None:
        transport = httpx.HTTPTransport(uds=str(self.socket_path))
        with httpx.Client(transport=transport, base_url="http://cronkeeper",
                          timeout=None) as http:
            try:
                with connect_sse(http, "GET", "/v1/events") as source:
                    self._connected.set()
                    for sse in source.iter_sse():
                        if self._stop.is_set():
                            return
                        if sse.event and sse.data:
                            with self._cond:
                                self.events.append(SeenEvent(sse.event, json.loads(sse.data)))
                                self._cond.notify_all()
            except (httpx.HTTPError, OSError):
                self._connected.set()
                with self._cond:
                    self._cond.notify_all()

    def wait_for(self, predicate: Callable[[SeenEvent], bool], *, count: int = 1,
                 timeout: float = DEADLINE, what: str = "event") -> list[SeenEvent]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self.events if predicate(e)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds = [(e.kind, e.data.get("task") or e.data.get("name"),
                              e.data.get("status")) for e in self.events[-30:]]
                    raise TimeoutError(f"timed out waiting for {count} x {what}; "
                                       f"last events: {kinds}")
                self._cond.wait(left)

    def run_finished(self, task: str, *, count: int = 1, timeout: float = DEADLINE
                     ) -> list[dict[str, Any]]:
        found = self.wait_for(
            lambda e: e.kind == "run.finished" and e.data.get("task") == task,
            count=count, timeout=timeout, what=f"run.finished of {task}")
        return [e.data for e in found]

    def run_events(self, run_id: int) -> list[str]:
        with self._cond:
            return [e.kind for e in self.events
                    if e.kind.startswith("run.") and e.data.get("id") == run_id]

    def close(self) -> None:
        self._stop.set()


class DaemonProcess:
    """``cronkeeper daemon`` on a config in ``workdir``; state lives under ``workdir/state``."""

    def __init__(self, workdir: Path, config_body: str, *, env: dict[str, str] | None = None,
                 daemon_section: str = "", socket_path: Path | None = None) -> None:
        self.workdir = workdir
        self.config_path = workdir / "cronkeeper.toml"
        self.socket_path = socket_path or workdir / "state" / "ck.sock"
        self.db_path = workdir / "state" / "ck.db"
        self.log_path = workdir / "daemon.log"
        self.extra_env = env or {}
        self.daemon_section = daemon_section
        self.write_config(config_body)
        self.proc: subprocess.Popen[bytes] | None = None
        self._tap: EventTap | None = None

    def write_config(self, body: str, *, daemon_section: str | None = None) -> None:
        section = textwrap.dedent(self.daemon_section if daemon_section is None
                                  else daemon_section)
        defaults = {"socket": '"state/ck.sock"', "database": '"state/ck.db"',
                    "timezone": '"UTC"', "shutdown_grace": '"10s"',
                    "handlers_path": f'"{REPO / "handlers"}"'}
        given = {line.split("=")[0].strip() for line in section.splitlines() if "=" in line}
        header = "[daemon]\n" + "".join(f"{k} = {v}\n" for k, v in defaults.items()
                                        if k not in given) + section
        self.config_path.write_text(header + "\n" + textwrap.dedent(body))

    def start(self, *, wait: bool = True) -> DaemonProcess:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.update(self.extra_env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cronkeeper.cli", "daemon", "--config",
             str(self.config_path)],
            cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_ready()
            # Subscribe right away so no event of the test's first action is missed.
            self._tap = EventTap(self.socket_path)
        return self

    def wait_ready(self, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            if self.socket_path.exists():
                try:
                    with self.client() as client:
                        client.status()
                    return
                except Exception:  # noqa: BLE001 - not answering yet; keep waiting
                    pass
            time.sleep(0.02)  # polling a condition, bounded by the deadline
        raise TimeoutError(f"daemon not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self) -> Client:
        return Client(self.socket_path)

    @property
    def events(self) -> EventTap:
        if self._tap is None:
            self._tap = EventTap(self.socket_path)
        return self._tap

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = DEADLINE) -> int:
        if self._tap is not None:
            self._tap.close()
            self._tap = None
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill9(self) -> None:
        if self._tap is not None:
            self._tap.close()
            self._tap = None
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def cli(self, *args: str, input: str | None = None, timeout: float = DEADLINE
            ) -> subprocess.CompletedProcess[str]:
        """Run the real ``cronkeeper`` command against this daemon."""
        return subprocess.run(
            [sys.executable, "-m", "cronkeeper.cli", "--socket", str(self.socket_path), *args],
            cwd=self.workdir, capture_output=True, text=True, input=input, timeout=timeout)


@contextmanager
def running_daemon(workdir: Path, config_body: str, **kwargs: Any) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(workdir, config_body, **kwargs).start()
    try:
        yield daemon
    finally:
        code = daemon.stop()
        if code not in (0, -signal.SIGTERM):
            print(daemon.log())


def wait_until(predicate: Callable[[], Any], *, timeout: float = DEADLINE,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy (for state with no event, e.g. a file or a pid)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def queue_get(q: queue.Queue[Any], timeout: float = DEADLINE) -> Any:
    return q.get(timeout=timeout)

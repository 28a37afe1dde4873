"""Supervise one child process per run: output capture, timeout, cancel, no leftovers.

A run is a child in its own session (``start_new_session``). stdout and stderr share one
pipe so their order is kept; ``OutputCapture`` keeps a bounded head and tail of it.

Finding and killing a run's descendants, and what is guaranteed about them: ``proctree``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cronkeeper.proctree import (
    enable_subreaper,
    install_child_watcher,
    orphans_left,
    reap_orphans,
    run_members,
    schedule_sweep,
    send_signal,
    sweep_orphans,
    terminate,
    track,
    untrack,
)

__all__ = [
    "OutputCapture", "ProcessOutcome", "ProcessRun", "ProcessSpec", "enable_subreaper",
    "install_child_watcher", "reap_orphans", "sweep_orphans",
]

log = logging.getLogger("cronkeeper.executor")

_CHUNK = 64 * 1024  # one pipe's worth: each read stays small, so memory stays flat
_RESULT_LIMIT = 16 * 1024 * 1024  # a handler's JSON result beyond this is refused
_EOF_WAIT = 2.0  # after clean-up, how long the output pipe may stay open before we stop reading


def _marker(n: int) -> bytes:
    return b"\n[... %d bytes truncated ...]\n" % n


class OutputCapture:
    """The bounded, ordered output of one run: the first ``limit // 2`` bytes and a ring of
    the last ``limit - limit // 2`` bytes. Memory never grows with the output's size."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit))
        self._head_cap = self.limit // 2
        self._tail_cap = self.limit - self._head_cap
        self._head = bytearray()
        self._ring = bytearray()  # grows to _tail_cap, then wraps at _pos
        self._pos = 0  # next write index in the ring; oldest byte once it is full
        self.total_bytes = 0
        """Bytes produced so far, kept or not."""
        self.closed = False
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def truncated(self) -> bool:
        """True once more than ``limit`` bytes were produced."""
        return self.total_bytes > self.limit

    def feed(self, data: bytes) -> None:
        """Append ``data`` (it is copied into the bounded buffers, not kept)."""
        if not data:
            return
        self.total_bytes += len(data)
        view = memoryview(data)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += view[:room]
            view = view[room:]
        if len(view) and self._tail_cap:
            self._ring_write(view)
        self._wake()

    def _ring_write(self, view: memoryview) -> None:
        cap, ring = self._tail_cap, self._ring
        if len(view) >= cap:
            ring[:] = view[-cap:]
            self._pos = 0
            return
        grow = cap - len(ring)
        if grow > 0:
            ring += view[:grow]
            view = view[grow:]
            self._pos = len(ring) % cap
            if not len(view):
                return
        end = self._pos + len(view)
        if end <= cap:
            ring[self._pos:end] = view
        else:
            split = cap - self._pos
            ring[self._pos:] = view[:split]
            ring[:end - cap] = view[split:]
        self._pos = end % cap

    def _tail(self, offset: int = 0) -> bytes:
        """The kept tail from ``offset`` (0 = its oldest kept byte), in order."""
        ring, n = self._ring, len(self._ring)
        start = (self._pos + offset) % n if n == self._tail_cap and n else offset
        if start + (n - offset) <= n:
            return bytes(ring[start:start + n - offset])
        return bytes(ring[start:]) + bytes(ring[:self._pos])

    def getvalue(self) -> bytes:
        """Everything kept: head + ``[... N bytes truncated ...]`` line + tail when truncated."""
        tail = self._tail()
        dropped = self.total_bytes - len(self._head) - len(tail)
        return bytes(self._head) + (_marker(dropped) if dropped else b"") + tail

    def close(self) -> None:
        """Mark the output complete: followers end after yielding what is kept."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiters:
            for fut in self._waiters:
                if not fut.done():
                    fut.set_result(None)
            self._waiters.clear()

    def _read_from(self, pos: int) -> tuple[bytes, int]:
        # Offsets are absolute byte numbers: the head holds [0, H), the ring [total - T, total).
        head_len, total = len(self._head), self.total_bytes
        tail_start = total - len(self._ring)
        if pos < head_len:
            return bytes(self._head[pos:]), head_len
        if pos < tail_start:
            return _marker(tail_start - pos), tail_start
        if pos < total:
            return self._tail(pos - tail_start), total
        return b"", pos

    async def follow(self) -> AsyncIterator[bytes]:
        """Yield what is kept so far, then new output as it arrives; end when it closes.

        A follower reads from its own offset into the bounded buffers, so one that falls
        behind costs no memory: it gets a ``[... N bytes truncated ...]`` line for what
        scrolled out of the ring meanwhile.
        """
        pos = 0
        while True:
            chunk, pos = self._read_from(pos)
            if chunk:
                yield chunk
                continue
            if self.closed:
                return
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)


@dataclass(frozen=True)
class ProcessSpec:
    """Everything needed to start one run. ``argv`` is final (shell / runner already added),
    ``env`` complete (it must hold ``CRONKEEPER_RUN_ID=<run_id>``); ``user`` needs root;
    ``timeout`` None or 0 = none; ``stdin`` None = /dev/null; ``want_result`` opens the
    handler result pipe, announced to the child as ``$CRONKEEPER_RESULT_FD``."""

    argv: tuple[str, ...]
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    output_limit: int = 1024 * 1024
    timeout: float | None = None
    kill_grace: float = 10.0
    run_id: int = 0
    stdin: bytes | None = None
    want_result: bool = False


@dataclass
class ProcessOutcome:
    """How a run ended. ``signal`` is the number of the signal that killed the main process;
    ``ok`` means exit 0, neither timed out nor cancelled, and (handlers) the result said ok;
    ``error`` is a one-line human reason when not ok."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    cancelled: bool
    output: bytes
    output_bytes: int
    output_truncated: bool
    result: Any
    ok: bool
    error: str | None


class _SpawnError(Exception):
    """A run that cannot be started; the message is the run's error."""


def _credentials(user: str | None) -> dict[str, Any]:
    if user is None:
        return {}
    import pwd

    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise _SpawnError(f"unknown user: {user}") from None
    if pw.pw_uid == os.geteuid():
        return {}
    if os.geteuid() != 0:
        raise _SpawnError(f"cannot run as user {user}: the daemon is not running as root")
    # The same as initgroups(3), computed here so the child needs no preexec_fn.
    return {"user": pw.pw_uid, "group": pw.pw_gid,
            "extra_groups": os.getgrouplist(pw.pw_name, pw.pw_gid)}


def _spawn_error(exc: BaseException, spec: ProcessSpec) -> str:
    if isinstance(exc, _SpawnError):
        return str(exc)
    prog = spec.argv[0] if spec.argv else ""
    if isinstance(exc, OSError):
        if spec.cwd is not None and exc.filename == spec.cwd:
            if isinstance(exc, FileNotFoundError):
                return f"cwd does not exist: {spec.cwd}"
            return f"cannot use cwd {spec.cwd}: {exc.strerror}"
        if isinstance(exc, FileNotFoundError):
            return f"command not found: {prog}"
        if isinstance(exc, PermissionError):
            return f"permission denied: {prog}"
        return f"cannot start {prog}: {exc.strerror or exc}"
    return f"cannot start {prog}: {exc}"


def _describe(rc: int | None) -> str:
    if rc is None:
        return "did not exit"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    hint = {126: " (command not executable)", 127: " (command not found)"}.get(rc, "")
    return f"exit status {rc}{hint}"


class ProcessRun:
    """One supervised child process: ``await start()``, then ``await wait()``.

    ``cancel()`` stops it gracefully (SIGTERM to everything of the run, SIGKILL after
    ``kill_grace``), ``kill()`` at once (SIGKILL). ``output`` is live from the start, for
    followers. Spawn failures never raise: ``wait()`` reports them with ``ok=False``.
    """

    def __init__(self, spec: ProcessSpec) -> None:
        self.spec = spec
        self.output = OutputCapture(spec.output_limit)
        self.pid: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._rc: int | None = None
        self._spawn_error: str | None = None
        self._stop: str | None = None  # "timeout" | "cancel" | "kill", asked while it ran
        self._escalated = False  # kill() was called: no more grace anywhere
        self._task: asyncio.Task[ProcessOutcome] | None = None
        self._fds: dict[str, int] = {}  # "out", "result", "stdin", "pidfd"
        self._result = bytearray()
        self._result_overflow = False
        self._stdin_left = memoryview(spec.stdin or b"")
        self._timer: asyncio.TimerHandle | None = None
        self.marker = str(spec.run_id).encode()
        """The ``CRONKEEPER_RUN_ID`` value the child's environment carries."""

    async def start(self) -> int | None:
        """Spawn the child; returns its pid, or None when it could not be started (or was
        cancelled before) - ``wait()`` then says why."""
        if self._task is not None:
            raise RuntimeError("ProcessRun.start() called twice")
        self._loop = loop = asyncio.get_running_loop()
        self._event: asyncio.Future[None] = loop.create_future()  # exited or stop asked
        self._exited: asyncio.Future[None] = loop.create_future()
        self._out_done: asyncio.Future[None] = loop.create_future()
        if self._stop is None:
            try:
                self._spawn(loop)
            except Exception as exc:  # recorded, reported by wait(); never raised
                self._spawn_error = _spawn_error(exc, self.spec)
                if not isinstance(exc, (OSError, _SpawnError)):
                    log.warning("run %s: unexpected spawn failure", self.spec.run_id,
                                exc_info=True)
        self._task = loop.create_task(self._supervise())
        return self.pid

    def _spawn(self, loop: asyncio.AbstractEventLoop) -> None:
        spec = self.spec
        if not spec.argv:
            raise _SpawnError("empty command")
        creds = _credentials(spec.user)
        env = dict(spec.env)
        # The marker that finds the run's escaped descendants: the caller's value if it set
        # one (it should be the run id), so that what we look for is what the child got.
        env.setdefault("CRONKEEPER_RUN_ID", str(spec.run_id))
        self.marker = env["CRONKEEPER_RUN_ID"].encode()
        wanted = ["out"] + ["result"] * spec.want_result + ["stdin"] * (spec.stdin is not None)
        pipes: dict[str, tuple[int, int]] = {}
        # The parent keeps the read end of out/result and the write end of stdin.
        child = {"out": 1, "result": 1, "stdin": 0}
        try:
            for name in wanted:
                pipes[name] = os.pipe()
            ends = {name: pipe[child[name]] for name, pipe in pipes.items()}
            if spec.want_result:
                env["CRONKEEPER_RESULT_FD"] = str(ends["result"])  # pass_fds keeps the number
            self._popen = subprocess.Popen(
                spec.argv, stdin=ends.get("stdin", subprocess.DEVNULL), stdout=ends["out"],
                stderr=ends["out"], cwd=spec.cwd, env=env, start_new_session=True,
                pass_fds=(ends["result"],) if spec.want_result else (), **creds)
        finally:
            for name, pipe in pipes.items():
                os.close(pipe[child[name]])
                if self._popen is None:
                    os.close(pipe[1 - child[name]])
        self._fds = {name: pipe[1 - child[name]] for name, pipe in pipes.items()}
        self.pid = pid = self._popen.pid
        track(pid, self.marker)
        for fd in self._fds.values():
            os.set_blocking(fd, False)
        loop.add_reader(self._fds["out"], self._pump, "out", self.output.feed)
        if spec.want_result:
            loop.add_reader(self._fds["result"], self._pump, "result", self._take_result)
        if spec.stdin is not None:
            self._on_stdin()
        try:
            self._fds["pidfd"] = os.pidfd_open(pid)
            loop.add_reader(self._fds["pidfd"], self._on_exit)
        except OSError:  # kernel < 5.3: a thread blocks in waitid instead
            import threading

            def watch() -> None:
                with contextlib.suppress(ChildProcessError):
                    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                loop.call_soon_threadsafe(self._on_exit)

            threading.Thread(target=watch, name=f"cronkeeper-wait-{pid}", daemon=True).start()
        if spec.timeout:
            self._timer = loop.call_later(spec.timeout, self._request_stop, "timeout")

    # ---- event-loop callbacks ----

    def _close(self, name: str) -> None:
        fd = self._fds.pop(name, -1)
        if fd >= 0:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
            os.close(fd)
        if name == "out":
            self.output.close()
            if not self._out_done.done():
                self._out_done.set_result(None)

    def _on_exit(self) -> None:
        self._close("pidfd")
        assert self._popen is not None
        self._rc = self._popen.wait()  # it has exited: this only reaps
        untrack(self._popen.pid)
        if self._timer is not None:
            self._timer.cancel()
        self._exited.set_result(None)
        if not self._event.done():
            self._event.set_result(None)

    def _pump(self, name: str, sink: Callable[[bytes], None]) -> bool:
        """Move what pipe ``name`` holds into ``sink``; True once it reached EOF."""
        for _ in range(64):  # bounded: a leftover may be writing all the time
            if name not in self._fds:
                return True
            try:
                data = os.read(self._fds[name], _CHUNK)
            except BlockingIOError:
                return False
            except OSError:
                data = b""
            if not data:
                self._close(name)
                return True
            sink(data)
        return False

    def _take_result(self, data: bytes) -> None:
        if len(self._result) + len(data) > _RESULT_LIMIT:
            self._result_overflow = True  # keep reading, so the child never blocks
        else:
            self._result += data

    def _on_stdin(self) -> None:
        fd = self._fds["stdin"]
        try:
            while self._stdin_left:
                self._stdin_left = self._stdin_left[os.write(fd, self._stdin_left):]
        except BlockingIOError:
            self._loop.add_writer(fd, self._on_stdin)  # re-adding just replaces it
            return
        except OSError:  # the child closed its stdin (EPIPE): what it did not read is moot
            pass
        self._close("stdin")

    # ---- control ----

    def _request_stop(self, reason: str) -> None:
        if reason == "kill":
            self._escalated = True
        if self._rc is None and self._stop is None:
            self._stop = reason
        if not self._event.done():
            self._event.set_result(None)

    def cancel(self) -> None:
        """Stop gracefully: SIGTERM to everything of the run, SIGKILL after ``kill_grace``.
        The outcome says ``cancelled``. A no-op once the main process has exited."""
        if self._task is None:
            self._stop = self._stop or "cancel"
        else:
            self._request_stop("cancel")

    def kill(self) -> None:
        """SIGKILL everything of the run now (also leftovers still being cleaned up)."""
        if self._task is None:
            self._stop = "kill"
            return
        self._request_stop("kill")
        if self._popen is not None:
            if (pgid := self._group()) is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            for pid, start in self._find().items():
                send_signal(pid, start, signal.SIGKILL)

    def _group(self) -> int | None:
        # The group id is the main pid: only safe to use while the main is unreaped.
        return self.pid if self._rc is None else None

    def _find(self) -> dict[int, int]:
        """Living processes of this run, pid -> start time (see ``proctree``)."""
        return run_members(self.pid, self.marker, unreaped=self._rc is None)

    def _leftovers(self) -> str:
        """After the main exited (cheap checks, no /proc scan): "yes" something of the run
        may remain, "no", or "maybe" (we have children we cannot attribute cheaply)."""
        assert self.pid is not None
        try:
            os.killpg(self.pid, 0)
            return "yes"
        except ProcessLookupError:
            pass
        except PermissionError:
            return "yes"
        if not self._pump("out", self.output.feed):
            return "yes"  # someone still holds the output pipe
        return orphans_left()

    # ---- supervision ----

    async def wait(self) -> ProcessOutcome:
        """The outcome, once the run and its clean-up are over. Cancelling the caller does
        not stop the supervision."""
        if self._task is None:
            raise RuntimeError("ProcessRun.wait() before start()")
        return await asyncio.shield(self._task)

    async def _supervise(self) -> ProcessOutcome:
        try:
            if self._popen is not None:
                await self._event
                left = "yes" if self._rc is None else self._leftovers()
                if left == "yes":
                    # A stop asked while it ran, or leftovers after a normal end.
                    grace = 0.0 if self._escalated else self.spec.kill_grace
                    await terminate(self._find, grace, lambda: self._escalated, self._group)
                    await self._exited
                elif left == "maybe":
                    schedule_sweep(self._loop, self.spec.kill_grace)
                if not self._pump("out", self.output.feed):
                    try:
                        await asyncio.wait_for(asyncio.shield(self._out_done), _EOF_WAIT)
                    except TimeoutError:
                        log.warning("run %s: output pipe still open after clean-up; "
                                    "no longer reading it", self.spec.run_id)
                self._pump("result", self._take_result)
            return self._outcome()
        finally:
            if self._popen is not None and self._rc is None:
                # Supervision itself was cancelled (loop shutting down): leave nothing.
                for pid, start in self._find().items():
                    send_signal(pid, start, signal.SIGKILL)
                untrack(self._popen.pid)
                self._popen.returncode = -signal.SIGKILL  # reap_orphans() collects it
            if self._timer is not None:
                self._timer.cancel()
            for name in ("pidfd", "stdin", "result", "out"):
                self._close(name)

    def _outcome(self) -> ProcessOutcome:
        rc, spec = self._rc, self.spec
        result, handler_error = self._parse_result()
        timed_out = self._stop == "timeout"
        cancelled = self._stop in ("cancel", "kill")
        if self._spawn_error is not None:
            error: str | None = self._spawn_error
        elif self._popen is None:
            error, cancelled = "cancelled before start", True
        elif timed_out:
            error = f"{_describe(rc)} after timeout of {spec.timeout:g}s"
        elif cancelled:
            error = f"cancelled ({_describe(rc)})"
        elif handler_error is not None:
            error = handler_error
        elif rc != 0:
            error = _describe(rc)
        else:
            error = None
        return ProcessOutcome(
            exit_code=rc if rc is not None and rc >= 0 else None,
            signal=-rc if rc is not None and rc < 0 else None,
            timed_out=timed_out, cancelled=cancelled, output=self.output.getvalue(),
            output_bytes=self.output.total_bytes, output_truncated=self.output.truncated,
            result=result, ok=error is None, error=error)

    def _parse_result(self) -> tuple[Any, str | None]:
        if not self.spec.want_result or self._popen is None:
            return None, None
        if self._result_overflow:
            return None, f"handler result larger than {_RESULT_LIMIT} bytes"
        if not self._result:
            # A crash (non-zero exit, signal) describes itself better than this.
            return None, "handler exited without reporting a result" if self._rc == 0 else None
        try:
            msg = json.loads(self._result)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            return None, "handler sent an invalid result message"
        if msg.get("ok"):
            return msg.get("result"), None
        return msg.get("result"), str(msg.get("error") or "handler failed")

"""Supervise one child process per run: output capture, timeout, cancel, no leftovers.

A run is a child in its own session (``start_new_session``). stdout and stderr share one
pipe so their order is kept; ``OutputCapture`` keeps a bounded head and tail of it.

What is guaranteed about descendants (SPEC 3, "no grandchild outlives its run"), given that
the daemon called ``enable_subreaper()`` so orphans are re-parented to it instead of init:

* On timeout, ``cancel()`` and ``kill()``: every process of the run gets SIGTERM (SIGKILL for
  ``kill()``), whatever is still alive after ``kill_grace`` gets SIGKILL, and ``wait()``
  returns only once they are dead. "Of the run" means: the main process and its descendants
  (``/proc`` ppid links), every descendant of the daemon in the run's process group or
  session, every descendant of the daemon whose environment holds
  ``CRONKEEPER_RUN_ID=<run_id>`` (a ``setsid`` + double-fork orphan; the executor adds the
  variable when the caller did not), and their descendants.
* At normal end (the main process exited) the same clean-up (SIGTERM, SIGKILL after
  ``kill_grace``) runs before ``wait()`` returns when a cheap check says something may be
  left: the process group still has members, someone still holds the output pipe, or the
  daemon has children although no other run is active. With other runs active at that
  moment the last check cannot tell whose an orphan is without a full ``/proc`` scan (about
  1.5 ms, twice the cost of spawning ``/bin/true``), so a background sweep (coalesced, within
  ``_SWEEP_DELAY`` + ``kill_grace``) kills such leftovers instead; ``reap_orphans()``, which
  the daemon calls periodically, schedules the same sweep as a safety net.
* Not guaranteed: a descendant that leaves the session, closes the output pipe *and* drops
  ``CRONKEEPER_RUN_ID`` from its environment while other runs are active; a fork bomb that
  outpaces the kill rounds; processes in uninterruptible sleep. Without the subreaper,
  orphans go to init: only those still carrying the run's marker are found (anywhere on the
  host, so run ids must then be unique per host). A per-run cgroup would close these gaps;
  it is not used (this host has cgroup v1 only).
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
from typing import Any, NamedTuple

__all__ = [
    "OutputCapture", "ProcessOutcome", "ProcessRun", "ProcessSpec", "enable_subreaper",
    "install_child_watcher", "reap_orphans", "sweep_orphans",
]

log = logging.getLogger("cronkeeper.executor")

_CHUNK = 64 * 1024  # one pipe's worth: each read stays small, so memory stays flat
_RESULT_LIMIT = 16 * 1024 * 1024  # a handler's JSON result beyond this is refused
_EOF_WAIT = 2.0  # after clean-up, how long the output pipe may stay open before we stop reading
_SWEEP_DELAY = 0.25  # coalesces the background sweeps of run ends arriving together
_KILL_ROUNDS = 5  # SIGKILL rescans, for descendants forked while we were killing
_PR_SET_CHILD_SUBREAPER = 36

_subreaper = False
# Unreaped main processes of ProcessRuns, pid -> run. Everything else we find among our
# children is an orphan re-parented to us (or another library's child, see reap_orphans).
_tracked: dict[int, ProcessRun] = {}
_sweep: tuple[asyncio.Task[None] | None, float] = (None, 0.0)


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


class _Proc(NamedTuple):
    state: bytes
    ppid: int
    pgrp: int
    sid: int
    start: int


def _stat(pid: int) -> _Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: the fields start after the last ")".
    rest = data[data.rindex(b")") + 2:].split(b" ", 20)
    return _Proc(rest[0], int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19]))


def _scan() -> dict[int, _Proc]:
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (p := _stat(int(name))) is not None:
            procs[int(name)] = p
    return procs


def _environ_run_id(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:  # gone, or not ours to read (then not ours to kill either)
        return None
    i = (b"\0" + env).find(b"\0CRONKEEPER_RUN_ID=")
    if i < 0:
        return None
    return env[i + 18:].split(b"\0", 1)[0]


def _subtree(children: dict[int, list[int]], roots: set[int]) -> set[int]:
    seen, todo = set(roots), list(roots)
    while todo:
        for kid in children.get(todo.pop(), ()):
            if kid not in seen:
                seen.add(kid)
                todo.append(kid)
    return seen


def _alive(pid: int, start: int) -> bool:
    p = _stat(pid)
    return p is not None and p.start == start and p.state not in (b"Z", b"X")


def _signal(pid: int, start: int, sig: int) -> None:
    """Signal ``pid`` only if it is still the process that started at ``start`` (pid reuse)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd support: a (tiny) pid-reuse window remains
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if _alive(pid, start):
                os.kill(pid, sig)
        return
    try:
        if _alive(pid, start):  # the pidfd now pins this exact process
            signal.pidfd_send_signal(fd, sig)
    except (ProcessLookupError, PermissionError) as exc:
        log.debug("cannot signal %d: %s", pid, exc)
    finally:
        os.close(fd)


def _watcher_pids() -> set[int]:
    # Children asyncio itself waits for (other code's create_subprocess_*): never reap those.
    watcher = getattr(asyncio.get_event_loop_policy(), "_watcher", None)
    table = getattr(watcher, "_callbacks", None) or getattr(watcher, "_threads", None) or {}
    return set(table)


def enable_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (prctl CHILD_SUBREAPER), so
    a run's ``setsid``'d grandchildren stay findable. Call once, early, in the daemon."""
    global _subreaper
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_CHILD_SUBREAPER) failed: %s", os.strerror(ctypes.get_errno()))
        return False
    _subreaper = True
    return True


def install_child_watcher(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Use asyncio's PidfdChildWatcher (no thread per child) on Python 3.11 when the kernel
    has pidfd_open, attached to ``loop`` (default: the running loop). ``ProcessRun`` does not
    need it (it waits on pidfds itself); it speeds up other ``create_subprocess_*`` users.
    The watcher is process-global, so only the main thread's loop may install it (elsewhere
    this returns False); Python 3.12+ already uses pidfds (no-op, True)."""
    import sys
    import threading

    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    if sys.version_info >= (3, 12):
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(loop or asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    return True


def reap_orphans() -> int:
    """Reap zombie children that nobody else waits for (orphans re-parented to us by the
    subreaper); returns how many. Never ``waitpid(-1)``: ProcessRuns, asyncio's watcher and
    children in our own session (other libraries' subprocesses) are left alone. Inside a
    running loop it also schedules a background ``sweep_orphans()`` as a safety net."""
    if _subreaper:
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule on
            _schedule_sweep(asyncio.get_running_loop(), 5.0)
    return _reap()


def _reap() -> int:
    try:
        if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return 0  # children, but no zombie among them
    except ChildProcessError:
        return 0
    me, my_sid, reaped = os.getpid(), os.getsid(0), 0
    skip = set(_tracked) | _watcher_pids()
    for pid, p in _scan().items():
        if p.ppid == me and p.state == b"Z" and pid not in skip and p.sid != my_sid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
                reaped += 1
    return reaped


async def sweep_orphans(kill_grace: float = 5.0) -> int:
    """Kill leftovers of runs that are over: descendants of the daemon whose environment
    names a run id no ProcessRun is running (SIGTERM, SIGKILL after ``kill_grace``), and
    reap zombies. Needs the subreaper. Returns how many processes were signalled."""
    _reap()
    if not _subreaper:
        return 0
    own = os.environ.get("CRONKEEPER_RUN_ID", "").encode()  # a daemon started by a run

    def find() -> dict[int, int]:
        procs = _scan()
        children = _children(procs)
        active = {r.marker for r in _tracked.values()} | {own}
        # Whatever hangs below or shares a session with a running run stays, whatever its
        # environment says (a caller may have set a marker that is not the run's).
        safe = _subtree(children, set(_tracked)) | {
            pid for pid, p in procs.items() if p.sid in _tracked}
        me = os.getpid()
        stale = {pid for pid in _subtree(children, {me}) - {me} - safe
                 if (rid := _environ_run_id(pid)) is not None and rid not in active}
        return _living(procs, _subtree(children, stale) - safe)

    return await _terminate(find, kill_grace)


def _schedule_sweep(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    global _sweep
    task, pending_grace = _sweep
    if task is not None and not task.done() and task.get_loop() is loop:
        _sweep = (task, max(pending_grace, grace))
        return

    async def later() -> None:
        await asyncio.sleep(_SWEEP_DELAY)
        await sweep_orphans(_sweep[1])

    _sweep = (loop.create_task(later()), grace)


def _children(procs: dict[int, _Proc]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for pid, p in procs.items():
        children.setdefault(p.ppid, []).append(pid)
    return children


def _living(procs: dict[int, _Proc], pids: set[int]) -> dict[int, int]:
    me = os.getpid()
    return {pid: procs[pid].start for pid in pids
            if pid in procs and pid != me and procs[pid].state not in (b"Z", b"X")}


async def _terminate(find: Callable[[], dict[int, int]], grace: float,
                     escalate: Callable[[], bool] = lambda: False,
                     group: Callable[[], int | None] = lambda: None) -> int:
    """SIGTERM (+SIGCONT, for stopped ones) what ``find()`` returns, wait up to ``grace`` for
    it to die, then SIGKILL whatever ``find()`` still returns, in rounds until nothing is
    left. ``group()`` names a process group that is safe to signal as a whole (its leader is
    unreaped). Returns how many distinct processes were signalled."""
    loop = asyncio.get_running_loop()
    members = find()
    hit = set(members)
    if grace > 0 and not escalate():
        if (pgid := group()) is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
                os.killpg(pgid, signal.SIGCONT)
        for pid, start in members.items():
            _signal(pid, start, signal.SIGTERM)
            _signal(pid, start, signal.SIGCONT)
        await _until_dead(members, loop.time() + grace, escalate)
    for _ in range(_KILL_ROUNDS):
        members = find()
        if not members:
            break
        hit.update(members)
        if (pgid := group()) is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for pid, start in members.items():
            _signal(pid, start, signal.SIGKILL)
        await _until_dead(members, loop.time() + _EOF_WAIT, lambda: False)
    _reap()
    return len(hit)


async def _until_dead(members: dict[int, int], deadline: float,
                      escalate: Callable[[], bool]) -> None:
    # Polling, not pidfds: simple, works for non-children and old kernels alike, and this
    # only runs on the kill path. Starts fast, backs off to 100 ms.
    loop, delay = asyncio.get_running_loop(), 0.002
    while any(_alive(pid, start) for pid, start in members.items()):
        left = deadline - loop.time()
        if left <= 0 or escalate():
            return
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, 0.1)


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
        _tracked[pid] = self
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
        _tracked.pop(self._popen.pid, None)
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
                _signal(pid, start, signal.SIGKILL)

    def _group(self) -> int | None:
        # The group id is the main pid: only safe to use while the main is unreaped.
        return self.pid if self._rc is None else None

    def _find(self) -> dict[int, int]:
        """Living processes of this run, pid -> start time (see the module docstring)."""
        procs = _scan()
        children = _children(procs)
        me, main = os.getpid(), self.pid
        ours = _subtree(children, {me})
        marker = self.marker
        seeds = {main} if self._rc is None and main in procs else set()
        for pid, p in procs.items():
            mine = pid in ours
            if mine and (p.pgrp == main or p.sid == main):
                seeds.add(pid)
            elif (mine or not _subreaper) and pid != me and _environ_run_id(pid) == marker:
                seeds.add(pid)
        return _living(procs, _subtree(children, seeds))

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
        if not _subreaper:
            return "no"
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return "no"  # no children at all: no orphan was re-parented to us
        return "maybe" if _tracked or _watcher_pids() else "yes"

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
                    await _terminate(self._find, grace, lambda: self._escalated, self._group)
                    await self._exited
                elif left == "maybe":
                    _schedule_sweep(self._loop, self.spec.kill_grace)
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
                    _signal(pid, start, signal.SIGKILL)
                _tracked.pop(self._popen.pid, None)
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

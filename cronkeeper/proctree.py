"""Find and kill a run's process tree, through ``/proc``; reap the orphans it leaves.

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

(``cancel()``, ``kill()`` and ``wait()`` are ``cronkeeper.executor.ProcessRun``'s; it
registers each main process with ``track()`` until it is reaped.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "enable_subreaper", "install_child_watcher", "orphans_left", "reap_orphans", "run_members",
    "schedule_sweep", "send_signal", "sweep_orphans", "terminate", "track", "untrack",
]

# The executor's logger: these lines were logged under it before this module split off.
log = logging.getLogger("cronkeeper.executor")

_SWEEP_DELAY = 1.0  # coalesces the background sweeps of run ends arriving together (one /proc scan a second at most under load)
_KILL_ROUNDS = 5  # SIGKILL rescans, for descendants forked while we were killing
_KILL_WAIT = 2.0  # after each SIGKILL round, how long to wait for the killed to die
_PR_SET_CHILD_SUBREAPER = 36

_subreaper = False
# Unreaped main processes of ProcessRuns, pid -> the run's marker. Everything else we find
# among our children is an orphan re-parented to us (or another library's child, see
# reap_orphans).
_tracked: dict[int, bytes] = {}
_sweep: tuple[asyncio.Task[None] | None, float] = (None, 0.0)


def track(pid: int, marker: bytes) -> None:
    """Register a run's main process (until ``untrack``): reaping leaves it alone, and the
    sweep spares everything below it or in its session, and whatever carries ``marker``
    (its ``CRONKEEPER_RUN_ID`` value)."""
    _tracked[pid] = marker


def untrack(pid: int) -> None:
    """Forget a main process registered with ``track`` (it was reaped); no-op if unknown."""
    _tracked.pop(pid, None)


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


def send_signal(pid: int, start: int, sig: int) -> None:
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
    if _subreaper and _has_children():
        # With no children at all there is nothing of ours left anywhere: every orphan of a
        # run is re-parented to us (the subreaper), so skip the /proc scan (idle CPU).
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule on
            schedule_sweep(asyncio.get_running_loop(), 5.0)
    return _reap()


def _has_children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


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
        active = set(_tracked.values()) | {own}
        # Whatever hangs below or shares a session with a running run stays, whatever its
        # environment says (a caller may have set a marker that is not the run's).
        safe = _subtree(children, set(_tracked)) | {
            pid for pid, p in procs.items() if p.sid in _tracked}
        me = os.getpid()
        stale = {pid for pid in _subtree(children, {me}) - {me} - safe
                 if (rid := _environ_run_id(pid)) is not None and rid not in active}
        return _living(procs, _subtree(children, stale) - safe)

    return await terminate(find, kill_grace)


def schedule_sweep(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    """Run ``sweep_orphans(grace)`` on ``loop`` after ``_SWEEP_DELAY``; one already pending
    there absorbs this request (with the larger grace)."""
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


async def terminate(find: Callable[[], dict[int, int]], grace: float,
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
            send_signal(pid, start, signal.SIGTERM)
            send_signal(pid, start, signal.SIGCONT)
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
            send_signal(pid, start, signal.SIGKILL)
        await _until_dead(members, loop.time() + _KILL_WAIT, lambda: False)
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


def run_members(main: int | None, marker: bytes, *, unreaped: bool) -> dict[int, int]:
    """Living processes of the run whose main process is ``main`` (``unreaped`` while it is
    not yet reaped) and whose ``CRONKEEPER_RUN_ID`` is ``marker``: pid -> start time, for
    ``send_signal``. What "of the run" means is in the module docstring."""
    procs = _scan()
    children = _children(procs)
    me = os.getpid()
    ours = _subtree(children, {me})
    seeds = {main} if unreaped and main in procs else set()
    for pid, p in procs.items():
        mine = pid in ours
        if mine and (p.pgrp == main or p.sid == main):
            seeds.add(pid)
        elif (mine or not _subreaper) and pid != me and _environ_run_id(pid) == marker:
            seeds.add(pid)
    return _living(procs, _subtree(children, seeds))


def orphans_left() -> str:
    """After a run's main process was reaped (and ``untrack``ed), whether orphans of it may
    be re-parented to us, without a /proc scan: "no", "yes", or "maybe" (we have children,
    but other tracked runs or asyncio's watcher may own them)."""
    if not _subreaper:
        return "no"
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return "no"  # no children at all: no orphan was re-parented to us
    return "maybe" if _tracked or _watcher_pids() else "yes"

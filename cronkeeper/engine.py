"""The heart of the daemon: fires tasks, applies the run policies, supervises and records runs.

Decisions that depend on time (misfires, catch-up, retry delays) are pure functions at the top
of this module taking ``now`` as an argument; the ``Engine`` wires them to APScheduler (which
only decides *when* to wake up), the executor and the store. Everything here runs on the
event loop; the store's writer thread does the disk I/O.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from cronkeeper.clock import Clock
from cronkeeper.config import Config, TaskConfig
from cronkeeper.errors import Conflict, RunNotFound, TaskNotFound
from cronkeeper.events import EventBus, RunFinished, RunQueued, RunStarted, TaskUpdated
from cronkeeper.executor import ProcessOutcome, ProcessRun, ProcessSpec
from cronkeeper.schedule import Schedule
from cronkeeper.sdnotify import child_environment
from cronkeeper.store import Store
from cronkeeper.trigger import FireQueue, QueueTrigger
from cronkeeper.vocab import Overlap, RunStatus, RunTrigger, TaskState

log = logging.getLogger("cronkeeper.engine")

# A fire handled later than this is a *missed* fire (daemon stalled or suspended, clock jumped):
# it runs only with catch_up = true. Below it, lateness is ordinary scheduling delay.
MISFIRE_THRESHOLD = timedelta(seconds=60)
# Triggers that belong to a task's schedule: their chains complete one-shots and obey pause.
SCHEDULED_TRIGGERS = {RunTrigger.SCHEDULE, RunTrigger.CATCH_UP, RunTrigger.RETRY,
                      RunTrigger.REBOOT}
FAILED_STATUSES = {RunStatus.FAILED, RunStatus.TIMED_OUT}
FIRE_JOB = "cronkeeper-fires"  # the one APScheduler job; FireQueue knows what is due
NEVER = datetime(9999, 1, 1, tzinfo=UTC)
RUNNING_WRITE_DELAY = 1.0  # seconds a run runs before its row is updated to "running"


# --- pure policy functions (tested with fixed datetimes, no daemon) -------------------------

def retry_delay(task: TaskConfig, attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after attempt ``attempt`` failed."""
    delay = task.retry_delay * task.retry_backoff ** max(0, attempt - 1)
    return min(delay, task.retry_max_delay) if task.retry_max_delay > 0 else delay


def split_misfires(run_times: list[datetime], now: datetime) -> tuple[datetime | None, int]:
    """Split APScheduler's due ``run_times`` into (the fire to run on time or None, missed count).

    The newest due time runs normally when it is less than ``MISFIRE_THRESHOLD`` late; every
    other due time was missed.
    """
    if not run_times:
        return None, 0
    latest = run_times[-1]
    if now - latest <= MISFIRE_THRESHOLD:
        return latest, len(run_times) - 1
    return None, len(run_times)


def catch_up_due(schedule: Schedule, since: datetime | None, now: datetime) -> datetime | None:
    """The newest fire in ``(since, now]`` if any was missed, else None.

    ``since`` is when the task was last handled (its last fire, or when it was first seen).
    A one-shot that was never handled is due whenever its time has passed.
    """
    first = schedule.next_after(since) if since is not None else None
    if since is None and schedule.is_one_shot:
        first = schedule.next_after(datetime(1970, 1, 1, tzinfo=UTC))
    if first is None or first > now:
        return None
    latest = first
    # Bounded walk to the newest missed fire (a 1s task down for a day is 86,400 steps at most
    # would be silly; 10,000 is plenty to name a recent scheduled_for).
    for _ in range(10_000):
        following = schedule.next_after(latest)
        if following is None or following > now:
            break
        latest = following
    return latest


def _ts(dt: datetime | None) -> float | None:
    return dt.timestamp() if dt is not None else None


# --- runtime state ----------------------------------------------------------------------------

@dataclass(eq=False)
class ActiveRun:
    """A run that is queued or running; its ``record`` is the row as the API shows it."""

    record: dict[str, Any]
    task: str
    inserted: asyncio.Future[Any]
    upstream: dict[str, Any] | None = None
    process: ProcessRun | None = None
    cancel_reason: str | None = None  # set when cancelled (by a user, replace, or shutdown)
    cancel_status: RunStatus = RunStatus.CANCELLED
    started: asyncio.Event = field(default_factory=asyncio.Event)  # process spawned (or run over)
    running_write: asyncio.TimerHandle | None = None  # the deferred "running" row update
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def id(self) -> int:
        return int(self.record["id"])

    def cancel_requested(self) -> bool:
        return self.cancel_reason is not None


@dataclass(eq=False)
class TaskRuntime:
    config: TaskConfig
    paused: bool = False
    retry_count: int = 0
    completed: bool = False
    last_fire_at: float | None = None
    first_seen_at: float | None = None
    last_run: dict[str, Any] | None = None
    active: dict[int, ActiveRun] = field(default_factory=dict)
    pending: ActiveRun | None = None  # overlap = queue/replace: waits for the active runs
    retry_timer: asyncio.Task[None] | None = None
    retry_due: float | None = None
    held_retry: tuple[int, dict[str, Any]] | None = None  # retry due while paused

    @property
    def name(self) -> str:
        return self.config.name

    def state(self, paused_all: bool) -> TaskState:
        if self.active or self.pending:
            return TaskState.RUNNING
        if self.retry_timer is not None or self.held_retry is not None:
            return TaskState.RETRY_SCHEDULED
        if self.completed:
            return TaskState.COMPLETED
        if self.paused:
            return TaskState.PAUSED
        if not self.config.enabled:
            return TaskState.DISABLED
        return TaskState.ACTIVE


class _FireExecutor(BaseExecutor):
    """APScheduler executor that hands due fires straight to the engine on the event loop.

    APScheduler decides when to wake up; what a fire means (misfire, overlap, pause) is ours.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        try:
            self._engine.on_wake()
        finally:
            self._run_job_success(job.id, [])


# --- the engine -------------------------------------------------------------------------------

class Engine:
    """Owns the task runtimes and every active run. All methods run on the event loop."""

    def __init__(self, config: Config, store: Store, bus: EventBus, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.clock = clock
        self.tasks: dict[str, TaskRuntime] = {}
        self.runs: dict[int, ActiveRun] = {}
        self.paused_all = False
        self._slot_queue: deque[ActiveRun] = deque()
        self._running = 0
        self._stopping = False
        self._background: set[asyncio.Task[Any]] = set()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.add_executor(_FireExecutor(self), "default")
        self.fires = FireQueue()

    # ---- lifecycle ----

    async def start(self, *, reboot: bool = True) -> list[int]:
        """Recover, catch up, fire @reboot tasks and start the scheduler. Returns interrupted ids."""
        now = self.clock.now()
        interrupted = self.store.mark_interrupted(now.timestamp())
        self.paused_all = self.store.get_meta("paused_all") == "1"
        states = self.store.task_states()
        last_runs = self.store.last_runs(list(self.config.tasks))
        for task in self.config.tasks.values():
            self.tasks[task.name] = self._new_runtime(task, states.get(task.name),
                                                      last_runs.get(task.name), now)
        for rt in self.tasks.values():
            self._schedule_job(rt, now)
        self.scheduler.add_job(
            _never_called, trigger=QueueTrigger(self.fires), id=FIRE_JOB, name=FIRE_JOB,
            coalesce=False, misfire_grace_time=None, max_instances=1_000_000)
        self.scheduler.start()
        self._catch_up(now)
        if reboot:
            for rt in self.tasks.values():
                sched = rt.config.schedule
                if sched is not None and sched.is_reboot and self._may_fire(rt):
                    self.dispatch(rt, RunTrigger.REBOOT, now)
        return interrupted

    def _new_runtime(self, task: TaskConfig, state: dict[str, Any] | None,
                     last_run: dict[str, Any] | None, now: datetime) -> TaskRuntime:
        rt = TaskRuntime(config=task, last_run=last_run)
        if state:
            rt.paused = bool(state.get("paused"))
            rt.retry_count = int(state.get("retry_count") or 0)
            rt.completed = bool(state.get("completed"))
            rt.last_fire_at = state.get("last_fire_at")
            rt.first_seen_at = state.get("first_seen_at")
        if rt.first_seen_at is None:
            rt.first_seen_at = now.timestamp()
            self.store.set_task_state(task.name, first_seen_at=rt.first_seen_at)
        return rt

    def _catch_up(self, now: datetime, names: Iterable[str] | None = None) -> None:
        for name in names if names is not None else list(self.tasks):
            rt = self.tasks[name]
            sched = rt.config.schedule
            if sched is None or sched.is_reboot or rt.completed or not rt.config.catch_up:
                continue
            if not self._may_fire(rt):
                continue
            due = catch_up_due(sched, None if sched.is_one_shot else self._handled_until(rt), now)
            if due is not None:
                log.info("task %s: catching up the missed fire of %s", rt.name, due.isoformat())
                self._note_fire(rt, due)
                self.dispatch(rt, RunTrigger.CATCH_UP, due)

    @staticmethod
    def _handled_until(rt: TaskRuntime) -> datetime | None:
        """The newest instant up to which the task's fires were handled (run, skipped, paused).

        Fires that made a run row are known from that row's ``scheduled_for``; only fires
        that made none (paused, disabled) are persisted as ``last_fire_at``.
        """
        last = rt.last_run
        from_run = (last.get("scheduled_for") if last is not None
                    and last.get("trigger") in SCHEDULED_TRIGGERS else None)
        since = max(filter(None, (rt.last_fire_at, rt.first_seen_at, from_run)), default=None)
        return datetime.fromtimestamp(since, UTC) if since is not None else None

    async def shutdown(self, grace: float) -> None:
        """Stop firing, give running tasks ``grace`` seconds, then kill and record them."""
        self._stopping = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for rt in self.tasks.values():
            if rt.last_fire_at is not None:
                self.store.set_task_state(rt.name, last_fire_at=rt.last_fire_at)
        for rt in self.tasks.values():
            if rt.retry_timer is not None:
                rt.retry_timer.cancel()
        for ar in list(self._slot_queue):
            self._cancel_active(ar, "the daemon stopped before the run started",
                                RunStatus.INTERRUPTED)
        for rt in self.tasks.values():
            if rt.pending is not None:
                self._cancel_active(rt.pending, "the daemon stopped before the run started",
                                    RunStatus.INTERRUPTED)
        waiting = [ar.done.wait() for ar in self.runs.values()]
        if waiting:
            log.info("waiting up to %.0fs for %d running task(s)", grace, len(waiting))
            await asyncio.wait([asyncio.ensure_future(w) for w in waiting], timeout=grace)
        await self.kill_all("the daemon stopped (shutdown_grace exceeded)")

    async def kill_all(self, reason: str) -> None:
        for ar in list(self.runs.values()):
            ar.cancel_reason = reason
            ar.cancel_status = RunStatus.INTERRUPTED
            if ar.process is not None:
                ar.process.kill()
        remaining = [ar.done.wait() for ar in self.runs.values()]
        if remaining:
            await asyncio.wait([asyncio.ensure_future(w) for w in remaining], timeout=10)

    # ---- config ----

    def apply_config(self, config: Config) -> dict[str, list[str]]:
        """Swap in a validated config; running runs are never interrupted."""
        old = self.config.tasks
        new = config.tasks
        added = [n for n in new if n not in old]
        removed = [n for n in old if n not in new]
        changed = [n for n in new if n in old and new[n] != old[n]]
        now = self.clock.now()
        self.config = config
        for name in removed:
            rt = self.tasks.pop(name)
            self._remove_job(name)
            if rt.retry_timer is not None:
                rt.retry_timer.cancel()
        for name in changed:
            rt = self.tasks[name]
            rt.config = new[name]
            self._schedule_job(rt)
        states = self.store.task_states() if added else {}
        last_runs = self.store.last_runs(added) if added else {}
        for name in added:
            rt = self._new_runtime(new[name], states.get(name), last_runs.get(name), now)
            self.tasks[name] = rt
            self._schedule_job(rt)
        # Keep file order for listings.
        self.tasks = {name: self.tasks[name] for name in new}
        self._fires_changed()
        self._catch_up(now, added)  # e.g. a one-shot whose time has already passed
        for name in added + changed:
            self._task_updated(self.tasks[name])
        return {"added": added, "removed": removed, "changed": changed}

    # ---- APScheduler jobs ----

    def _schedule_job(self, rt: TaskRuntime, now: datetime | None = None) -> None:
        sched = rt.config.schedule
        if sched is None or sched.is_reboot or rt.completed:
            self.fires.remove(rt.name)
            return
        now = now or self.clock.now()
        self.fires.set(rt.name, sched, now - timedelta(microseconds=1))  # due exactly now counts

    def _remove_job(self, name: str) -> None:
        self.fires.remove(name)

    def _fires_changed(self) -> None:
        """Tell APScheduler the earliest fire may have moved (after a reload)."""
        if self.scheduler.running:
            head = self.fires.head()
            self.scheduler.modify_job(FIRE_JOB, next_run_time=head or NEVER)

    def next_run(self, rt: TaskRuntime) -> datetime | None:
        if not self._may_fire(rt):
            return None
        return self.fires.next_fire(rt.name)

    def on_wake(self) -> None:
        """APScheduler woke up at the queue's head: fire everything due."""
        if self._stopping:
            return
        for name, run_times in self.fires.pop_due(self.clock.now()):
            self.on_fire(name, run_times)

    # ---- firing ----

    def _may_fire(self, rt: TaskRuntime) -> bool:
        return rt.config.enabled and not rt.paused and not self.paused_all and not rt.completed

    def _note_fire(self, rt: TaskRuntime, when: datetime, *, persist: bool = False) -> None:
        # Most fires leave a run row whose scheduled_for records them; writing the task state
        # too would double the writes on the hot path. Fires that leave no row persist here.
        rt.last_fire_at = when.timestamp()
        if persist:
            self.store.set_task_state(rt.name, last_fire_at=rt.last_fire_at)

    def on_fire(self, name: str, run_times: list[datetime]) -> None:
        """APScheduler says ``name`` is due at ``run_times`` (oldest first)."""
        rt = self.tasks.get(name)
        if rt is None or self._stopping:
            return
        now = self.clock.now()
        if not self._may_fire(rt):
            # Paused or disabled: nothing fires, and nothing is owed later.
            self._note_fire(rt, run_times[-1], persist=True)
            return
        self._note_fire(rt, run_times[-1])
        on_time, missed = split_misfires(run_times, now)
        if on_time is None:
            if rt.config.catch_up:
                self.dispatch(rt, RunTrigger.CATCH_UP, run_times[-1])
            else:
                self._record_skipped(rt, RunTrigger.SCHEDULE, run_times[-1],
                                     f"{missed} fire(s) missed, the last due at "
                                     f"{run_times[-1].isoformat()} (the daemon was stalled or "
                                     "the clock jumped); catch_up = false")
            return
        if missed and not rt.config.catch_up:
            self._record_skipped(rt, RunTrigger.SCHEDULE, run_times[0],
                                 f"{missed} earlier fire(s) missed since "
                                 f"{run_times[0].isoformat()}; catch_up = false")
        if rt.retry_timer is not None:
            # A new scheduled fire starts a new chain; the old chain's retry is superseded.
            self._cancel_retry(rt)
        if rt.config.jitter > 0:
            self._spawn(self._jittered(rt, on_time))
        else:
            self.dispatch(rt, RunTrigger.SCHEDULE, on_time)

    async def _jittered(self, rt: TaskRuntime, when: datetime) -> None:
        await self.clock.sleep(random.uniform(0, rt.config.jitter))
        if self.tasks.get(rt.name) is rt and self._may_fire(rt) and not self._stopping:
            self.dispatch(rt, RunTrigger.SCHEDULE, when)

    def dispatch(self, rt: TaskRuntime, trigger: RunTrigger, scheduled_for: datetime | None,
                 *, attempt: int = 1, params: dict[str, Any] | None = None,
                 upstream: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create a run of ``rt`` under its overlap policy; returns the run record."""
        busy = list(rt.active.values())
        overlap = rt.config.overlap
        if busy and overlap is Overlap.SKIP:
            ids = ", ".join(str(ar.id) for ar in busy)
            return self._record_skipped(rt, trigger, scheduled_for,
                                        f"run {ids} still active; overlap = skip", attempt)
        if busy and overlap is Overlap.QUEUE and rt.pending is not None:
            return self._record_skipped(
                rt, trigger, scheduled_for,
                f"run {rt.pending.id} is already queued behind the active run; overlap = queue",
                attempt)
        ar = self._new_run(rt, trigger, scheduled_for, attempt, params, upstream)
        if busy and overlap in (Overlap.QUEUE, Overlap.REPLACE):
            if overlap is Overlap.REPLACE:
                for old in busy:
                    self._cancel_active(old, f"replaced by run {ar.id}; overlap = replace")
                if rt.pending is not None:
                    self._cancel_active(rt.pending, f"replaced by run {ar.id}; overlap = replace")
            rt.pending = ar
        else:
            rt.active[ar.id] = ar
            self._admit(ar)
        self._task_updated(rt)
        return ar.record

    def run_now(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        rt = self._task(name)
        if self._stopping:
            raise Conflict("the daemon is shutting down")
        if rt.active and rt.config.overlap is Overlap.SKIP:
            ids = ", ".join(str(i) for i in rt.active)
            raise Conflict(f"task {name!r} is already running (run {ids}) and its overlap "
                           "policy is skip")
        return self.dispatch(rt, RunTrigger.MANUAL, self.clock.now(), params=params)

    def _new_run(self, rt: TaskRuntime, trigger: RunTrigger, scheduled_for: datetime | None,
                 attempt: int, params: dict[str, Any] | None,
                 upstream: dict[str, Any] | None) -> ActiveRun:
        merged = dict(rt.config.params)
        if params:
            merged.update(params)
        record = self._record(rt, trigger, scheduled_for, attempt, RunStatus.QUEUED, merged)
        # The row is committed before the process starts: a kill -9 never loses a run.
        inserted = asyncio.wrap_future(self.store.insert_run(dict(record)))
        ar = ActiveRun(record=record, task=rt.name, inserted=inserted, upstream=upstream)
        self.runs[ar.id] = ar
        self.bus.publish(RunQueued(dict(record)))
        return ar

    def _record(self, rt: TaskRuntime, trigger: RunTrigger, scheduled_for: datetime | None,
                attempt: int, status: RunStatus, params: dict[str, Any]) -> dict[str, Any]:
        """A fresh run record with every SPEC run key."""
        return {
            "id": self.store.allocate_run_id(), "task": rt.name, "trigger": trigger.value,
            "attempt": attempt, "status": status.value, "scheduled_for": _ts(scheduled_for),
            "queued_at": self.clock.now().timestamp(), "started_at": None, "finished_at": None,
            "duration_ms": None, "exit_code": None, "signal": None, "error": None,
            "result": None, "params": params, "output_bytes": 0, "output_truncated": False,
            "pid": None,
        }

    def _record_skipped(self, rt: TaskRuntime, trigger: RunTrigger,
                        scheduled_for: datetime | None, reason: str,
                        attempt: int = 1) -> dict[str, Any]:
        record = self._record(rt, trigger, scheduled_for, attempt, RunStatus.SKIPPED,
                              dict(rt.config.params))
        record.update(finished_at=record["queued_at"], error=reason)
        self.store.insert_run(dict(record))
        rt.last_run = record
        log.info("task %s: skipped (%s)", rt.name, reason)
        self.bus.publish(RunFinished(dict(record)))
        self._task_updated(rt)
        return record

    # ---- slots and execution ----

    def _admit(self, ar: ActiveRun) -> None:
        if self._running < self.config.daemon.max_concurrent_runs:
            self._running += 1
            self._spawn(self._execute(ar))
        else:
            self._slot_queue.append(ar)

    def _release_slot(self) -> None:
        self._running -= 1
        while self._slot_queue and self._running < self.config.daemon.max_concurrent_runs:
            ar = self._slot_queue.popleft()
            self._running += 1
            self._spawn(self._execute(ar))

    @property
    def queue_depth(self) -> int:
        return len(self._slot_queue)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _execute(self, ar: ActiveRun) -> None:
        rec = ar.record
        outcome: ProcessOutcome | None = None
        try:
            try:
                await ar.inserted
            except Exception:  # the run still happens; the disk problem is logged loudly
                log.exception("run %s: could not record the queued run", ar.id)
            if ar.cancel_reason is None:
                rt = self.tasks.get(ar.task)
                config = rt.config if rt is not None else None
                if config is None:
                    ar.cancel_reason = "the task was removed from the configuration"
                else:
                    ar.process = ProcessRun(self._spec(config, ar))
                    pid = await ar.process.start()
                    if pid is not None:  # None: the spawn failed; wait() says why
                        rec.update(status=RunStatus.RUNNING.value, pid=pid,
                                   started_at=self.clock.now().timestamp())
                        # Most runs end within a second: their start is written with their
                        # end, one write instead of two. A longer run's row says "running"
                        # after 1 s.
                        ar.running_write = asyncio.get_running_loop().call_later(
                            RUNNING_WRITE_DELAY, self._write_running, ar)
                        self.bus.publish(RunStarted(dict(rec)))
                    ar.started.set()
                    if ar.cancel_requested():  # cancelled while the process was starting
                        ar.process.cancel()
                    outcome = await ar.process.wait()
        except Exception as exc:
            log.exception("run %s of %s failed inside the daemon", ar.id, ar.task)
            rec["error"] = f"internal error: {exc}"
        finally:
            self._finish(ar, outcome)
            self._release_slot()

    def _write_running(self, ar: ActiveRun) -> None:
        ar.running_write = None
        rec = ar.record
        self.store.update_run(ar.id, status=rec["status"], pid=rec["pid"],
                              started_at=rec["started_at"])

    def _spec(self, task: TaskConfig, ar: ActiveRun) -> ProcessSpec:
        daemon = self.config.daemon
        rec = ar.record
        env = child_environment(os.environ)
        env.update(daemon.env)
        env.update(task.env)
        scheduled = rec["scheduled_for"]
        env.update({
            "CRONKEEPER_TASK": task.name,
            "CRONKEEPER_RUN_ID": str(ar.id),
            "CRONKEEPER_ATTEMPT": str(rec["attempt"]),
            "CRONKEEPER_TRIGGER": rec["trigger"],
            "CRONKEEPER_SCHEDULED_FOR": (
                datetime.fromtimestamp(scheduled, task.schedule.tz if task.schedule else UTC)
                .isoformat() if scheduled is not None else ""),
        })
        stdin = None
        if ar.upstream is not None:
            env.update({
                "CRONKEEPER_UPSTREAM_TASK": str(ar.upstream["task"]),
                "CRONKEEPER_UPSTREAM_RUN_ID": str(ar.upstream["id"]),
                "CRONKEEPER_UPSTREAM_STATUS": str(ar.upstream["status"]),
            })
        if task.handler is not None:
            argv: tuple[str, ...] = (sys.executable, "-m", "cronkeeper.runner", task.handler,
                                     str(daemon.handlers_path))
            params = dict(rec["params"])
            if ar.upstream is not None:
                params["upstream"] = ar.upstream
            stdin = json.dumps(params, default=str).encode()
        elif isinstance(task.command, str):
            argv = (daemon.shell, "-c", task.command)
        else:
            argv = tuple(task.command or ())
        return ProcessSpec(
            argv=argv, cwd=str(task.cwd) if task.cwd else None, env=env, user=task.user,
            output_limit=daemon.output_limit, timeout=task.timeout or None,
            kill_grace=task.kill_grace, run_id=ar.id, stdin=stdin,
            want_result=task.handler is not None,
        )

    def _finish(self, ar: ActiveRun, outcome: ProcessOutcome | None) -> None:
        rec = ar.record
        now = self.clock.now().timestamp()
        if ar.cancel_reason is not None and (outcome is None or outcome.cancelled
                                             or ar.cancel_status is RunStatus.INTERRUPTED):
            status = ar.cancel_status
            rec["error"] = ar.cancel_reason
        elif outcome is None:
            status = RunStatus.FAILED
        elif outcome.timed_out:
            status = RunStatus.TIMED_OUT
        elif outcome.ok:
            status = RunStatus.SUCCEEDED
        else:
            status = RunStatus.FAILED
        if outcome is not None:
            rec.update(exit_code=outcome.exit_code, signal=outcome.signal,
                       result=outcome.result, output_bytes=outcome.output_bytes,
                       output_truncated=outcome.output_truncated)
            if status is not RunStatus.SUCCEEDED and rec.get("error") is None:
                rec["error"] = outcome.error
        started = rec.get("started_at")
        rec.update(status=status.value, finished_at=now,
                   duration_ms=int((now - started) * 1000) if started else None)
        if ar.running_write is not None:
            ar.running_write.cancel()
            ar.running_write = None
        fields = {k: rec[k] for k in ("status", "started_at", "pid", "finished_at",
                                      "duration_ms", "exit_code", "signal", "error", "result",
                                      "output_bytes", "output_truncated")}
        self.store.update_run(ar.id, **fields)
        if outcome is not None and outcome.output:
            self.store.save_output(ar.id, outcome.output)
        self.runs.pop(ar.id, None)
        ar.started.set()
        ar.done.set()
        self.bus.publish(RunFinished(dict(rec)))
        rt = self.tasks.get(ar.task)
        if rt is None:
            return
        rt.active.pop(ar.id, None)
        if rt.pending is ar:
            rt.pending = None
        rt.last_run = rec
        if not self._stopping:
            self._after_run(rt, ar, status)
        if not rt.active and rt.pending is not None and not self._stopping:
            ar_next, rt.pending = rt.pending, None
            rt.active[ar_next.id] = ar_next
            self._admit(ar_next)
        self._task_updated(rt)

    def _after_run(self, rt: TaskRuntime, ar: ActiveRun, status: RunStatus) -> None:
        rec = ar.record
        trigger = RunTrigger(rec["trigger"])
        attempt = int(rec["attempt"])
        task = rt.config
        if status in FAILED_STATUSES and attempt <= task.retries:
            rt.retry_count = attempt
            self.store.set_task_state(rt.name, retry_count=attempt)
            self._schedule_retry(rt, attempt, retry_delay(task, attempt), rec["params"],
                                 ar.upstream)
            return
        chain_over = status in FAILED_STATUSES or status is RunStatus.SUCCEEDED
        if status is RunStatus.SUCCEEDED and rt.retry_count:
            rt.retry_count = 0
            self.store.set_task_state(rt.name, retry_count=0)
        if (chain_over and trigger in SCHEDULED_TRIGGERS and task.schedule is not None
                and task.schedule.is_one_shot):
            rt.completed = True
            self.store.set_task_state(rt.name, completed=True)
            self._remove_job(rt.name)
        targets: Iterable[str] = ()
        follow_trigger = RunTrigger.ON_SUCCESS
        if status is RunStatus.SUCCEEDED:
            targets = task.on_success
        elif status in FAILED_STATUSES:
            targets, follow_trigger = task.on_failure, RunTrigger.ON_FAILURE
        for target in targets:
            trt = self.tasks.get(target)
            if trt is None:
                continue
            if trt.paused or self.paused_all:
                self._record_skipped(trt, follow_trigger, None,
                                     f"triggered by run {ar.id} of {rt.name}, but the task is "
                                     "paused")
                continue
            self.dispatch(trt, follow_trigger, self.clock.now(), upstream=dict(rec))

    # ---- retries ----

    def _schedule_retry(self, rt: TaskRuntime, attempt: int, delay: float,
                        params: dict[str, Any], upstream: dict[str, Any] | None) -> None:
        rt.retry_due = self.clock.now().timestamp() + delay
        log.info("task %s: attempt %d failed, retrying in %.1fs", rt.name, attempt, delay)

        async def fire_retry() -> None:
            await self.clock.sleep(delay)
            rt.retry_timer = None
            rt.retry_due = None
            if self.tasks.get(rt.name) is not rt or self._stopping:
                return
            if rt.paused or self.paused_all:
                rt.held_retry = (attempt + 1, params)  # runs on resume
                self._task_updated(rt)
                return
            when = self.clock.now()
            self.dispatch(rt, RunTrigger.RETRY, when, attempt=attempt + 1, params=params,
                          upstream=upstream)

        rt.retry_timer = asyncio.ensure_future(fire_retry())

    def _cancel_retry(self, rt: TaskRuntime) -> None:
        if rt.retry_timer is not None:
            rt.retry_timer.cancel()
        rt.retry_timer = None
        rt.retry_due = None
        rt.held_retry = None

    def reset_retries(self, name: str) -> TaskRuntime:
        rt = self._task(name)
        self._cancel_retry(rt)
        rt.retry_count = 0
        self.store.set_task_state(rt.name, retry_count=0)
        self._task_updated(rt)
        return rt

    # ---- user actions ----

    def _task(self, name: str) -> TaskRuntime:
        rt = self.tasks.get(name)
        if rt is None:
            raise TaskNotFound(name)
        return rt

    def pause(self, name: str) -> TaskRuntime:
        rt = self._task(name)
        rt.paused = True
        self.store.set_task_state(rt.name, paused=True)
        self._task_updated(rt)
        return rt

    def resume(self, name: str) -> TaskRuntime:
        rt = self._task(name)
        rt.paused = False
        self.store.set_task_state(rt.name, paused=False)
        self._release_held_retry(rt)
        self._task_updated(rt)
        return rt

    def _release_held_retry(self, rt: TaskRuntime) -> None:
        if rt.held_retry is not None and not rt.paused and not self.paused_all:
            attempt, params = rt.held_retry
            rt.held_retry = None
            self.dispatch(rt, RunTrigger.RETRY, self.clock.now(), attempt=attempt, params=params)

    def set_paused_all(self, paused: bool) -> None:
        self.paused_all = paused
        self.store.set_meta("paused_all", "1" if paused else "0")
        for rt in self.tasks.values():
            if not paused:
                self._release_held_retry(rt)
            self._task_updated(rt)

    def cancel(self, run_id: int) -> dict[str, Any]:
        ar = self.runs.get(run_id)
        if ar is None:
            raise RunNotFound(run_id) if self.store.get_run(run_id) is None else Conflict(
                f"run {run_id} has already finished")
        self._cancel_active(ar, "cancelled by request")
        return ar.record

    def _cancel_active(self, ar: ActiveRun, reason: str,
                       status: RunStatus = RunStatus.CANCELLED) -> None:
        if ar.cancel_reason is not None:
            return
        ar.cancel_reason = reason
        ar.cancel_status = status
        if ar.process is not None:
            ar.process.cancel()
            return
        if ar in self._slot_queue:
            self._slot_queue.remove(ar)
            self._finish(ar, None)
        else:
            rt = self.tasks.get(ar.task)
            if rt is not None and rt.pending is ar:
                self._finish(ar, None)
        # Otherwise it is between admission and process start: _execute sees cancel_reason.

    # ---- events ----

    def _task_updated(self, rt: TaskRuntime) -> None:
        if self.bus.subscriber_count:
            self.bus.publish(TaskUpdated({"name": rt.name}))


def _never_called() -> None:  # APScheduler wants a callable; _FireExecutor never calls it
    raise AssertionError("cronkeeper fires through its own executor")

"""The persistent record of every run and of task state: peewee on SQLite, one writer thread.

Reads are synchronous on the caller's thread (peewee keeps one connection per thread; WAL lets
them run while the writer commits). Writes go to one writer thread, which drains everything
queued and commits it in one transaction: a burst of 1,000 inserts is a handful of commits.
Every write returns a ``concurrent.futures.Future`` resolved after its commit; asyncio code
awaits it with :func:`wait`.

Metrics: a ``GROUP BY`` over a million runs is too slow for every ``/metrics`` scrape, so the
writer keeps ``run_counter`` (task, final status -> runs, duration sum and count, last finish),
bumped in the transaction that moves a run to a final status. Those counts are cumulative and
survive pruning, as Prometheus counters must; queued/running counts are live.

PostgreSQL (SPEC section 10) comes later behind the same surface; tests/test_store.py is the
contract suite both backends will run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import peewee as pw
from peewee import EXCLUDED, fn

from .errors import CronkeeperError, RunNotFound, UsageError
from .vocab import RunStatus, RunTrigger

__all__ = ["RUN_KEYS", "TASK_STATE_KEYS", "Store", "StoreError", "wait"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Keys of every run dict: SPEC section 5's run object, plus ``host`` (SPEC section 10).
RUN_KEYS = ("id", "task", "trigger", "attempt", "status", "scheduled_for", "queued_at",
            "started_at", "finished_at", "duration_ms", "exit_code", "signal", "error", "result",
            "params", "output_bytes", "output_truncated", "pid", "host")
#: Settable fields of a task's state (``task_states()`` dicts also carry ``name``).
TASK_STATE_KEYS = ("paused", "retry_count", "completed", "last_fire_at", "first_seen_at",
                   "updated_at")

_ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)  # never pruned, never counted
_BATCH_MAX = 2000  # ops per transaction: bounds how long one commit holds the write lock
_PRUNE_CHUNK = 10_000  # rows per prune step (~0.2 s on 1M rows); other writes go in between
_PRUNE_COLLECT = 200_000  # candidate ids gathered per prune round: a few MB at most
_PRUNE_TASKS_PER_STEP = 200
_BUSY_TIMEOUT_MS = 10_000

# Decisions after huey's SqliteStorage; peewee applies them to every new connection.
_PRAGMAS = (
    # WAL: readers (API, CLI history) never block the writer, nor it them; a commit appends
    # to the log instead of rewriting pages through a rollback journal.
    ("journal_mode", "wal"),
    # NORMAL under WAL: commits do not fsync, the WAL is synced at checkpoints. A crashed or
    # killed daemon loses nothing it committed; a power cut or kernel panic may lose the last
    # commits but never corrupts the file. FULL would cost an fsync per batch.
    ("synchronous", "normal"),
    # Wait for another connection's lock (a second process, the bench loader) instead of
    # failing at once with "database is locked".
    ("busy_timeout", _BUSY_TIMEOUT_MS),
    # Negative means KiB: 16 MiB per connection keeps the hot index pages (each task's newest
    # entries) cached with a million runs on disk.
    ("cache_size", -16 * 1024),
    # Truncate the WAL after checkpoints, or a large prune leaves a log as big as it deleted.
    ("journal_size_limit", 64 * 1024 * 1024),
    # No foreign keys: prune deletes run_output rows itself; per-insert checks buy nothing.
    ("foreign_keys", 0),
)


class StoreError(CronkeeperError):
    """The database cannot be used: wrong kind of path, unreadable file, unknown schema."""


# --- schema -------------------------------------------------------------------------------
# The models describe the tables to peewee's query builder; the tables are created by the
# migrations, frozen SQL, so that an old database upgrades the same way forever.


class _Base(pw.Model):
    class Meta:
        database = None  # bound per Store by _Models: there is no global database


class _Run(_Base):
    id = pw.IntegerField(primary_key=True)  # allocated by the Store, not by SQLite
    task = pw.TextField()
    trigger = pw.TextField()
    attempt = pw.IntegerField(default=1)
    status = pw.TextField()
    scheduled_for = pw.FloatField(null=True)  # timestamps: epoch seconds
    queued_at = pw.FloatField(null=True)
    started_at = pw.FloatField(null=True)
    finished_at = pw.FloatField(null=True)
    duration_ms = pw.IntegerField(null=True)
    exit_code = pw.IntegerField(null=True)
    signal = pw.IntegerField(null=True)
    error = pw.TextField(null=True)
    result = pw.TextField(null=True)  # JSON
    params = pw.TextField(null=True)  # JSON object; NULL reads as {}
    output_bytes = pw.IntegerField(default=0)
    output_truncated = pw.BooleanField(default=False)
    pid = pw.IntegerField(null=True)
    host = pw.TextField(null=True)


class _RunOutput(_Base):
    # Apart from the runs, so history queries never drag output through the page cache.
    run_id = pw.IntegerField(primary_key=True)
    data = pw.BlobField()


class _TaskStateRow(_Base):
    name = pw.TextField(primary_key=True)
    paused = pw.BooleanField(default=False)
    retry_count = pw.IntegerField(default=0)
    completed = pw.BooleanField(default=False)  # a one-shot that is done for good
    last_fire_at = pw.FloatField(null=True)  # the last scheduled fire time handled
    first_seen_at = pw.FloatField(null=True)
    updated_at = pw.FloatField(null=True)


class _MetaRow(_Base):
    key = pw.TextField(primary_key=True)
    value = pw.TextField(null=True)


class _RunCounter(_Base):
    task = pw.TextField()
    status = pw.TextField()  # final statuses only
    runs = pw.IntegerField(default=0)
    duration_ms_sum = pw.IntegerField(default=0)
    duration_count = pw.IntegerField(default=0)
    last_finished_at = pw.FloatField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("task", "status")


class _Models:
    """The models bound to one Store's database."""

    def __init__(self, db: pw.Database) -> None:
        def bind(model: type[_Base], table: str) -> Any:
            # A subclass per Store: Model.bind() would rebind the one class for every Store.
            meta = type("Meta", (), {"database": db, "table_name": table})
            return type(model.__name__, (model,), {"Meta": meta, "__module__": __name__})

        self.all = (bind(_Run, "run"), bind(_RunOutput, "run_output"),
                    bind(_TaskStateRow, "task_state"), bind(_MetaRow, "meta"),
                    bind(_RunCounter, "run_counter"))
        self.Run, self.RunOutput, self.TaskState, self.Meta, self.RunCounter = self.all


_V1 = (
    "CREATE TABLE meta (key TEXT NOT NULL PRIMARY KEY, value TEXT)",
    # INTEGER PRIMARY KEY makes id the rowid: no separate key index, and every index entry
    # already ends with it.
    """CREATE TABLE run (
        id INTEGER NOT NULL PRIMARY KEY, task TEXT NOT NULL, "trigger" TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1, status TEXT NOT NULL, scheduled_for REAL,
        queued_at REAL, started_at REAL, finished_at REAL, duration_ms INTEGER,
        exit_code INTEGER, signal INTEGER, error TEXT, result TEXT, params TEXT,
        output_bytes INTEGER NOT NULL DEFAULT 0, output_truncated INTEGER NOT NULL DEFAULT 0,
        pid INTEGER, host TEXT)""",
    # An index on (task) is ordered by (task, rowid), so "task = ? ORDER BY id DESC" walks it
    # backwards with no sort; declaring (task, id DESC) would store id twice (~5 bytes/run).
    "CREATE INDEX run_task ON run (task)",
    "CREATE INDEX run_status ON run (status)",
    "CREATE INDEX run_task_status ON run (task, status)",
    # Retention: by finish time, plus the few final rows that never got one (partial, tiny).
    "CREATE INDEX run_finished_at ON run (finished_at)",
    "CREATE INDEX run_queued_at_unfinished ON run (queued_at) WHERE finished_at IS NULL",
    "CREATE TABLE run_output (run_id INTEGER NOT NULL PRIMARY KEY, data BLOB NOT NULL)",
    """CREATE TABLE task_state (
        name TEXT NOT NULL PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0,
        retry_count INTEGER NOT NULL DEFAULT 0, completed INTEGER NOT NULL DEFAULT 0,
        last_fire_at REAL, first_seen_at REAL, updated_at REAL)""",
    """CREATE TABLE run_counter (
        task TEXT NOT NULL, status TEXT NOT NULL, runs INTEGER NOT NULL DEFAULT 0,
        duration_ms_sum INTEGER NOT NULL DEFAULT 0, duration_count INTEGER NOT NULL DEFAULT 0,
        last_finished_at REAL, PRIMARY KEY (task, status)) WITHOUT ROWID""",
)


def _migrate_v1(db: pw.Database) -> None:
    for statement in _V1:
        db.execute_sql(statement)


#: _MIGRATIONS[i] takes a database from schema version i to i + 1. Append, never edit.
_MIGRATIONS: list[Callable[[pw.Database], None]] = [_migrate_v1]


# --- encoding -------------------------------------------------------------------------------

# Keyed by value and by member, whatever the Python version's Enum hashing does.
_SPELLINGS: dict[type[Enum], dict[Any, str]] = {
    enum: {**{m.value: m.value for m in enum}, **{m: m.value for m in enum}}
    for enum in (RunStatus, RunTrigger)}
_RUN_NUMBERS: dict[str, type] = {
    "id": int, "attempt": int, "scheduled_for": float, "queued_at": float, "started_at": float,
    "finished_at": float, "duration_ms": int, "exit_code": int, "signal": int,
    "output_bytes": int, "pid": int}
_RUN_DEFAULTS = {"attempt": 1, "status": RunStatus.QUEUED.value, "output_bytes": 0,
                 "output_truncated": False}


def _enum_value(enum: type[Enum], value: Any, key: str) -> str:
    """The SPEC spelling of an enum member or value; ValueError listing the choices."""
    spelling = _SPELLINGS[enum].get(value)
    if spelling is None:
        allowed = ", ".join(str(m.value) for m in enum)
        raise ValueError(f"unknown run {key} {value!r}; expected one of: {allowed}")
    return spelling


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _encode_run(fields: Mapping[str, Any], *, full: bool) -> dict[str, Any]:
    """Run fields as column values, validated; a ``full`` row gets every column."""
    unknown = sorted(set(fields) - set(RUN_KEYS))
    if unknown:
        raise ValueError(f"unknown run field(s) {', '.join(unknown)}; "
                         f"expected: {', '.join(RUN_KEYS)}")
    values = dict(fields)
    if full:
        for key in ("id", "task", "trigger"):
            if values.get(key) is None:
                raise ValueError(f"a run needs {key!r}")
        values = {key: values.get(key) for key in RUN_KEYS}
        values.update((k, v) for k, v in _RUN_DEFAULTS.items() if values[k] is None)
    if "status" in values:
        values["status"] = _enum_value(RunStatus, values["status"], "status")
    if "trigger" in values:
        values["trigger"] = _enum_value(RunTrigger, values["trigger"], "trigger")
    if "task" in values:
        values["task"] = str(values["task"])
    if "result" in values:
        values["result"] = None if values["result"] is None else _json(values["result"])
    if "params" in values:  # no params is NULL, read back as {}
        values["params"] = _json(dict(values["params"])) if values["params"] else None
    if "output_truncated" in values:
        values["output_truncated"] = bool(values["output_truncated"])
    for key, kind in _RUN_NUMBERS.items():
        value = values.get(key)
        if value is not None and type(value) is not kind:
            values[key] = kind(value)
    return values


def _run_dict(row: Iterable[Any]) -> dict[str, Any]:
    run = dict(zip(RUN_KEYS, row, strict=True))
    run["result"] = None if run["result"] is None else json.loads(run["result"])
    run["params"] = {} if run["params"] is None else json.loads(run["params"])
    run["output_truncated"] = bool(run["output_truncated"])
    return run


# --- the writer's work items -----------------------------------------------------------------

_WRITE, _JOB, _BARRIER, _STOP = "write", "job", "barrier", "stop"


@dataclass(eq=False)  # identity semantics: jobs in flight are kept in a set
class _Op:
    kind: str
    name: str
    fn: Callable[[], Any] | None = None
    job: Generator[None, None, Any] | None = None  # one step per batch; returns the result
    future: Future[Any] = field(default_factory=Future)


async def wait(fut: Future[T]) -> T:
    """Await a store future from asyncio code without blocking the event loop.

    Cancelling the awaiting task does not cancel the write: it is already queued.
    """
    return await asyncio.wrap_future(fut)


class Store:
    """Runs, their output, task state and metadata in one SQLite file.

    ``Store(path)`` creates the file and its parent folders if needed, applies missing schema
    migrations (StoreError for a newer schema) and starts the writer thread. ``close()``
    commits whatever is queued; the Store is also a context manager.
    """

    def __init__(self, path: str | os.PathLike[str], *, host: str | None = None) -> None:
        text = os.fspath(path)
        if text.startswith(("postgres://", "postgresql://")):
            raise StoreError(f"{text}: PostgreSQL storage (SPEC section 10) is not supported yet")
        if not text or text == ":memory:" or text.startswith("file:"):
            raise StoreError(f"database {text!r}: need a file path (one connection per thread "
                             "cannot share an in-memory database)")
        self.path = Path(text).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.host = host or socket.gethostname()
        self._db = pw.SqliteDatabase(str(self.path), pragmas=_PRAGMAS,
                                     timeout=_BUSY_TIMEOUT_MS / 1000)
        self._m = _Models(self._db)
        self._run_fields = [getattr(self._m.Run, key) for key in RUN_KEYS]
        self._sql_cache: dict[tuple[Any, ...], str] = {}
        try:
            self._migrate()
            Run = self._m.Run  # max_run_id remembers pruned ids: an id is never reused
            highest = max(Run.select(fn.MAX(Run.id)).scalar() or 0,
                          int(self.get_meta("max_run_id") or 0))
        except pw.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        except BaseException:
            self._db.close()
            raise
        self._next_id = highest + 1
        self._id_lock = threading.Lock()
        self._submit_lock = threading.Lock()  # orders "closed?" checks against the stop op
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._closed = False
        self._commits = 0
        self._in_flight: set[_Op] = set()  # multi-step jobs started and not finished
        # A daemon thread, so a forgotten close() cannot hang interpreter exit.
        self._writer = threading.Thread(target=self._writer_main, daemon=True,
                                        name=f"cronkeeper-store-writer:{self.path.name}")
        self._writer.start()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def commits(self) -> int:
        """Transactions the writer has committed so far (shows batching at work)."""
        return self._commits

    @property
    def schema_version(self) -> int:
        """The database's schema version: the number of migrations applied."""
        if "meta" not in self._db.get_tables():
            return 0
        return int(self.get_meta("schema_version") or 0)

    def _migrate(self) -> None:
        target = len(_MIGRATIONS)
        while (version := self.schema_version) != target:
            if version > target:
                raise StoreError(
                    f"database {self.path} has schema version {version}, but this cronkeeper "
                    f"knows versions up to {target}: it was written by a newer cronkeeper. "
                    "Upgrade cronkeeper, or point [daemon] database at another file.")
            # Take the write lock, then re-read the version: two processes opening an old
            # database at once must not both migrate it.
            with self._db.atomic("IMMEDIATE"):
                if self.schema_version == version:
                    log.info("migrating %s to schema version %d", self.path, version + 1)
                    _MIGRATIONS[version](self._db)
                    self._upsert_meta("schema_version", str(version + 1))

    def allocate_run_id(self) -> int:
        """Reserve the next run id, so the daemon can answer before the row is committed."""
        with self._id_lock:
            self._next_id += 1
            return self._next_id - 1

    def _take_id(self, row: dict[str, Any]) -> None:
        if row.get("id") is None:
            row["id"] = self.allocate_run_id()
        else:
            with self._id_lock:  # an explicit id moves the allocator past it
                self._next_id = max(self._next_id, int(row["id"]) + 1)
        row.setdefault("host", self.host)

    # --- writes -------------------------------------------------------------------------------

    def _submit(self, kind: str, name: str, fn_: Callable[[], Any] | None = None,
                job: Generator[None, None, Any] | None = None) -> Future[Any]:
        op = _Op(kind, name, fn_, job)
        # Running at once, so it cannot be cancelled: asyncio.wrap_future forwards the
        # cancellation of an awaiting task, and the row must land regardless.
        op.future.set_running_or_notify_cancel()
        with self._submit_lock:
            if self._closed:
                op.future.set_exception(StoreError(f"store {self.path} is closed"))
            else:
                self._queue.put(op)
        return op.future

    def insert_run(self, fields: Mapping[str, Any]) -> Future[int]:
        """Insert a run (RUN_KEYS; ``task`` and ``trigger`` required); resolves to its id.

        Without ``id`` one is allocated. ``status`` defaults to ``queued``, ``host`` to this
        host; ``result`` and ``params`` are stored as JSON.
        """
        row = dict(fields)
        self._take_id(row)
        return self._submit(_WRITE, f"insert_run {row['id']}", lambda: self._insert_run(row))

    def _insert_run(self, row: Mapping[str, Any]) -> int:
        values = _encode_run(row, full=True)
        self._exec(("insert_run",), lambda: self._m.Run.insert(values),
                   [values[key] for key in RUN_KEYS])
        if values["status"] not in _ACTIVE:
            self._count(values["task"], values["status"], 1, values["duration_ms"],
                        values["finished_at"])
        return int(values["id"])

    def update_run(self, run_id: int, **fields: Any) -> Future[None]:
        """Change some fields of a run; the future raises RunNotFound for an unknown id."""
        return self._submit(_WRITE, f"update_run {run_id}",
                            lambda: self._update_run(run_id, fields))

    def _update_run(self, run_id: int, fields: Mapping[str, Any]) -> None:
        values = _encode_run(fields, full=False)
        if "id" in values:
            raise ValueError("a run's id cannot change")
        Run = self._m.Run
        old = self._exec(("update_run_old",), lambda: Run.select(
            Run.task, Run.status, Run.duration_ms, Run.finished_at).where(Run.id == run_id),
            [run_id]).fetchone()
        if old is None:
            raise RunNotFound(run_id)
        if values:
            ordered = {key: values[key] for key in RUN_KEYS if key in values}  # peewee's order
            self._exec(("update_run", *ordered), lambda: Run.update(ordered).where(
                Run.id == run_id), [*ordered.values(), run_id])
        new = dict(zip(("task", "status", "duration_ms", "finished_at"), old, strict=True))
        new.update((k, v) for k, v in values.items() if k in new)
        # Count a run once, when it leaves queued/running; later edits do not recount.
        if old[1] in _ACTIVE and new["status"] not in _ACTIVE:
            self._count(new["task"], new["status"], 1, new["duration_ms"], new["finished_at"])

    def _count(self, task: str, status: str, runs: int, duration_ms: int | None,
               finished_at: float | None, duration_count: int | None = None) -> None:
        C = self._m.RunCounter
        if duration_count is None:
            duration_count = 0 if duration_ms is None else 1
        row = {"task": task, "status": status, "runs": runs, "duration_ms_sum": duration_ms or 0,
               "duration_count": duration_count, "last_finished_at": finished_at}
        self._exec(("count",), lambda: C.insert(row).on_conflict(
            conflict_target=[C.task, C.status],
            update={C.runs: C.runs + EXCLUDED.runs,
                    C.duration_ms_sum: C.duration_ms_sum + EXCLUDED.duration_ms_sum,
                    C.duration_count: C.duration_count + EXCLUDED.duration_count,
                    # SQLite's two-argument max() is NULL if either is.
                    C.last_finished_at: fn.COALESCE(
                        fn.MAX(C.last_finished_at, EXCLUDED.last_finished_at),
                        C.last_finished_at, EXCLUDED.last_finished_at)}),
            list(row.values()))

    def save_output(self, run_id: int, data: bytes) -> Future[None]:
        """Store (or replace) a run's captured output."""
        Out, blob = self._m.RunOutput, bytes(data)

        def save() -> None:
            Out.insert(run_id=run_id, data=blob).on_conflict_replace().execute()

        return self._submit(_WRITE, f"save_output {run_id}", save)

    def set_task_state(self, name: str, **fields: Any) -> Future[None]:
        """Create or update a task's state; only the given TASK_STATE_KEYS change.

        ``updated_at`` defaults to now, and on creation ``first_seen_at`` to ``updated_at``.
        """
        return self._submit(_WRITE, f"set_task_state {name}",
                            lambda: self._set_task_state(name, fields))

    def _set_task_state(self, name: str, fields: Mapping[str, Any]) -> None:
        unknown = sorted(set(fields) - set(TASK_STATE_KEYS))
        if unknown:
            raise ValueError(f"unknown task state field(s) {', '.join(unknown)}; "
                             f"expected: {', '.join(TASK_STATE_KEYS)}")
        TS, values = self._m.TaskState, dict(fields)
        values.setdefault("updated_at", time.time())
        row = {"first_seen_at": values["updated_at"]} | values | {"name": name}
        TS.insert(row).on_conflict(conflict_target=[TS.name],
                                   preserve=[getattr(TS, key) for key in values]).execute()

    def set_meta(self, key: str, value: str | None) -> Future[None]:
        """Set a metadata value (``paused_all``, ...)."""
        return self._submit(_WRITE, f"set_meta {key}", lambda: self._upsert_meta(key, value))

    def _upsert_meta(self, key: str, value: str | None) -> None:
        M = self._m.Meta
        M.insert(key=key, value=value).on_conflict(conflict_target=[M.key],
                                                   preserve=[M.value]).execute()

    def barrier(self) -> Future[None]:
        """A future resolved once everything submitted before it has been committed."""
        return self._submit(_BARRIER, "barrier")

    def prune(self, keep_runs: int, keep_days: float, now: float) -> Future[int]:
        """Delete old history; resolves to the number of runs deleted.

        A run goes when it is beyond the newest ``keep_runs`` of its task, or finished more
        than ``keep_days`` before ``now`` (SPEC: keep N per task, and none older than D);
        ``<= 0`` disables a limit. Queued and running runs stay; outputs go with their runs.
        Runs in steps of _PRUNE_CHUNK rows, each its own commit, other writes in between.
        """
        return self._submit(_JOB, "prune", job=self._prune_steps(keep_runs, keep_days, now))

    def _prune_steps(self, keep_runs: int, keep_days: float,
                     now: float) -> Generator[None, None, int]:
        deleted = 0
        while True:
            doomed: set[int] = set()
            yield from self._prune_collect(doomed, keep_runs, keep_days, now)
            # In id order: the oldest runs of all tasks share pages, so deleting task by task
            # rewrote each page once per task (measured: 18 s instead of 3 s for 100,000 of
            # 1,000,000 runs).
            for chunk in pw.chunked(sorted(doomed), _PRUNE_CHUNK):
                deleted += self._delete_runs(chunk)
                yield
            if len(doomed) < _PRUNE_COLLECT:
                return deleted

    def _prune_collect(self, doomed: set[int], keep_runs: int, keep_days: float,
                       now: float) -> Generator[None, None, None]:
        Run = self._m.Run
        deletable = Run.status.not_in(_ACTIVE)
        if keep_days > 0:
            cutoff = now - keep_days * 86400.0
            for old in (Run.finished_at < cutoff,
                        Run.finished_at.is_null() & (Run.queued_at < cutoff)):
                query = Run.select(Run.id).where(old & deletable)
                doomed.update(i for (i,) in query.limit(_PRUNE_COLLECT - len(doomed)).tuples())
            yield
        if keep_runs > 0:
            C = self._m.RunCounter  # every task with a final run has a counter row
            tasks = [task for (task,) in C.select(C.task).distinct().tuples()]
            for n, task in enumerate(tasks, 1):
                room = _PRUNE_COLLECT - len(doomed)
                if room <= 0:
                    return
                # The newest run beyond keep_runs: it and everything older goes. Compiled
                # once (_exec): this runs for every task.
                edge = self._exec(("prune_edge",), functools.partial(
                    Run.select(Run.id).where(Run.task == task).order_by(Run.id.desc())
                    .limit(1).offset, keep_runs), [task, 1, keep_runs]).fetchone()
                if edge is not None:
                    older = Run.select(Run.id).where(
                        (Run.task == task) & (Run.id <= edge[0]) & deletable)
                    doomed.update(i for (i,) in self._exec(
                        ("prune_older",), functools.partial(older.limit, room),
                        [task, edge[0], *_ACTIVE, room]).fetchall())
                if n % _PRUNE_TASKS_PER_STEP == 0:
                    yield

    def _delete_runs(self, ids: list[int]) -> int:
        # One JSON array parameter: peewee takes longer to build IN (?, ... x 10,000) than
        # SQLite takes to delete, and old SQLite allows only 999 variables.
        doomed = json.dumps(ids)
        count: int = self._db.execute_sql(
            "DELETE FROM run WHERE id IN (SELECT value FROM json_each(?))", (doomed,)).rowcount
        self._db.execute_sql(
            "DELETE FROM run_output WHERE run_id IN (SELECT value FROM json_each(?))", (doomed,))
        M = self._m.Meta
        M.insert(key="max_run_id", value=str(max(ids))).on_conflict(
            conflict_target=[M.key], update={M.value: fn.MAX(
                pw.Cast(M.value, "INTEGER"), pw.Cast(EXCLUDED.value, "INTEGER"))}).execute()
        return count

    def mark_interrupted(self, now: float) -> list[int]:
        """At start-up: every queued or running run becomes ``interrupted``; returns the ids.

        Synchronous: returns once the change is committed.
        """
        ids: list[int] = self._submit(_WRITE, "mark_interrupted",
                                      lambda: self._mark_interrupted(now)).result()
        return ids

    def _mark_interrupted(self, now: float) -> list[int]:
        Run, interrupted = self._m.Run, RunStatus.INTERRUPTED.value
        rows = list(Run.select(Run.id, Run.task).where(Run.status.in_(_ACTIVE)).tuples())
        for status in _ACTIVE:
            Run.update(status=interrupted, finished_at=now,
                       error=f"daemon stopped while the run was {status}").where(
                Run.status == status).execute()
        for task in {task for _, task in rows}:
            self._count(task, interrupted, sum(t == task for _, t in rows), None, now)
        return sorted(run_id for run_id, _ in rows)

    def bulk_insert_runs(self, rows: Iterable[Mapping[str, Any]], *,
                         chunk_size: int = 50_000) -> int:
        """Insert many runs synchronously on this thread (benchmarks, imports); returns count.

        ``executemany`` in transactions of ``chunk_size`` rows, counters kept up to date. It
        bypasses the writer's queue, so it may wait for the writer's lock (busy timeout).
        """
        columns = ", ".join(f'"{key}"' for key in RUN_KEYS)
        sql = f"INSERT INTO run ({columns}) VALUES ({', '.join('?' * len(RUN_KEYS))})"
        total = 0
        for group in pw.chunked(rows, chunk_size):
            batch: list[tuple[Any, ...]] = []
            counts: dict[tuple[str, str], tuple[int, int, int, float | None]] = {}
            for fields in group:
                row = dict(fields)
                self._take_id(row)
                values = _encode_run(row, full=True)
                batch.append(tuple(values.values()))
                if values["status"] not in _ACTIVE:
                    dur, end = values["duration_ms"], values["finished_at"]
                    n, total_ms, timed, last = counts.get(
                        (values["task"], values["status"]), (0, 0, 0, None))
                    counts[values["task"], values["status"]] = (
                        n + 1, total_ms + (dur or 0), timed + (dur is not None),
                        end if last is None or (end is not None and end > last) else last)
            with self._db.atomic("IMMEDIATE"):
                self._db.cursor().executemany(sql, batch)
                for (task, status), (n, total_ms, timed, last) in counts.items():
                    self._count(task, status, n, total_ms, last, duration_count=timed)
            total += len(batch)
        return total

    def close(self) -> None:
        """Commit everything queued, stop the writer, close this thread's connection.

        Idempotent. Later writes return futures failing with StoreError; reads still work.
        """
        with self._submit_lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_Op(_STOP, "stop"))
        if threading.current_thread() is not self._writer:
            self._writer.join()
        if not self._db.in_transaction():
            self._db.close()

    # --- the writer thread ----------------------------------------------------------------

    def _writer_main(self) -> None:
        backlog: deque[_Op] = deque()
        stopping = False
        try:
            while backlog or not stopping:
                if not backlog:
                    backlog.append(self._queue.get())  # idle: block until there is work
                with contextlib.suppress(queue.Empty):
                    while True:  # drain: everything queued goes into this transaction
                        backlog.append(self._queue.get_nowait())
                batch = [backlog.popleft() for _ in range(min(len(backlog), _BATCH_MAX))]
                stopping = self._run_batch(batch, backlog) or stopping
        except BaseException:  # a bug: fail the callers loudly rather than leave them hanging
            log.exception("store writer for %s crashed; failing pending writes", self.path)
            with self._submit_lock:
                self._closed = True
            with contextlib.suppress(queue.Empty):
                while True:
                    backlog.append(self._queue.get_nowait())
            for op in [*backlog, *self._in_flight]:
                if not op.future.done():
                    op.future.set_exception(StoreError(f"store writer for {self.path} crashed"))
        finally:
            if not self._db.in_transaction():
                self._db.close()

    def _run_batch(self, batch: list[_Op], backlog: deque[_Op]) -> bool:
        """Apply ``batch`` in one transaction, then resolve futures; True if told to stop."""
        stop = False
        results: list[tuple[_Op, str, Any]] = []
        again: list[_Op] = []  # unfinished jobs, and barriers waiting for them
        try:
            with self._db.atomic("IMMEDIATE"):
                for op in batch:
                    if op.kind == _STOP:
                        stop = True
                        continue
                    if op.kind == _BARRIER:
                        outcome, value = ("again" if self._in_flight else "done"), None
                    else:
                        outcome, value = self._apply(op)
                    if outcome == "again":
                        again.append(op)
                        if op.kind == _JOB:
                            self._in_flight.add(op)
                    else:
                        self._in_flight.discard(op)
                        results.append((op, outcome, value))
        except Exception as exc:  # BEGIN or COMMIT failed: nothing in this batch was written
            log.error("store %s: a batch of %d writes failed: %s", self.path, len(batch), exc)
            for op in batch:
                if op.kind != _STOP:
                    self._in_flight.discard(op)
                    if op.job is not None:
                        op.job.close()
                    op.future.set_exception(exc)
            return stop
        self._commits += 1
        for op, outcome, value in results:
            if outcome == "done":
                op.future.set_result(value)
            else:
                log.warning("store %s: %s failed: %s", self.path, op.name, value)
                op.future.set_exception(value)
        backlog.extend(again)  # behind whatever was submitted meanwhile
        return stop

    def _apply(self, op: _Op) -> tuple[str, Any]:
        """Run one op, or one step of a job, in a savepoint: a failure undoes only itself."""
        execute = self._db.execute_sql
        execute('SAVEPOINT "op"')
        try:
            if op.job is None:
                assert op.fn is not None
                result: tuple[str, Any] = ("done", op.fn())
            else:
                try:
                    next(op.job)
                    result = ("again", None)
                except StopIteration as finished:
                    result = ("done", finished.value)
        except Exception as exc:
            execute('ROLLBACK TO "op"')
            execute('RELEASE "op"')
            return ("failed", exc)
        execute('RELEASE "op"')
        return result

    # --- reads ----------------------------------------------------------------------------

    def _exec(self, key: tuple[Any, ...], build: Callable[[], Any], params: list[Any]) -> Any:
        """Execute a peewee-built query, compiling its SQL once per ``key``.

        peewee spends ~0.5 ms turning a query into SQL, more than SQLite spends running it,
        so hot paths (each run's insert and updates, history pages) reuse the text. ``params``
        must come in the order peewee emits them; the first use checks.
        """
        sql = self._sql_cache.get(key)
        if sql is None:
            sql, built = build().sql()
            if list(built) != params:
                raise AssertionError(f"parameter order for {key}: {built!r} != {params!r}")
            self._sql_cache[key] = sql
        return self._db.execute_sql(sql, params)

    def _runs_query(self, task: str | None = None, status: str | None = None,
                    before: int | None = None, limit: int | None = None,
                    run_id: int | None = None) -> Any:
        Run = self._m.Run
        query = Run.select(*self._run_fields)
        for column, op, value in ((Run.task, "==", task), (Run.status, "==", status),
                                  (Run.id, "<", before), (Run.id, "==", run_id)):
            if value is not None:
                query = query.where(column < value if op == "<" else column == value)
        query = query.order_by(Run.id.desc())
        return query if limit is None else query.limit(limit)

    def _select_runs(self, task: str | None = None, status: str | None = None,
                     before: int | None = None, limit: int | None = None,
                     run_id: int | None = None) -> list[dict[str, Any]]:
        given = [(name, value) for name, value in (
            ("task", task), ("status", status), ("before", before), ("run_id", run_id),
            ("limit", limit)) if value is not None]
        cursor = self._exec(("runs", *(name for name, _ in given)), lambda: self._runs_query(
            task, status, before, limit, run_id), [value for _, value in given])
        return [_run_dict(row) for row in cursor.fetchall()]

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        """One run as a dict with RUN_KEYS, or None."""
        rows = self._select_runs(run_id=run_id)
        return rows[0] if rows else None

    def list_runs(self, task: str | None = None, status: str | None = None, limit: int = 50,
                  before: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """A page of runs, newest first, and the cursor of the next page (None at the end).

        Pass the returned cursor as ``before`` (only runs with a smaller id) for the next
        page. UsageError for a bad limit or status.
        """
        if limit < 1:
            raise UsageError(f"limit must be at least 1, not {limit}")
        if status is not None:
            try:
                status = _enum_value(RunStatus, status, "status")
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        runs = self._select_runs(task, status, before, limit + 1)
        if len(runs) <= limit:
            return runs, None
        del runs[limit:]
        return runs, runs[-1]["id"]

    def last_run(self, task: str) -> dict[str, Any] | None:
        """The task's newest run (any status), or None."""
        rows = self._select_runs(task, limit=1)
        return rows[0] if rows else None

    def last_runs(self, tasks: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Each task's newest run, for the tasks that have one: one query, a seek per task."""
        columns = ", ".join(f'r."{key}"' for key in RUN_KEYS)
        sql = (f"SELECT {columns} FROM json_each(?) AS j JOIN run AS r ON r.id = "
               "(SELECT id FROM run WHERE task = j.value ORDER BY id DESC LIMIT 1)")
        cursor = self._db.execute_sql(sql, (json.dumps(list(tasks)),))
        return {run["task"]: run for run in map(_run_dict, cursor.fetchall())}

    def get_output(self, run_id: int) -> bytes | None:
        """A run's captured output, or None when none was saved."""
        Out = self._m.RunOutput
        data = Out.select(Out.data).where(Out.run_id == run_id).scalar()
        return None if data is None else bytes(data)

    def task_states(self) -> dict[str, dict[str, Any]]:
        """name -> {name, paused, retry_count, completed, last_fire_at, first_seen_at,
        updated_at} for every task with a state row."""
        TS, keys = self._m.TaskState, ("name", *TASK_STATE_KEYS)
        rows = TS.select(*(getattr(TS, key) for key in keys)).tuples()
        return {row[0]: dict(zip(keys, row, strict=True)) for row in rows}

    def get_meta(self, key: str) -> str | None:
        """A metadata value, or None."""
        M = self._m.Meta
        value = M.select(M.value).where(M.key == key).scalar()
        return None if value is None else str(value)

    def count_runs_by_task_status(self) -> list[tuple[str, str, int]]:
        """Sorted (task, status, count): final statuses cumulative since the database was
        created (pruning does not lower them), queued and running as they are now."""
        C, Run = self._m.RunCounter, self._m.Run
        finished = self._exec(("counts",), lambda: C.select(C.task, C.status, C.runs), [])
        active = self._exec(("active_counts",), lambda: (
            Run.select(Run.task, Run.status, fn.COUNT(Run.id))
            .where(Run.status.in_(_ACTIVE)).group_by(Run.task, Run.status)), list(_ACTIVE))
        return sorted([*finished.fetchall(), *active.fetchall()])

    def last_success_times(self) -> dict[str, float]:
        """task -> finished_at of its latest succeeded run."""
        C, succeeded = self._m.RunCounter, RunStatus.SUCCEEDED.value
        cursor = self._exec(("last_success",), lambda: C.select(C.task, C.last_finished_at).where(
            (C.status == succeeded) & C.last_finished_at.is_null(False)), [succeeded])
        return dict(cursor.fetchall())

    def duration_summary(self) -> dict[str, tuple[int, int]]:
        """task -> (sum of duration_ms, number of runs with a duration) over finished runs."""
        C = self._m.RunCounter
        cursor = self._exec(("durations",), lambda: C.select(
            C.task, fn.SUM(C.duration_ms_sum), fn.SUM(C.duration_count)).group_by(C.task), [])
        return {task: (int(total), int(count)) for task, total, count in cursor.fetchall()}

"""Contract suite for cronkeeper.store on a real database file (never a mocked peewee).

Every test takes the ``store`` (or ``open_store``) fixture, parametrized over backends. Only
SQLite exists today; PostgreSQL (SPEC section 10) joins ``BACKENDS`` later, behind the
``external_service`` marker, and must pass the same tests. No test measures time: the
performance figures live in bench/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from cronkeeper import store as store_module
from cronkeeper.errors import RunNotFound, UsageError
from cronkeeper.store import RUN_KEYS, Store, StoreError, wait
from cronkeeper.vocab import RunStatus, RunTrigger

BACKENDS = ["sqlite"]  # + pytest.param("postgresql", marks=pytest.mark.external_service)
DAY = 86400.0
NOW = 1_800_000_000.0
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest,
               tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """Open (or reopen) a store; all are closed at teardown."""
    opened: list[Store] = []

    def factory(path: Path | None = None) -> Store:
        store = Store(path or tmp_path / "state" / "cronkeeper.db", host="testhost")
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., Store]) -> Store:
    return open_store()


def run(**fields: Any) -> dict[str, Any]:
    return {"task": "backup", "trigger": "schedule"} | fields


def insert(store: Store, **fields: Any) -> int:
    run_id: int = store.insert_run(run(**fields)).result(timeout=10)
    return run_id


@contextmanager
def writer_held(store: Store) -> Iterator[None]:
    """Keep the writer busy inside a transaction until the block ends, so that everything
    submitted meanwhile is queued and lands in the next batch."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(10)

    held = store._submit(store_module._WRITE, "test: hold the writer", hold)
    assert entered.wait(10)
    try:
        yield
    finally:
        release.set()
        held.result(timeout=10)


# --- round trip ---------------------------------------------------------------------------


def test_round_trip_with_every_key(store: Store) -> None:
    fields = {
        "id": store.allocate_run_id(), "task": "backup-db", "trigger": RunTrigger.CATCH_UP,
        "attempt": 2, "status": RunStatus.RUNNING, "scheduled_for": NOW,
        "queued_at": NOW + 0.5, "started_at": NOW + 1.0, "finished_at": None,
        "duration_ms": None, "exit_code": None, "signal": None, "error": None,
        "result": None, "params": {"path": "/var/log/app", "older_than_days": 30},
        "output_bytes": 0, "output_truncated": False, "pid": 4242, "host": "db1",
    }
    assert store.insert_run(fields).result(timeout=10) == fields["id"]
    got = store.get_run(fields["id"])
    assert got is not None
    assert list(got) == list(RUN_KEYS)
    assert got == fields | {"trigger": "catch-up", "status": "running"}

    store.update_run(fields["id"], status="failed", finished_at=NOW + 3.25, duration_ms=2250,
                     exit_code=3, signal=None, error="exit status 3",
                     result={"rows": [1, 2], "ok": False}, output_bytes=2_000_000,
                     output_truncated=True).result(timeout=10)
    assert store.get_run(fields["id"]) == got | {
        "status": "failed", "finished_at": NOW + 3.25, "duration_ms": 2250, "exit_code": 3,
        "error": "exit status 3", "result": {"rows": [1, 2], "ok": False},
        "output_bytes": 2_000_000, "output_truncated": True}


def test_insert_defaults(store: Store) -> None:
    run_id = insert(store)
    assert store.get_run(run_id) == {
        "id": run_id, "task": "backup", "trigger": "schedule", "attempt": 1,
        "status": "queued", "scheduled_for": None, "queued_at": None, "started_at": None,
        "finished_at": None, "duration_ms": None, "exit_code": None, "signal": None,
        "error": None, "result": None, "params": {}, "output_bytes": 0,
        "output_truncated": False, "pid": None, "host": "testhost"}


def test_json_result_values_survive(store: Store) -> None:
    for result in (None, 0, "text ✓", [1, "a"], {"nested": {"x": [None, True]}}):
        run_id = insert(store, status="succeeded", result=result)
        assert store.get_run(run_id)["result"] == result  # type: ignore[index]


def test_missing_things_are_none(store: Store) -> None:
    assert store.get_run(12345) is None
    assert store.get_output(12345) is None
    assert store.last_run("nothing") is None
    assert store.get_meta("nothing") is None
    assert store.list_runs() == ([], None)


def test_output_saved_and_replaced(store: Store) -> None:
    run_id = insert(store)
    store.save_output(run_id, b"line 1\n\x00binary\xff").result(timeout=10)
    assert store.get_output(run_id) == b"line 1\n\x00binary\xff"
    store.save_output(run_id, b"").result(timeout=10)
    assert store.get_output(run_id) == b""


def test_reads_work_from_other_threads(store: Store) -> None:
    run_id = insert(store, task="threaded")
    seen: list[Any] = []
    reader = threading.Thread(target=lambda: seen.append(store.get_run(run_id)))
    reader.start()
    reader.join(10)
    assert seen and seen[0]["task"] == "threaded"


async def test_wait_helper_in_asyncio(store: Store) -> None:
    run_id = await wait(store.insert_run(run(task="async")))
    await wait(store.update_run(run_id, status="running"))
    assert store.get_run(run_id)["status"] == "running"  # type: ignore[index]


# --- ids ------------------------------------------------------------------------------------


def test_ids_are_allocated_in_order_and_continue_after_reopen(
        open_store: Callable[..., Store], tmp_path: Path) -> None:
    store = open_store()
    assert [insert(store) for _ in range(3)] == [1, 2, 3]
    reserved = store.allocate_run_id()
    assert reserved == 4
    assert insert(store, id=10) == 10  # an explicit id moves the allocator past it
    assert store.allocate_run_id() == 11
    store.close()
    assert open_store(store.path).allocate_run_id() == 11


def test_pruned_ids_are_never_reused(open_store: Callable[..., Store]) -> None:
    store = open_store()
    for _ in range(3):
        insert(store, status="succeeded", finished_at=NOW - 30 * DAY)
    assert store.prune(keep_runs=0, keep_days=1, now=NOW).result(timeout=10) == 3
    store.close()
    assert open_store(store.path).allocate_run_id() == 4


# --- the writer ---------------------------------------------------------------------------


def test_a_burst_of_writes_is_committed_in_few_transactions(store: Store) -> None:
    before = store.commits
    with writer_held(store):
        futures = [store.insert_run(run(task=f"t{i % 7}")) for i in range(1000)]
        barrier = store.barrier()
    barrier.result(timeout=30)
    assert all(f.done() for f in futures)
    # One commit for the held batch, one for the 1,000 inserts and the barrier.
    assert store.commits - before <= 3 < 1000
    runs, _ = store.list_runs(limit=2000)
    assert len(runs) == 1000


def test_barrier_resolves_after_earlier_writes(store: Store) -> None:
    futures = [store.insert_run(run()) for _ in range(50)]
    store.barrier().result(timeout=10)
    assert all(f.done() and f.exception() is None for f in futures)


def test_writer_survives_failing_ops(store: Store) -> None:
    run_id = insert(store)
    with pytest.raises(ValueError, match="unknown run field.*bogus"):
        store.update_run(run_id, bogus=1).result(timeout=10)
    with pytest.raises(pw.IntegrityError):
        store.insert_run(run(id=run_id)).result(timeout=10)
    with pytest.raises(RunNotFound):
        store.update_run(999_999, status="failed").result(timeout=10)
    with pytest.raises(ValueError, match="expected one of: schedule, manual"):
        store.insert_run(run(trigger="cron")).result(timeout=10)
    with pytest.raises(ValueError, match="unknown task state field"):
        store.set_task_state("backup", colour="red").result(timeout=10)
    # Failures inside one batch undo only themselves.
    with writer_held(store):
        good = store.insert_run(run(task="good-1"))
        bad = store.update_run(run_id, attempt="not a number")
        also_good = store.insert_run(run(task="good-2"))
    assert isinstance(bad.exception(timeout=10), ValueError)
    assert store.get_run(good.result(timeout=10))["task"] == "good-1"  # type: ignore[index]
    assert store.get_run(also_good.result(timeout=10))["task"] == "good-2"  # type: ignore[index]
    assert store.get_run(run_id)["attempt"] == 1  # type: ignore[index]


def test_close_flushes_is_idempotent_and_refuses_later_writes(store: Store) -> None:
    futures = [store.insert_run(run()) for _ in range(20)]
    store.close()
    store.close()
    assert all(f.result(timeout=0) for f in futures)
    with pytest.raises(StoreError, match="closed"):
        store.insert_run(run()).result(timeout=10)
    assert len(store.list_runs()[0]) == 20  # reads still work after close


def test_context_manager_closes(tmp_path: Path) -> None:
    with Store(tmp_path / "ck.db") as store:
        future = store.set_meta("k", "v")
    assert future.result(timeout=0) is None
    assert store.barrier().exception(timeout=0) is not None


# --- history --------------------------------------------------------------------------------

STATUSES = ["succeeded", "failed", "succeeded", "timed_out", "skipped"]


@pytest.fixture
def history(store: Store) -> list[dict[str, Any]]:
    rows = [run(task=["a", "b", "c"][i % 3], status=STATUSES[i % len(STATUSES)],
                finished_at=NOW + i) for i in range(157)]
    futures = [store.insert_run(row) for row in rows]
    for row, future in zip(rows, futures, strict=True):
        row["id"] = future.result(timeout=10)
    return rows


@pytest.mark.parametrize(("task", "status"), [
    (None, None), ("a", None), (None, "failed"), ("b", "succeeded"), ("c", "cancelled")])
@pytest.mark.parametrize("limit", [1, 7, 50, 500])
def test_cursor_paging_walks_every_row_once_newest_first(
        store: Store, history: list[dict[str, Any]], task: str | None, status: str | None,
        limit: int) -> None:
    expected = sorted((row["id"] for row in history
                       if task in (None, row["task"]) and status in (None, row["status"])),
                      reverse=True)
    seen: list[int] = []
    cursor: int | None = None
    while True:
        page, cursor = store.list_runs(task=task, status=status, limit=limit, before=cursor)
        assert len(page) <= limit
        seen += [r["id"] for r in page]
        assert all(task in (None, r["task"]) and status in (None, r["status"]) for r in page)
        if cursor is None:
            break
        assert cursor == page[-1]["id"]
    assert seen == expected


def test_last_page_of_exact_size_has_no_next(store: Store, history: list[dict[str, Any]]) -> None:
    count = sum(1 for row in history if row["task"] == "a")
    page, cursor = store.list_runs(task="a", limit=count)
    assert len(page) == count and cursor is None


def test_list_runs_rejects_bad_arguments(store: Store) -> None:
    with pytest.raises(UsageError, match="expected one of: queued, running"):
        store.list_runs(status="done")
    with pytest.raises(UsageError, match="limit"):
        store.list_runs(limit=0)


def test_last_run_and_last_runs(store: Store, history: list[dict[str, Any]]) -> None:
    newest = {task: max(r["id"] for r in history if r["task"] == task) for task in "abc"}
    last = store.last_runs(["a", "b", "c", "never-ran"])
    assert {task: r["id"] for task, r in last.items()} == newest
    assert last["a"] == store.last_run("a") == store.get_run(newest["a"])
    assert store.last_runs([]) == {}


@pytest.mark.parametrize(("task", "status", "before"), [
    ("a", None, None), ("a", None, 100), (None, "failed", None), ("a", "failed", 100)])
def test_history_queries_use_an_index_without_sorting(
        store: Store, task: str | None, status: str | None, before: int | None) -> None:
    sql, params = store._runs_query(task, status, before, 51).sql()
    plan = " | ".join(row[3] for row in
                      store._db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
    assert "INDEX run_" in plan and "TEMP B-TREE" not in plan, plan


# --- start-up and retention --------------------------------------------------------------------


def test_mark_interrupted(store: Store) -> None:
    queued = insert(store, status="queued", queued_at=NOW - 10)
    running = insert(store, status="running", started_at=NOW - 5, pid=99)
    done = insert(store, status="succeeded", finished_at=NOW - 1)
    assert store.mark_interrupted(NOW) == [queued, running]
    for run_id, was in ((queued, "queued"), (running, "running")):
        got = store.get_run(run_id)
        assert got is not None
        assert (got["status"], got["finished_at"], got["error"]) == (
            "interrupted", NOW, f"daemon stopped while the run was {was}")
    assert store.get_run(done)["status"] == "succeeded"  # type: ignore[index]
    assert store.mark_interrupted(NOW + 1) == []
    assert ("backup", "interrupted", 2) in store.count_runs_by_task_status()


def test_prune_keeps_the_newest_runs_of_each_task(store: Store) -> None:
    a = [insert(store, task="a", status="failed", finished_at=NOW) for _ in range(10)]
    b = [insert(store, task="b", status="succeeded", finished_at=NOW) for _ in range(3)]
    for run_id in a + b:
        store.save_output(run_id, b"out %d" % run_id)
    assert store.prune(keep_runs=4, keep_days=0, now=NOW).result(timeout=10) == 6
    assert [r["id"] for r in store.list_runs(task="a")[0]] == a[:-5:-1]
    assert [r["id"] for r in store.list_runs(task="b")[0]] == b[::-1]
    assert [store.get_output(i) for i in a[:6]] == [None] * 6
    assert store.get_output(a[-1]) == b"out %d" % a[-1]


def test_prune_respects_keep_days(store: Store) -> None:
    ancient = insert(store, status="succeeded", finished_at=NOW - 10 * DAY)
    skipped = insert(store, status="skipped", queued_at=NOW - 9 * DAY)  # no finished_at
    recent = insert(store, status="failed", finished_at=NOW - 1 * DAY)
    store.save_output(ancient, b"old")
    assert store.prune(keep_runs=100, keep_days=7, now=NOW).result(timeout=10) == 2
    assert [r["id"] for r in store.list_runs()[0]] == [recent]
    assert store.get_run(skipped) is None and store.get_output(ancient) is None


def test_prune_never_deletes_queued_or_running_runs(store: Store) -> None:
    active = [insert(store, status=s, queued_at=NOW - 99 * DAY)
              for s in ("queued", "running") * 3]
    newest = insert(store, status="succeeded", finished_at=NOW)
    assert store.prune(keep_runs=1, keep_days=1, now=NOW).result(timeout=10) == 0
    assert sorted(r["id"] for r in store.list_runs()[0]) == sorted([*active, newest])


def test_prune_runs_in_steps_and_barriers_wait_for_it(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_PRUNE_CHUNK", 5)
    for _ in range(40):
        insert(store, status="succeeded", finished_at=NOW - 30 * DAY)
    before = store.commits
    pruned = store.prune(keep_runs=0, keep_days=1, now=NOW)
    later = store.insert_run(run(task="during-prune"))
    store.barrier().result(timeout=30)
    assert pruned.done() and pruned.result() == 40
    assert later.done()
    assert store.commits - before >= 8  # one commit per step: other writes interleave


# --- task state, meta, metrics ------------------------------------------------------------------


def test_task_state_upsert_keeps_other_fields(open_store: Callable[..., Store]) -> None:
    store = open_store()
    store.set_task_state("backup", paused=True, updated_at=100.0)
    store.set_task_state("backup", retry_count=2, last_fire_at=150.0, updated_at=200.0)
    store.set_task_state("report", completed=True, updated_at=300.0).result(timeout=10)
    expected = {
        "backup": {"name": "backup", "paused": True, "retry_count": 2, "completed": False,
                   "last_fire_at": 150.0, "first_seen_at": 100.0, "updated_at": 200.0},
        "report": {"name": "report", "paused": False, "retry_count": 0, "completed": True,
                   "last_fire_at": None, "first_seen_at": 300.0, "updated_at": 300.0}}
    assert store.task_states() == expected
    store.close()
    assert open_store(store.path).task_states() == expected


def test_meta_values(store: Store) -> None:
    store.set_meta("paused_all", "1")
    store.set_meta("paused_all", "0").result(timeout=10)
    assert store.get_meta("paused_all") == "0"


def test_metrics_count_each_run_once_and_survive_prune(store: Store) -> None:
    first = insert(store, task="a", status="running")
    store.update_run(first, status="succeeded", finished_at=NOW, duration_ms=100)
    store.update_run(first, error="edited later")  # not a second finish
    insert(store, task="a", status="succeeded", finished_at=NOW + 10, duration_ms=300)
    insert(store, task="a", status="failed", finished_at=NOW + 20, duration_ms=50)
    insert(store, task="b", status="skipped", finished_at=NOW)  # no duration
    insert(store, task="b", status="queued")
    insert(store, task="b", status="running")
    store.barrier().result(timeout=10)
    expected = [("a", "failed", 1), ("a", "succeeded", 2), ("b", "queued", 1),
                ("b", "running", 1), ("b", "skipped", 1)]
    assert store.count_runs_by_task_status() == expected
    assert store.last_success_times() == {"a": NOW + 10}
    assert store.duration_summary() == {"a": (450, 3), "b": (0, 0)}
    store.prune(keep_runs=1, keep_days=0, now=NOW).result(timeout=10)
    assert store.count_runs_by_task_status() == expected  # counters are cumulative


def test_bulk_insert(store: Store) -> None:
    rows = [run(task=f"t{i % 4}", status="succeeded", finished_at=NOW + i, duration_ms=10)
            for i in range(250)]
    assert store.bulk_insert_runs(rows, chunk_size=100) == 250
    assert store.allocate_run_id() == 251
    assert len(store.list_runs(task="t0", limit=1000)[0]) == 63
    assert ("t1", "succeeded", 63) in store.count_runs_by_task_status()
    assert store.last_success_times()["t3"] == NOW + 247
    assert store.duration_summary()["t2"] == (620, 62)


# --- files, schema and crashes -------------------------------------------------------------


def test_creates_folders_and_uses_wal(store: Store, tmp_path: Path) -> None:
    assert store.path == tmp_path / "state" / "cronkeeper.db" and store.path.exists()
    assert store._db.pragma("journal_mode") == "wal"
    assert store._db.pragma("synchronous") == 1  # NORMAL


def test_stores_are_independent(open_store: Callable[..., Store], tmp_path: Path) -> None:
    one, two = open_store(tmp_path / "one.db"), open_store(tmp_path / "two.db")
    insert(one, task="only-in-one")
    assert two.list_runs() == ([], None)
    assert one.last_run("only-in-one") is not None


def test_new_database_has_current_schema(store: Store) -> None:
    assert store.schema_version == len(store_module._MIGRATIONS) == 1
    assert store.get_meta("schema_version") == "1"
    for model in store._m.all:  # the models agree with what the migrations created
        columns = [c.name for c in store._db.get_columns(model._meta.table_name)]
        assert columns == [f.column_name for f in model._meta.sorted_fields]


def test_reopening_a_current_database(open_store: Callable[..., Store]) -> None:
    store = open_store()
    run_id = insert(store, status="succeeded")
    store.close()
    again = open_store(store.path)
    assert again.schema_version == 1
    assert again.get_run(run_id)["status"] == "succeeded"  # type: ignore[index]


def test_older_database_gets_missing_migrations_in_order(
        open_store: Callable[..., Store], monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store()
    run_id = insert(store)
    store.close()
    applied: list[int] = []

    def v2(db: pw.Database) -> None:
        applied.append(2)
        db.execute_sql("CREATE TABLE extra (x INTEGER)")

    def v3(db: pw.Database) -> None:
        applied.append(3)
        db.execute_sql("INSERT INTO extra (x) VALUES (3)")

    monkeypatch.setattr(store_module, "_MIGRATIONS", [*store_module._MIGRATIONS, v2, v3])
    migrated = open_store(store.path)
    assert applied == [2, 3] and migrated.schema_version == 3
    assert migrated._db.execute_sql("SELECT x FROM extra").fetchall() == [(3,)]
    assert migrated.get_run(run_id) is not None
    migrated.close()
    open_store(store.path)
    assert applied == [2, 3]  # nothing is applied twice


def test_newer_database_is_refused(open_store: Callable[..., Store]) -> None:
    store = open_store()
    store.set_meta("schema_version", "99")
    store.close()
    with pytest.raises(StoreError, match=r"schema version 99.*versions up to 1.*newer"):
        open_store(store.path)


def test_unusable_paths_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "not-a.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        Store(garbage)
    with pytest.raises(StoreError, match="not supported yet"):
        Store("postgresql://db/cronkeeper")
    with pytest.raises(StoreError, match="file path"):
        Store(":memory:")


def test_a_committed_run_survives_the_process_dying(
        open_store: Callable[..., Store], tmp_path: Path) -> None:
    path = tmp_path / "killed" / "cronkeeper.db"
    child = textwrap.dedent("""
        import os, sys
        from cronkeeper.store import Store
        store = Store(sys.argv[1])
        run_id = store.insert_run({"task": "k", "trigger": "manual", "status": "running"})
        store.save_output(run_id.result(), b"partial output").result()
        print(run_id.result(), flush=True)
        os._exit(0)  # no close(), no atexit: as abrupt as a crash
    """)
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True,
                          text=True, timeout=60, env=env, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    run_id = int(done.stdout)
    store = open_store(path)
    assert store.get_run(run_id)["status"] == "running"  # type: ignore[index]
    assert store.get_output(run_id) == b"partial output"
    assert store.mark_interrupted(NOW) == [run_id]
    assert store.allocate_run_id() == run_id + 1

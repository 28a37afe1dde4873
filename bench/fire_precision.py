"""Benchmark: fire precision (SPEC 9) - N tasks ``every 1s`` for D seconds.

For each size (default 1,000 tasks for 30 s, then 100 tasks for 20 s):

- cronkeeper: the real daemon, N tasks ``schedule = "every 1s"``, ``command = ["/bin/true"]``
  (no shell), ``max_concurrent_runs = N`` (no slot queueing, like the baselines). After a
  warm-up, a window of D whole seconds [t0, t0 + D) is measured from the database:
  start delay = ``started_at - scheduled_for`` of each run, missed fires = expected fires
  (N x D) - runs that started, counting distinct ``scheduled_for`` values per task (runs
  recorded as ``skipped`` count as missed and are also shown on their own), runs/s recorded,
  and the daemon's own CPU (utime + stime from /proc, which excludes children) per run.
- baseline "bare asyncio": one process that sleeps until each second boundary and spawns N
  ``/bin/true`` with ``asyncio.create_subprocess_exec`` (stdout piped and read, as cronkeeper
  captures output) under ``asyncio.PidfdChildWatcher`` when the kernel has pidfds; delay =
  when ``create_subprocess_exec`` returned - the boundary. Like cronkeeper's default
  ``overlap = "skip"`` (and APScheduler's ``max_instances=1``), a "task" whose previous run
  has not finished skips that second's fire, so an overloaded loop misses fires instead of
  building an unbounded backlog.
- baseline "APScheduler 3": ``AsyncIOScheduler`` with N jobs on ``IntervalTrigger(seconds=1)``
  whose coroutine spawns ``/bin/true`` the same way and then does one peewee insert per run
  into SQLite (WAL, synchronous=NORMAL: cronkeeper's settings). Default job options
  (``misfire_grace_time=1``, ``max_instances=1``, ``coalesce=False``), so its misses show;
  delay = spawn time - the event's ``scheduled_run_time``. Uses the pidfd watcher too.

Usage: ``.venv/bin/python bench/fire_precision.py [--sizes 1000:30,100:20] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PYTHON,
    BenchDaemon,
    Profiler,
    Row,
    common_args,
    load_average,
    pidfd_supported,
    print_rows,
    sleep_until,
    summary_ms,
    workdir,
    write_config,
    write_result,
)

TRUE = "/bin/true"
CHILD_TIMEOUT = 300.0


# ---- cronkeeper ------------------------------------------------------------------------------------

def measure_cronkeeper(n: int, duration: int, warmup: int,
                       profile: Path | None = None) -> dict[str, Any]:
    with workdir("fire") as wd:
        tasks = {f"t{i:04d}": {"schedule": "every 1s", "command": [TRUE]} for i in range(n)}
        config = write_config(wd / "cronkeeper.toml", tasks, max_concurrent_runs=max(16, n))
        daemon = BenchDaemon(config)
        load = load_average()
        ready_s = daemon.start()
        profiler = Profiler(profile / f"fire_precision_{n}.raw") if profile else None
        try:
            t0 = math.ceil(time.time()) + warmup
            t1 = t0 + duration
            # CPU is sampled half a second off the boundaries, so the window holds exactly
            # D bursts of fires and no sampling coincides with one.
            sleep_until(t0 - 0.5)
            cpu0 = daemon.cpu()
            if profiler is not None:
                profiler.start(daemon.pid, duration)
            sleep_until(t1 - 0.5)
            cpu1 = daemon.cpu()
            rss_kib = daemon.rss_kib()
            _wait_recorded(daemon.db, t0, t1, n * duration, deadline=time.monotonic() + 60)
        finally:
            daemon.stop()
        profile_text = profiler.finish() if profiler is not None else ""
        rows = _read_runs(daemon.db, t0, t1)
    return _summarise(rows, n, duration, t0, t1, cpu1 - cpu0, extra={
        "ready_s": ready_s, "rss_mib": rss_kib / 1024, "loadavg_before": load,
        "profile": profile_text})


def _wait_recorded(db: Path, t0: float, t1: float, expected: int, deadline: float) -> None:
    """Wait until every fire of the window has a run row and none of them is still queued
    or running (an overloaded daemon works through its backlog), or progress stops."""
    sleep_until(t1 + 1.5)
    last: tuple[int, int] | None = None
    still = 0
    while time.monotonic() < deadline:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            recorded, done = conn.execute(
                "SELECT count(*), coalesce(sum(status NOT IN ('queued', 'running')), 0) "
                "FROM run WHERE trigger = 'schedule' AND scheduled_for >= ? "
                "AND scheduled_for < ?", (t0, t1)).fetchone()
        if recorded >= expected and done >= recorded:
            return
        still = still + 1 if (recorded, done) == last else 0
        if still >= 10:  # five seconds without a new row or a finished run: given up
            return
        last = (recorded, done)
        time.sleep(0.5)  # polling the database, bounded by the deadline


def _read_runs(db: Path, t0: float, t1: float) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(
            "SELECT task, scheduled_for, queued_at, started_at, finished_at, status FROM run "
            "WHERE trigger = 'schedule' AND scheduled_for >= ? AND scheduled_for < ?",
            (t0, t1)).fetchall()


def _summarise(rows: list[tuple[Any, ...]], n: int, duration: int, t0: float, t1: float,
               cpu: float, extra: dict[str, Any]) -> dict[str, Any]:
    ran: dict[str, set[float]] = defaultdict(set)
    recorded: dict[str, set[float]] = defaultdict(set)
    delays, fire_lag = [], []
    skipped = 0
    for task, scheduled, queued, started, _finished, status in rows:
        recorded[task].add(scheduled)
        if status == "skipped":
            skipped += 1
        if started is not None:
            if scheduled not in ran[task]:
                delays.append(started - scheduled)
            ran[task].add(scheduled)
        if queued is not None:
            fire_lag.append(queued - scheduled)
    expected = n * duration
    ran_count = sum(len(v) for v in ran.values())
    return {
        "expected": expected, "ran": ran_count,
        "recorded": sum(len(v) for v in recorded.values()),
        "missed": expected - ran_count, "skipped": skipped,
        "delay": summary_ms(delays), "queued_lag": summary_ms(fire_lag),
        "runs_per_s": ran_count / duration, "cpu_s": cpu,
        "cpu_ms_per_run": cpu / ran_count * 1000 if ran_count else math.nan,
        "window": [t0, t1], **extra,
    }


# ---- baseline: bare asyncio loop ----------------------------------------------------------------------

def _install_pidfd_watcher() -> bool:
    if not pidfd_supported() or sys.version_info >= (3, 12):
        return pidfd_supported()
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    return True


async def _spawn_true() -> tuple[asyncio.subprocess.Process, float]:
    proc = await asyncio.create_subprocess_exec(
        TRUE, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    return proc, time.time()


async def bare_loop(n: int, duration: int, warmup: int) -> dict[str, Any]:
    pidfd = _install_pidfd_watcher()
    loop = asyncio.get_running_loop()
    delays: list[float] = []
    late_bursts = skipped = 0
    tasks: set[asyncio.Task[None]] = set()
    cpu: dict[str, float] = {}
    active = [False] * n  # per "task": a run spawned and not finished yet

    async def one(i: int, boundary: float, measured: bool) -> None:
        try:
            proc, started = await _spawn_true()
            if measured:
                delays.append(started - boundary)
            await proc.communicate()
        finally:
            active[i] = False

    t0 = math.ceil(time.time()) + warmup
    t1 = t0 + duration
    for key, when in (("start", t0 - 0.5), ("end", t1 - 0.5)):
        loop.call_later(when - time.time(), lambda k=key: cpu.__setitem__(k, _own_cpu()))
    for k in range(-warmup, duration):
        boundary = t0 + k
        left = boundary - time.time()
        if left > 0:
            await asyncio.sleep(left)
        elif left < -1:
            late_bursts += 1  # the previous second's spawns overran this boundary
        for i in range(n):
            if active[i]:
                skipped += k >= 0
                continue
            active[i] = True
            task = asyncio.ensure_future(one(i, boundary, k >= 0))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    await asyncio.sleep(max(0.0, t1 - time.time()))
    if tasks:
        await asyncio.wait(set(tasks), timeout=60)
    runs = len(delays)
    cpu_s = cpu.get("end", _own_cpu()) - cpu.get("start", 0.0)
    return {"expected": n * duration, "ran": runs, "missed": n * duration - runs,
            "skipped": skipped, "late_bursts": late_bursts, "delay": summary_ms(delays),
            "runs_per_s": runs / duration, "cpu_s": cpu_s,
            "cpu_ms_per_run": cpu_s / runs * 1000 if runs else math.nan, "pidfd": pidfd,
            "window": [t0, t1], "rss_mib": _own_rss_mib()}


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system  # this process only: children are not included


def _own_rss_mib() -> float:
    from _common import proc_status_kib

    return proc_status_kib(os.getpid(), "VmRSS") / 1024


# ---- baseline: APScheduler 3 + peewee ----------------------------------------------------------------

async def apscheduler_loop(n: int, duration: int, warmup: int, db_path: Path) -> dict[str, Any]:
    from datetime import UTC, datetime

    import peewee as pw
    from apscheduler.events import (
        EVENT_JOB_ERROR,
        EVENT_JOB_EXECUTED,
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
    )
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    pidfd = _install_pidfd_watcher()
    db = pw.SqliteDatabase(str(db_path), pragmas={"journal_mode": "wal",
                                                   "synchronous": "normal"})

    class Run(pw.Model):
        task = pw.TextField()
        started_at = pw.FloatField()
        finished_at = pw.FloatField()
        exit_code = pw.IntegerField(null=True)
        output = pw.BlobField(null=True)

        class Meta:
            database = db

    db.connect()
    db.create_tables([Run])

    async def job(name: str) -> float:
        proc, started = await _spawn_true()
        out, _ = await proc.communicate()
        Run.create(task=name, started_at=started, finished_at=time.time(),
                   exit_code=proc.returncode, output=out)
        return started

    executed: list[tuple[float, float]] = []
    missed: list[float] = []
    max_instances: list[float] = []
    errors: list[str] = []

    def listener(event: Any) -> None:
        if event.code == EVENT_JOB_EXECUTED:
            executed.append((event.scheduled_run_time.timestamp(), event.retval))
        elif event.code == EVENT_JOB_MISSED:
            missed.append(event.scheduled_run_time.timestamp())
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            max_instances.extend(t.timestamp() for t in event.scheduled_run_times)
        elif event.code == EVENT_JOB_ERROR:
            errors.append(repr(event.exception))

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED
                           | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR)
    base = math.ceil(time.time()) + 1
    t0 = base + warmup
    t1 = t0 + duration
    start = datetime.fromtimestamp(base, UTC)
    for i in range(n):
        scheduler.add_job(job, IntervalTrigger(seconds=1, start_date=start, timezone=UTC),
                          args=(f"t{i:04d}",), id=f"t{i:04d}")
    cpu: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    for key, when in (("start", t0 - 0.5), ("end", t1 - 0.5)):
        loop.call_later(when - time.time(), lambda k=key: cpu.__setitem__(k, _own_cpu()))
    scheduler.start()
    await asyncio.sleep(max(0.0, t1 + 2 - time.time()))
    scheduler.shutdown(wait=False)
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if pending:
        await asyncio.wait(pending, timeout=30)
    in_window = [(s, st) for s, st in executed if t0 <= s < t1]
    delays = [st - s for s, st in in_window]
    runs = len(in_window)
    cpu_s = cpu.get("end", _own_cpu()) - cpu.get("start", 0.0)
    db.close()
    return {"expected": n * duration, "ran": runs, "missed": n * duration - runs,
            "misfired": sum(t0 <= s < t1 for s in missed),
            "max_instances_skipped": sum(t0 <= s < t1 for s in max_instances),
            "errors": errors[:5], "delay": summary_ms(delays), "runs_per_s": runs / duration,
            "cpu_s": cpu_s, "cpu_ms_per_run": cpu_s / runs * 1000 if runs else math.nan,
            "pidfd": pidfd, "window": [t0, t1], "rss_mib": _own_rss_mib()}


def run_child(kind: str, n: int, duration: int, warmup: int) -> dict[str, Any]:
    """A baseline in its own process, so it has the machine (and its own loop) to itself."""
    with workdir(f"fire-{kind}") as wd:
        out = wd / "result.json"
        load = load_average()
        done = subprocess.run(
            [PYTHON, __file__, "--child", kind, "--child-n", str(n), "--child-duration",
             str(duration), "--child-warmup", str(warmup), "--out", str(out)],
            timeout=CHILD_TIMEOUT, cwd=wd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{kind} baseline failed ({done.returncode}):\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
        result["loadavg_before"] = load
    return result


# ---- main --------------------------------------------------------------------------------------------

def rows_for(n: int, duration: int, ck: dict[str, Any], bare: dict[str, Any],
             aps: dict[str, Any]) -> list[Row]:
    bench = "fire_precision"
    tag = f"{n:,} tasks every 1s, {duration} s"

    def bases(key: str, sub: str | None = None) -> dict[str, float | None]:
        def get(d: dict[str, Any]) -> float | None:
            v = d.get(key)
            return v.get(sub) if sub is not None and isinstance(v, dict) else v

        return {"bare asyncio": get(bare), "APScheduler 3": get(aps)}

    big = n >= 1000
    aps_missed_pct = (100 * aps["missed"] / aps["expected"] if aps.get("expected")
                      and aps.get("missed") is not None else math.nan)
    rows = [
        Row(bench, f"{tag}: missed fires (of {n * duration:,})", "count", ck["missed"],
            bases("missed"), goal=("==", 0) if big else None,
            goal_text="0" if big else "",
            note=f"cronkeeper: {ck['skipped']} recorded as skipped (the task's previous run "
                 f"still active), {ck['expected'] - ck['recorded']} without a row when the "
                 f"daemon was stopped (it was still behind); bare asyncio skipped "
                 f"{bare.get('skipped')} the same way; APScheduler missed "
                 f"{aps_missed_pct:.0f}% (misfired {aps.get('misfired')}, max_instances "
                 f"{aps.get('max_instances_skipped')})"),
        Row(bench, f"{tag}: start delay p50", "ms", ck["delay"]["p50"], bases("delay", "p50"),
            goal=None if big else ("<=", 40.0), goal_text="" if big else "<= 40 ms"),
        Row(bench, f"{tag}: start delay p99", "ms", ck["delay"]["p99"], bases("delay", "p99"),
            goal=None if big else ("<=", 80.0), goal_text="" if big else "<= 80 ms"),
        Row(bench, f"{tag}: start delay max", "ms", ck["delay"]["max"], bases("delay", "max")),
    ]
    if not big:  # "within 1.5x of the bare loop's", as rows of their own
        for pct in ("p50", "p99"):
            bare_value = bare["delay"].get(pct)
            ratio = (ck["delay"][pct] / bare_value if bare_value else math.nan)
            rows.append(Row(bench, f"{tag}: start delay {pct}, cronkeeper / bare asyncio", "x",
                            ratio, goal=("<=", 1.5), goal_text="<= 1.5x"))
    rows += [
        Row(bench, f"{tag}: runs/s recorded", "runs/s", ck["runs_per_s"], bases("runs_per_s"),
            goal_text="record", note=f"expected {n}/s"),
        Row(bench, f"{tag}: scheduler CPU per run", "ms", ck["cpu_ms_per_run"],
            bases("cpu_ms_per_run"), goal=("<=", 0.5), goal_text="<= 0.5 ms",
            note="daemon utime+stime over the window / runs (children excluded)"),
    ]
    return rows


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        n, _, d = part.partition(":")
        out.append((int(n), int(d or 30)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(parser)
    parser.add_argument("--sizes", default="1000:30,100:20",
                        help="TASKS:SECONDS pairs, comma-separated (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip-aps", action="store_true", help="leave out APScheduler")
    parser.add_argument("--child", choices=["bare", "apscheduler"], help=argparse.SUPPRESS)
    parser.add_argument("--child-n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-duration", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-warmup", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        if args.child == "bare":
            result = asyncio.run(bare_loop(args.child_n, args.child_duration, args.child_warmup))
        else:
            result = asyncio.run(apscheduler_loop(args.child_n, args.child_duration,
                                                  args.child_warmup, Path("aps.db")))
        args.out.write_text(json.dumps(result))
        return

    sizes = [(100, 3)] if args.quick else parse_sizes(args.sizes)
    warmup = 1 if args.quick else args.warmup
    all_rows: list[Row] = []
    details: dict[str, Any] = {}
    for n, duration in sizes:
        print(f"fire precision: {n} tasks every 1s, {duration} s window "
              f"(+{warmup} s warm-up) ...", flush=True)
        ck = measure_cronkeeper(n, duration, warmup, args.profile)
        print(f"  cronkeeper: missed {ck['missed']}, delay p50 {ck['delay']['p50']:.1f} ms, "
              f"p99 {ck['delay']['p99']:.1f} ms", flush=True)
        bare = run_child("bare", n, duration, warmup)
        print(f"  bare asyncio: delay p50 {bare['delay']['p50']:.1f} ms, "
              f"p99 {bare['delay']['p99']:.1f} ms", flush=True)
        if args.skip_aps:
            aps: dict[str, Any] = {"expected": 0, "missed": None, "delay": {}}
        else:
            aps = run_child("apscheduler", n, duration, warmup)
            print(f"  APScheduler: missed {aps['missed']} of {aps['expected']}, delay p50 "
                  f"{aps['delay']['p50']:.1f} ms", flush=True)
        if ck.get("profile"):
            print(ck["profile"])
        details[f"{n}x{duration}"] = {"cronkeeper": ck, "bare_asyncio": bare, "apscheduler": aps}
        all_rows += rows_for(n, duration, ck, bare, aps)
    print_rows("fire precision", all_rows)
    path = write_result("fire_precision", all_rows, quick=args.quick,
                        params={"sizes": sizes, "warmup": warmup}, details=details, out=args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

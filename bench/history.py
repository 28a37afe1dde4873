"""Benchmark: history at scale (SPEC 9) - 1,000,000 stored runs over 1,000 tasks.

- The database is built once with ``Store.bulk_insert_runs`` (runs interleaved in time, as a
  real history is: every task ran once a minute for ~16 hours; 95 % succeeded, 4 % failed,
  1 % timed out; no captured output) and cached under ``bench/.cache/`` (git-ignored), so
  reruns only copy it. Each run works on a copy, so the cache never changes.
- The daemon is started on the copy (1,000 manual-only tasks). ``GET /v1/runs?task=X&limit=50``
  is timed over one keep-alive httpx connection on the Unix socket, for random tasks:
  median and p99; likewise a deep page (``before`` = an id in the middle of the history) and a
  rare status (``status=timed_out``).
- ``cronkeeper history X`` as a whole process (the venv's console script): median of ~10.
- Database bytes per run: file size (plus WAL) / runs, with a per-table/index breakdown
  from SQLite's ``dbstat`` when available.
- Baselines: the same query through the ``sqlite3`` module on the same file (no HTTP, no
  JSON); ``python -c pass`` for process start-up (the floor under any Python CLI).

Usage: ``.venv/bin/python bench/history.py [--runs 1000000] [--tasks 1000] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CACHE,
    CRONKEEPER,
    PYTHON,
    ROOT,
    BenchDaemon,
    Profiler,
    Row,
    common_args,
    load_average,
    median,
    percentile,
    print_rows,
    workdir,
    write_config,
    write_result,
)

sys.path.insert(0, str(ROOT))

CACHE_VERSION = 1  # bump when the generated rows or the schema change
RUN_COLUMNS = ("id", "task", "trigger", "attempt", "status", "scheduled_for", "queued_at",
               "started_at", "finished_at", "duration_ms", "exit_code", "signal", "error",
               "result", "params", "output_bytes", "output_truncated", "pid", "host")


def task_name(i: int) -> str:
    return f"task-{i:04d}"


def generate_runs(runs: int, tasks: int, end: float, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``runs`` runs, round-robin over ``tasks`` tasks, each task once a minute up to ``end``."""
    rng = random.Random(seed)
    rounds = -(-runs // tasks)
    start = end - rounds * 60
    count = 0
    for r in range(rounds):
        minute = start + r * 60
        for t in range(tasks):
            if count == runs:
                return
            count += 1
            roll = rng.random()
            scheduled = minute
            queued = scheduled + rng.uniform(0.0005, 0.003)
            started = queued + rng.uniform(0.001, 0.01)
            duration = rng.uniform(0.005, 2.0) if roll < 0.99 else 300.0
            if roll < 0.95:
                status, code, error = "succeeded", 0, None
            elif roll < 0.99:
                status, code, error = "failed", 1, "exited with status 1"
            else:
                status, code, error = "timed_out", None, "killed by SIGKILL after timeout of 300s"
            yield {
                "task": task_name(t), "trigger": "schedule", "attempt": 1, "status": status,
                "scheduled_for": scheduled, "queued_at": queued, "started_at": started,
                "finished_at": started + duration, "duration_ms": int(duration * 1000),
                "exit_code": code, "signal": 9 if code is None else None, "error": error,
                "result": None, "params": None, "output_bytes": rng.choice((0, 0, 12, 240, 4096)),
                "output_truncated": False, "pid": rng.randrange(1000, 4_000_000),
                "host": "bench-host",
            }


def build_cache(runs: int, tasks: int) -> tuple[Path, float | None]:
    """The cached database for (runs, tasks); builds it when missing. Returns (path, build s)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"history-{runs}-{tasks}-v{CACHE_VERSION}.db"
    if path.exists() and _count(path) == runs:
        return path, None
    from cronkeeper.store import Store

    tmp = path.with_suffix(".building")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    print(f"  building {path.name} ({runs:,} runs, once; cached afterwards) ...", flush=True)
    started = time.perf_counter()
    store = Store(tmp, host="bench-host")
    try:
        # Fixed end time: the cache is reproducible; retention is off in the bench config.
        store.bulk_insert_runs(generate_runs(runs, tasks, end=1_790_000_000.0))
    finally:
        store.close()
    with sqlite3.connect(tmp) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for side in (Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        side.unlink(missing_ok=True)
    tmp.replace(path)
    return path, time.perf_counter() - started


def _count(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM run").fetchone()[0])
    except sqlite3.Error:
        return -1


def db_breakdown(path: Path) -> dict[str, int]:
    """Bytes per table and index (SQLite ``dbstat``), or {} when not compiled in."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name "
                                "ORDER BY 2 DESC").fetchall()
    except sqlite3.Error:
        return {}
    return {name: int(size) for name, size in rows}


def time_api(sock: Path, queries: list[dict[str, Any]], *, may_be_empty: bool = False
             ) -> list[float]:
    transport = httpx.HTTPTransport(uds=str(sock))
    out = []
    with httpx.Client(transport=transport, base_url="http://cronkeeper", timeout=30) as client:
        for params in queries[:20]:  # warm-up: connection, code paths, page cache
            client.get("/v1/runs", params=params).raise_for_status()
        for params in queries:
            start = time.perf_counter()
            response = client.get("/v1/runs", params=params)
            body = response.json()
            out.append(time.perf_counter() - start)
            if response.status_code != 200 or not (body["runs"] or may_be_empty):
                raise RuntimeError(f"unexpected answer to {params}: {response.status_code} "
                                   f"{str(body)[:200]}")
    return out


def time_sqlite(db: Path, queries: list[dict[str, Any]], *, may_be_empty: bool = False
                ) -> list[float]:
    """The same pages straight from SQLite: the floor under the API."""
    columns = ", ".join(f'"{c}"' for c in RUN_COLUMNS)
    out = []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for i, params in enumerate(queries[:20] + queries):
            where, args = ["task = ?"], [params["task"]]
            if "status" in params:
                where.append("status = ?")
                args.append(params["status"])
            if "before" in params:
                where.append("id < ?")
                args.append(params["before"])
            sql = (f"SELECT {columns} FROM run WHERE {' AND '.join(where)} "
                   f"ORDER BY id DESC LIMIT ?")
            start = time.perf_counter()
            rows = conn.execute(sql, [*args, int(params["limit"]) + 1]).fetchall()
            if i >= 20:
                out.append(time.perf_counter() - start)
            if not rows and not may_be_empty:
                raise RuntimeError(f"no rows for {params}")
    finally:
        conn.close()
    return out


def time_process(argv: list[str], rounds: int, cwd: Path) -> list[float]:
    out = []
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=60)  # warm caches
    for _ in range(rounds):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=60)
        out.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr[-2000:]!r}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(parser)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--cli-rounds", type=int, default=10)
    args = parser.parse_args()
    runs, tasks = (20_000, 100) if args.quick else (args.runs, args.tasks)
    queries_n = 50 if args.quick else args.queries
    cli_rounds = 3 if args.quick else args.cli_rounds

    print(f"history: {runs:,} runs over {tasks:,} tasks ...", flush=True)
    cached, build_s = build_cache(runs, tasks)
    if build_s is not None:
        print(f"  built in {build_s:.1f} s", flush=True)
    rng = random.Random(11)
    with sqlite3.connect(f"file:{cached}?mode=ro", uri=True) as conn:
        max_id = conn.execute("SELECT max(id) FROM run").fetchone()[0]
    first = [{"task": task_name(rng.randrange(tasks)), "limit": 50} for _ in range(queries_n)]
    deep = [{"task": task_name(rng.randrange(tasks)), "limit": 50,
             "before": rng.randrange(max_id // 4, max_id // 2)} for _ in range(queries_n)]
    rare = [{"task": task_name(rng.randrange(tasks)), "status": "timed_out", "limit": 50}
            for _ in range(queries_n)]

    load = load_average()
    with workdir("history") as wd:
        db = wd / "ck.db"
        shutil.copyfile(cached, db)
        size = db.stat().st_size
        breakdown = db_breakdown(db)
        config = write_config(wd / "cronkeeper.toml",
                              {task_name(i): {"command": ["/bin/true"]} for i in range(tasks)})
        daemon = BenchDaemon(config)
        ready_s = daemon.start()
        profiler = Profiler(args.profile / "history_api.raw") if args.profile else None
        try:
            if profiler is not None:
                profiler.start(daemon.pid, 8)
            api_first = time_api(daemon.socket, first)
            api_deep = time_api(daemon.socket, deep)
            api_rare = time_api(daemon.socket, rare, may_be_empty=True)
            sql_first = time_sqlite(db, first)
            sql_deep = time_sqlite(db, deep)
            sql_rare = time_sqlite(db, rare, may_be_empty=True)
            cli = time_process([str(CRONKEEPER), "--socket", str(daemon.socket), "history",
                                first[0]["task"]], cli_rounds, wd)
            cli_json = time_process([str(CRONKEEPER), "--socket", str(daemon.socket), "history",
                                     first[0]["task"], "--json"], max(3, cli_rounds // 2), wd)
            bare = time_process([PYTHON, "-c", "pass"], cli_rounds, wd)
            imports = time_process([PYTHON, "-c", "import cronkeeper.cli"], cli_rounds, wd)
            rss = daemon.rss_kib() / 1024
        finally:
            daemon.stop()
        profile_text = profiler.finish() if profiler is not None else ""
        wal = Path(f"{db}-wal")
        size_after = db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def ms(values: list[float], pct: float | None = None) -> float:
        return (median(values) if pct is None else percentile(values, pct)) * 1000

    bench = "history"
    rows = [
        Row(bench, f"{runs:,} runs: GET /v1/runs?task=X&limit=50 median", "ms", ms(api_first),
            {"sqlite3 query": ms(sql_first)}, goal=("<=", 5.0), goal_text="<= 5 ms"),
        Row(bench, "  same, p99", "ms", ms(api_first, 99), {"sqlite3 query": ms(sql_first, 99)}),
        Row(bench, "  deep page (before=mid-history) median", "ms", ms(api_deep),
            {"sqlite3 query": ms(sql_deep)}),
        Row(bench, "  status=timed_out (1 %) median", "ms", ms(api_rare),
            {"sqlite3 query": ms(sql_rare)}),
        Row(bench, "`cronkeeper history X` whole process, median", "ms", ms(cli),
            {"python -c pass": ms(bare), "python -c 'import cronkeeper.cli'": ms(imports)},
            goal=("<=", 300.0), goal_text="<= 300 ms"),
        Row(bench, "`cronkeeper history X --json`, median", "ms", ms(cli_json),
            {"python -c pass": ms(bare)}),
        Row(bench, "database bytes per run", "B", size / runs, {}, goal_text="record",
            note=f"{size / 2**20:.0f} MiB for {runs:,} runs; "
                 + ", ".join(f"{k} {v / runs:.0f}" for k, v in list(breakdown.items())[:6])),
    ]
    if profile_text:
        print(profile_text)
    print_rows("history at scale", rows)
    path = write_result(bench, rows, quick=args.quick, out=args.out,
                        params={"runs": runs, "tasks": tasks, "queries": queries_n,
                                "cli_rounds": cli_rounds},
                        details={"build_s": build_s, "db_bytes": size,
                                 "db_bytes_after": size_after, "breakdown": breakdown,
                                 "daemon_ready_s": ready_s, "daemon_rss_mib": rss,
                                 "loadavg_before": load, "profile": profile_text})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

"""Benchmark: per-run overhead (SPEC 9) - runs of ``/bin/true`` per second end to end.

- API burst: one task (``command = ["/bin/true"]``, ``overlap = "allow"``) and
  ``max_concurrent_runs = C`` (default 16, the shipped default). M runs are asked for with
  ``POST /v1/tasks/burst/run`` over a few keep-alive connections; the clock stops when every
  run is over and committed (a ``GET /v1/runs`` after ``/v1/status`` shows nothing running
  or queued: that endpoint waits for the store's writer). Figures: recorded runs/s, and the
  daemon's CPU per run (utime + stime from /proc/PID/stat, which excludes children; this
  path includes parsing each HTTP request).
- Scheduled: K tasks ``every 1s`` for D seconds (no HTTP at all): the daemon's CPU per
  scheduled run, the figure the goal "scheduler CPU per run <= 0.5 ms" is about.
- Baseline "bare asyncio": the same M runs of ``/bin/true`` through
  ``asyncio.create_subprocess_exec`` (output piped and read) with a semaphore of C, under
  the pidfd child watcher: runs/s and the process's own CPU per run (``os.times()``,
  children excluded).

Usage: ``.venv/bin/python bench/overhead.py [--runs 3000] [--concurrency 16] [--quick]``
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
from pathlib import Path
from typing import Any

import httpx

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
    workdir,
    write_config,
    write_result,
)

TRUE = "/bin/true"


# ---- cronkeeper: API burst ---------------------------------------------------------------------------

async def _burst(sock: Path, runs: int, connections: int) -> float:
    """POST ``runs`` manual runs; return seconds until all are finished and committed."""
    transport = httpx.AsyncHTTPTransport(uds=str(sock))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(transport=transport, base_url="http://cronkeeper",
                                 limits=limits, timeout=60) as client:
        todo = iter(range(runs))

        async def worker() -> None:
            for _ in todo:
                response = await client.post("/v1/tasks/burst/run")
                if response.status_code != 202:
                    raise RuntimeError(f"run request answered {response.status_code}: "
                                       f"{response.text[:200]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status = (await client.get("/v1/status")).json()
            if status["running"] == 0 and status["queued"] == 0:
                break
            await asyncio.sleep(0.02)  # polling a condition, bounded by the deadline
        # /v1/runs waits for the store's writer: every run before it is committed.
        (await client.get("/v1/runs", params={"task": "burst", "limit": 1})).raise_for_status()
        return time.perf_counter() - start


def measure_burst(runs: int, concurrency: int, connections: int,
                  profile: Path | None) -> dict[str, Any]:
    with workdir("overhead") as wd:
        tasks = {"burst": {"command": [TRUE], "overlap": "allow"}}
        config = write_config(wd / "cronkeeper.toml", tasks, max_concurrent_runs=concurrency)
        daemon = BenchDaemon(config)
        daemon.start()
        try:
            # Warm-up: first spawn, first commits, imports done lazily by aiohttp.
            asyncio.run(_burst(daemon.socket, min(50, runs), connections))
            profiler = Profiler(profile / "overhead_burst.raw") if profile else None
            cpu0 = daemon.cpu()
            if profiler is not None:
                profiler.start(daemon.pid, 10)
            elapsed = asyncio.run(_burst(daemon.socket, runs, connections))
            cpu1 = daemon.cpu()
            rss = daemon.rss_kib() / 1024
        finally:
            daemon.stop()
        profile_text = profiler.finish() if profiler is not None else ""
        with sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True) as conn:
            statuses = dict(conn.execute(
                "SELECT status, count(*) FROM run GROUP BY status").fetchall())
    ok = statuses.get("succeeded", 0) - min(50, runs)
    cpu = cpu1 - cpu0
    return {"runs": runs, "succeeded": ok, "statuses": statuses, "elapsed_s": elapsed,
            "runs_per_s": runs / elapsed, "cpu_s": cpu, "cpu_ms_per_run": cpu / runs * 1000,
            "rss_mib": rss, "profile": profile_text}


# ---- cronkeeper: scheduled ---------------------------------------------------------------------------

def measure_scheduled(tasks_n: int, duration: int, warmup: int,
                      profile: Path | None) -> dict[str, Any]:
    with workdir("overhead-sched") as wd:
        tasks = {f"t{i:04d}": {"schedule": "every 1s", "command": [TRUE]}
                 for i in range(tasks_n)}
        config = write_config(wd / "cronkeeper.toml", tasks,
                              max_concurrent_runs=max(16, tasks_n))
        daemon = BenchDaemon(config)
        daemon.start()
        profiler = Profiler(profile / "overhead_scheduled.raw") if profile else None
        try:
            t0 = math.ceil(time.time()) + warmup
            t1 = t0 + duration
            sleep_until(t0 - 0.5)
            cpu0 = daemon.cpu()
            if profiler is not None:
                profiler.start(daemon.pid, duration)
            sleep_until(t1 - 0.5)
            cpu1 = daemon.cpu()
            sleep_until(t1 + 2)
        finally:
            daemon.stop()
        profile_text = profiler.finish() if profiler is not None else ""
        with sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True) as conn:
            ran = conn.execute(
                "SELECT count(*) FROM run WHERE scheduled_for >= ? AND scheduled_for < ? "
                "AND started_at IS NOT NULL", (t0, t1)).fetchone()[0]
    cpu = cpu1 - cpu0
    return {"tasks": tasks_n, "duration": duration, "ran": ran, "cpu_s": cpu,
            "cpu_ms_per_run": cpu / ran * 1000 if ran else math.nan, "profile": profile_text}


# ---- baseline ------------------------------------------------------------------------------------------

async def bare_burst(runs: int, concurrency: int) -> dict[str, Any]:
    if pidfd_supported() and sys.version_info < (3, 12):
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
    slots = asyncio.Semaphore(concurrency)

    async def one() -> int:
        async with slots:
            proc = await asyncio.create_subprocess_exec(
                TRUE, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            await proc.communicate()
            return proc.returncode or 0

    await asyncio.gather(*(one() for _ in range(min(50, runs))))  # same warm-up
    t = os.times()
    cpu0 = t.user + t.system
    start = time.perf_counter()
    codes = await asyncio.gather(*(one() for _ in range(runs)))
    elapsed = time.perf_counter() - start
    t = os.times()
    cpu = t.user + t.system - cpu0
    return {"runs": runs, "failed": sum(1 for c in codes if c), "elapsed_s": elapsed,
            "runs_per_s": runs / elapsed, "cpu_s": cpu, "cpu_ms_per_run": cpu / runs * 1000}


def run_bare(runs: int, concurrency: int) -> dict[str, Any]:
    with workdir("overhead-bare") as wd:
        out = wd / "result.json"
        done = subprocess.run([PYTHON, __file__, "--child", "--runs", str(runs),
                               "--concurrency", str(concurrency), "--out", str(out)],
                              timeout=300, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"bare baseline failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(parser)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--scheduled", default="500:10", help="TASKS:SECONDS scheduled phase")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.out.write_text(json.dumps(asyncio.run(bare_burst(args.runs, args.concurrency))))
        return
    runs = 200 if args.quick else args.runs
    sched_n, _, sched_d = args.scheduled.partition(":")
    sched = (50, 3) if args.quick else (int(sched_n), int(sched_d or 10))

    print(f"overhead: API burst of {runs} runs, max_concurrent_runs {args.concurrency} ...",
          flush=True)
    load = load_average()
    burst = measure_burst(runs, args.concurrency, args.connections, args.profile)
    print(f"  cronkeeper: {burst['runs_per_s']:.0f} runs/s, "
          f"{burst['cpu_ms_per_run']:.2f} ms CPU/run", flush=True)
    bare = run_bare(runs, args.concurrency)
    print(f"  bare asyncio: {bare['runs_per_s']:.0f} runs/s, "
          f"{bare['cpu_ms_per_run']:.2f} ms CPU/run", flush=True)
    print(f"overhead: {sched[0]} tasks every 1s for {sched[1]} s ...", flush=True)
    scheduled = measure_scheduled(sched[0], sched[1], 1 if args.quick else 2, args.profile)
    for name in ("profile",):
        for part in (burst, scheduled):
            if part.get(name):
                print(part[name])

    bench = "overhead"
    rows = [
        Row(bench, f"API burst {runs:,} x /bin/true: runs/s end to end", "runs/s",
            burst["runs_per_s"], {"bare asyncio": bare["runs_per_s"]}, goal_text="record",
            note=f"max_concurrent_runs {args.concurrency}; {burst['succeeded']} succeeded"),
        Row(bench, "API burst: daemon CPU per run (incl. HTTP request)", "ms",
            burst["cpu_ms_per_run"], {"bare asyncio": bare["cpu_ms_per_run"]},
            goal_text="(info: includes the API request)"),
        Row(bench, f"scheduled {sched[0]} tasks x {sched[1]} s: scheduler CPU per run", "ms",
            scheduled["cpu_ms_per_run"], {"bare asyncio": bare["cpu_ms_per_run"]},
            goal=("<=", 0.5), goal_text="<= 0.5 ms"),
    ]
    print_rows("per-run overhead", rows)
    path = write_result(bench, rows, quick=args.quick, out=args.out,
                        params={"runs": runs, "concurrency": args.concurrency,
                                "connections": args.connections, "scheduled": sched},
                        details={"burst": burst, "bare_asyncio": bare, "scheduled": scheduled,
                                 "loadavg_before": load})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

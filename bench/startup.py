"""Benchmark: start and reload with 10,000 tasks (SPEC 9).

The configuration: 10,000 tasks on varied 5-field cron schedules in five time zones (every
7th with a timeout and retries), none due within the next month, so nothing fires while
start-up and reload are measured.

- start: time from spawning ``cronkeeper daemon`` to ``GET /v1/status`` answering 200 on the
  socket (polled every 5 ms with a raw socket), on a fresh database ("first start": 10,000
  task-state rows are created) and on an existing one ("restart"); median of 3 each;
- reload: ``POST /v1/reload`` round trip on a keep-alive connection, with the file unchanged
  and with 100 tasks' schedules changed (alternating two variants); median of 3 each.
- Baseline "APScheduler 3": a process that reads the same TOML with ``tomllib``, builds
  ``CronTrigger.from_crontab(expr, timezone)`` for each task, adds the 10,000 jobs to an
  ``AsyncIOScheduler`` and starts it (spawn to its "ready" line); its reload re-reads the
  file, rebuilds every trigger and reschedules the changed jobs. Also shown: importing
  ``cronkeeper.daemon`` alone (``python -c``), the floor under the daemon's start.

Usage: ``.venv/bin/python bench/startup.py [--tasks 10000] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
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
    median,
    print_rows,
    workdir,
    write_config,
    write_result,
)
from idle import idle_expressions  # noqa: E402

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]


def make_tasks(count: int, variant: int = 0, changed: int = 0) -> dict[str, dict[str, Any]]:
    """``count`` tasks; with ``changed``, the first ``changed`` get a ``variant`` minute."""
    exprs = idle_expressions(count, datetime.now(UTC), seed=5)
    rng = random.Random(6)
    tasks: dict[str, dict[str, Any]] = {}
    for i, expr in enumerate(exprs):
        if i < changed:
            fields = expr.split()
            minute = (variant * 7 + i) % 60  # "a,b": a shape the originals never have
            fields[0] = f"{minute},{(minute + 30) % 60}"
            expr = " ".join(fields)
        task: dict[str, Any] = {"schedule": expr, "command": f"echo task {i}"}
        zone = rng.choice(ZONES)
        if zone != "UTC":
            task["timezone"] = zone
        if i % 7 == 0:
            task["timeout"] = "5m"
            task["retries"] = 2
        tasks[f"task-{i:05d}"] = task
    return tasks


def time_start(config: Path, *, fresh: bool, profile: Path | None = None) -> float:
    daemon = BenchDaemon(config)
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{daemon.db}{suffix}").unlink(missing_ok=True)
    profiler = None
    try:
        if profile is not None:
            # py-spy needs the pid: start without waiting, attach, then wait.
            daemon.start(wait=False)
            profiler = Profiler(profile / f"startup_{'fresh' if fresh else 'restart'}.raw",
                                rate=500)
            profiler.start(daemon.pid, 4)
            return daemon.wait_ready(poll=0.005)
        return daemon.start(poll=0.005)
    finally:
        daemon.stop()
        if profiler is not None:
            print(profiler.finish())


def time_reloads(config: Path, tasks_n: int, rounds: int,
                 profile: Path | None = None) -> dict[str, list[float]]:
    daemon = BenchDaemon(config)
    daemon.start()
    out: dict[str, list[float]] = {"unchanged": [], "changed_100": []}
    transport = httpx.HTTPTransport(uds=str(daemon.socket))
    profiler = Profiler(profile / "reload.raw", rate=500) if profile else None
    try:
        with httpx.Client(transport=transport, base_url="http://cronkeeper",
                          timeout=120) as client:
            client.get("/v1/status").raise_for_status()
            if profiler is not None:
                profiler.start(daemon.pid, 3 * rounds + 3)
            for _ in range(rounds):
                start = time.perf_counter()
                answer = client.post("/v1/reload")
                out["unchanged"].append(time.perf_counter() - start)
                answer.raise_for_status()
            for r in range(rounds):
                write_config(config, make_tasks(tasks_n, variant=r + 1, changed=100))
                start = time.perf_counter()
                answer = client.post("/v1/reload")
                out["changed_100"].append(time.perf_counter() - start)
                answer.raise_for_status()
                changed = len(answer.json()["changed"])
                if changed != 100:
                    raise RuntimeError(f"reload reported {changed} changed tasks, not 100")
    finally:
        daemon.stop()
        if profiler is not None:
            print(profiler.finish())
    return out


APS_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys, time, tomllib
    from zoneinfo import ZoneInfo
    from datetime import timezone
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    def job():
        pass

    def load(path):
        with open(path, "rb") as f:
            tasks = tomllib.load(f)["tasks"]
        out = {}
        for name, task in tasks.items():
            key = (task["schedule"], task.get("timezone", "UTC"))
            out[name] = (key, CronTrigger.from_crontab(key[0], timezone=ZoneInfo(key[1])))
        return out

    async def main():
        jobs = load(sys.argv[1])
        scheduler = AsyncIOScheduler(timezone=timezone.utc)
        for name, (_, trigger) in jobs.items():
            scheduler.add_job(job, trigger, id=name)
        scheduler.start()
        print("ready", flush=True)
        timings = {"unchanged": [], "changed_100": []}
        steps = () if sys.argv[4] == "start-only" else (
                          ("unchanged", sys.argv[1]), ("unchanged", sys.argv[1]),
                          ("unchanged", sys.argv[1]), ("changed_100", sys.argv[2]),
                          ("changed_100", sys.argv[3]), ("changed_100", sys.argv[2]))
        for kind, path in steps:
            start = time.perf_counter()
            new = load(path)
            for name, (key, trigger) in new.items():
                if jobs[name][0] != key:
                    scheduler.reschedule_job(name, trigger=trigger)
            jobs = new
            timings[kind].append(time.perf_counter() - start)
        print(json.dumps(timings), flush=True)
        scheduler.shutdown(wait=False)

    asyncio.run(main())
""")


def aps_baseline(folder: Path, tasks_n: int, rounds: int) -> dict[str, Any]:
    paths = []
    for variant in (0, 1, 2):
        path = folder / f"aps-{variant}.toml"
        write_config(path, make_tasks(tasks_n, variant=variant, changed=100 if variant else 0))
        paths.append(str(path))
    starts, reloads = [], None
    for r in range(rounds):
        spawned = time.perf_counter()
        mode = "reload" if r == 0 else "start-only"  # reloads take seconds: once is enough
        proc = subprocess.Popen([PYTHON, "-c", APS_SCRIPT, *paths, mode],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        starts.append(time.perf_counter() - spawned)
        if line.strip() != "ready":
            proc.kill()
            raise RuntimeError("APScheduler baseline did not start")
        tail, _ = proc.communicate(timeout=300)
        if r == 0:
            reloads = json.loads(tail.strip().splitlines()[-1])
    return {"start": starts, "reload": reloads}


def import_floor(rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([PYTHON, "-c", "import cronkeeper.daemon"], check=True, timeout=60)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(parser)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tasks_n = 1000 if args.quick else args.tasks
    rounds = 1 if args.quick else args.rounds

    print(f"startup: {tasks_n:,} tasks ...", flush=True)
    load = load_average()
    with workdir("startup") as wd:
        config = write_config(wd / "cronkeeper.toml", make_tasks(tasks_n))
        fresh = [time_start(config, fresh=True, profile=args.profile if r == 0 else None)
                 for r in range(rounds)]
        restart = [time_start(config, fresh=False, profile=args.profile if r == 0 else None)
                   for r in range(rounds)]
        print(f"  cronkeeper start: first {median(fresh) * 1000:.0f} ms, restart "
              f"{median(restart) * 1000:.0f} ms", flush=True)
        reloads = time_reloads(config, tasks_n, rounds, args.profile)
        aps = aps_baseline(wd, tasks_n, rounds)
        floor = import_floor(rounds)
        toml_kib = config.stat().st_size / 1024

    def ms(values: list[float]) -> float:
        return median(values) * 1000

    bench = "startup"
    rows = [
        Row(bench, f"{tasks_n:,} tasks: start, fresh database (spawn -> /v1/status)", "ms",
            ms(fresh), {"APScheduler 3": ms(aps["start"]),
                        "python -c 'import cronkeeper.daemon'": ms(floor)},
            goal=("<=", 500.0), goal_text="<= 500 ms"),
        Row(bench, f"{tasks_n:,} tasks: restart, existing database", "ms", ms(restart),
            {"APScheduler 3": ms(aps["start"]),
             "python -c 'import cronkeeper.daemon'": ms(floor)},
            goal=("<=", 500.0), goal_text="<= 500 ms"),
        Row(bench, f"{tasks_n:,} tasks: POST /v1/reload, unchanged", "ms",
            ms(reloads["unchanged"]), {"APScheduler 3": ms(aps["reload"]["unchanged"])},
            goal=("<=", 500.0), goal_text="<= 500 ms"),
        Row(bench, f"{tasks_n:,} tasks: POST /v1/reload, 100 changed", "ms",
            ms(reloads["changed_100"]), {"APScheduler 3": ms(aps["reload"]["changed_100"])},
            goal=("<=", 500.0), goal_text="<= 500 ms"),
    ]
    print_rows("start and reload", rows)
    path = write_result(bench, rows, quick=args.quick, out=args.out,
                        params={"tasks": tasks_n, "rounds": rounds,
                                "toml_kib": round(toml_kib)},
                        details={"fresh_s": fresh, "restart_s": restart, "reload_s": reloads,
                                 "apscheduler": aps, "import_floor_s": floor,
                                 "loadavg_before": load})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

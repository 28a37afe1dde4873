"""Benchmark: validate 10,000 tasks and compute each one's next run (SPEC 9, "start with 10,000 tasks").

Prints, for a generated 10,000-task cronkeeper.toml in a temporary folder:

- in-process: ``load_config`` (TOML parse + validation + schedule parsing) and computing every
  task's next run, best of several rounds;
- ``cronkeeper check`` as a whole process (interpreter start, imports, output), best of
  several runs; the goal is under 1 s;
- the baseline measured in the same run on the same expressions: croniter (parse + get_next)
  and APScheduler 3's ``CronTrigger.from_crontab`` (+ get_next_fire_time).

Usage: ``.venv/bin/python bench/check_10k.py [--tasks N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cronkeeper.config import load_config  # noqa: E402

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
WEEKDAYS = ["*", "mon-fri", "1-5", "0", "sun", "sat,sun", "1,3,5"]


def expressions(count: int, seed: int = 1) -> list[str]:
    """``count`` 5-field cron expressions of the shapes people write, mostly distinct."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        shape = rng.randrange(6)
        minute = rng.randrange(60)
        hour = rng.randrange(24)
        if shape == 0:
            out.append(f"{minute} {hour} * * *")
        elif shape == 1:
            out.append(f"*/{rng.choice([2, 5, 10, 15, 20, 30])} * * * {rng.choice(WEEKDAYS)}")
        elif shape == 2:
            out.append(f"{minute} {hour}-{min(23, hour + rng.randrange(1, 8))} * * {rng.choice(WEEKDAYS)}")
        elif shape == 3:
            out.append(f"{minute} {hour} {rng.randrange(1, 29)} * *")
        elif shape == 4:
            out.append(f"{minute},{(minute + 30) % 60} {hour} 1,15 {rng.randrange(1, 13)} *")
        else:
            out.append(f"{minute} {hour} * {rng.choice(['jan-jun', '*/3', '*'])} {rng.choice(WEEKDAYS)}")
    return out


def write_config(folder: Path, exprs: list[str], zones: list[str]) -> Path:
    tasks = {}
    for index, (expr, zone) in enumerate(zip(exprs, zones, strict=True)):
        task: dict[str, object] = {"schedule": expr, "command": f"echo task {index}"}
        if zone != "UTC":
            task["timezone"] = zone
        if index % 7 == 0:
            task["timeout"] = "5m"
            task["retries"] = 2
        tasks[f"task-{index:05d}"] = task
    path = folder / "cronkeeper.toml"
    path.write_text(tomli_w.dumps({"daemon": {"timezone": "UTC", "socket": "ck.sock",
                                              "database": "ck.db"}, "tasks": tasks}))
    return path


def best(rounds: int, func: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def check_command(config: Path) -> tuple[list[str], str]:
    script = ROOT / ".venv" / "bin" / "cronkeeper"
    probe = subprocess.run([sys.executable, "-c", "import cronkeeper.cli"], cwd=ROOT,
                           capture_output=True)
    if probe.returncode == 0:
        if script.exists():
            return [str(script), "check", "--config", str(config)], "cronkeeper check"
        return [sys.executable, "-m", "cronkeeper.cli", "check", "--config", str(config)], \
            "python -m cronkeeper.cli check"
    # cli.py not there yet: the same command in a minimal click group.
    code = ("import click\nfrom cronkeeper.cli_options import global_options\n"
            "from cronkeeper.cli_offline import check\n"
            "@click.group()\n@global_options\ndef g():\n    pass\n"
            "g.add_command(check)\ng()\n")
    return [sys.executable, "-c", code, "check", "--config", str(config)], \
        "check via a minimal click group (cronkeeper.cli not importable)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(2)
    exprs = expressions(args.tasks)
    zones = [rng.choice(ZONES) for _ in exprs]
    now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    folder = Path(tempfile.mkdtemp(prefix="cronkeeper-bench-"))
    try:
        config_path = write_config(folder, exprs, zones)
        size = config_path.stat().st_size
        print(f"{args.tasks} tasks, {len(set(exprs))} distinct expressions, {size / 1024:.0f} KiB "
              f"of TOML; best of {args.rounds} rounds; Python {sys.version.split()[0]}")

        # Each round starts cold: schedule.py caches parses, which would flatter repeats.
        from cronkeeper import schedule as schedule_module
        from cronkeeper import units as units_module

        def cold_load() -> object:
            schedule_module._parse.cache_clear()
            units_module._parse_duration_text.cache_clear()
            return load_config(config_path)

        load_s = best(args.rounds, cold_load)
        config = load_config(config_path)
        from cronkeeper.config import parse_config
        from cronkeeper.config import tomllib as parser_module

        data = parser_module.loads(config_path.read_text())
        # schedule.py's parse cache is warm now: this is config.py's own validation cost.
        validate_s = best(args.rounds, lambda: parse_config(data, base_dir=folder, path=config_path))
        tasks = list(config.tasks.values())
        next_s = best(args.rounds, lambda: [t.schedule.next_after(now) for t in tasks if t.schedule])

        import tomllib

        from cronkeeper.config import tomllib as config_toml  # tomli when installed

        text = config_path.read_text()
        toml_s = best(args.rounds, lambda: config_toml.loads(text))
        stdlib_s = best(args.rounds, lambda: tomllib.loads(text))
        parser = config_toml.__name__

        command, label = check_command(config_path)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc_times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            done = subprocess.run(command, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
            proc_times.append(time.perf_counter() - start)
            if done.returncode != 0:
                print(f"check failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
                break
        empty = folder / "empty.toml"
        empty.write_text("")
        bare_cmd = [c if c != str(config_path) else str(empty) for c in command]
        bare_s = best(args.rounds, lambda: subprocess.run(bare_cmd, cwd=folder, env=env,
                                                          stdout=subprocess.DEVNULL))

        print("\ncronkeeper")
        print(f"  TOML parse alone ({parser:<7})         {toml_s * 1000:8.1f} ms   "
              f"(stdlib tomllib: {stdlib_s * 1000:.1f} ms)")
        print(f"  load_config (parse+validate)         {load_s * 1000:8.1f} ms")
        print(f"    of which validation in config.py   {validate_s * 1000:8.1f} ms   "
              "(the rest: TOML parse and schedule.py parsing)")
        print(f"  next run of every task               {next_s * 1000:8.1f} ms")
        print(f"  load + next runs                     {(load_s + next_s) * 1000:8.1f} ms")
        print(f"  process: {label}")
        print(f"    10,000 tasks (best / median)       {min(proc_times) * 1000:8.1f} / "
              f"{statistics.median(proc_times) * 1000:.1f} ms   (goal: < 1000 ms)")
        print(f"    empty config (start-up cost)       {bare_s * 1000:8.1f} ms")

        print("\nbaseline, same expressions and zones")
        try:
            from croniter import croniter

            def with_croniter() -> None:
                for expr, zone in zip(exprs, zones, strict=True):
                    croniter(expr, now.astimezone(ZoneInfo(zone))).get_next(datetime)

            cron_s = best(args.rounds, with_croniter)
            print(f"  croniter parse + get_next            {cron_s * 1000:8.1f} ms   "
                  f"(cronkeeper load+next is {(load_s + next_s) / cron_s:.2f}x)")
        except ImportError:
            print("  croniter not installed")
        try:
            from apscheduler.triggers.cron import CronTrigger

            def with_aps() -> None:
                for expr, zone in zip(exprs, zones, strict=True):
                    CronTrigger.from_crontab(expr, timezone=zone).get_next_fire_time(None, now)

            aps_s = best(args.rounds, with_aps)
            print(f"  APScheduler CronTrigger.from_crontab {aps_s * 1000:8.1f} ms   "
                  f"(cronkeeper load+next is {(load_s + next_s) / aps_s:.2f}x)")
        except ImportError:
            print("  APScheduler not installed")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: idle cost (SPEC 9) - 1,000 tasks loaded, nothing due.

Three processes run side by side over the same window (idle processes barely compete for
the CPU, and CPU time is counted per process):

- cronkeeper: the daemon with 1,000 tasks on varied 5-field cron schedules that are not due
  within the window (fixed day of month in a month that is neither this one nor the next);
- baseline "Debian cron": ``cron -f`` with the equivalent ``/etc/cron.d``-style file. It runs
  in a private mount namespace (``unshare -m``) with its own ``/etc/cron.d``,
  ``/etc/crontab``, spool and ``/run``, so the host's cron set-up is neither read nor
  touched. ``apt-get install -y cron`` first if it is missing (as root);
- baseline "APScheduler 3": an idle ``AsyncIOScheduler`` holding the same 1,000 schedules as
  ``CronTrigger.from_crontab`` jobs.

After start-up settles, CPU seconds (utime + stime from /proc) over a 60 s window (quick: 10 s,
scaled to a minute) and RSS at the end (peak of samples every few seconds) are compared.
Details add the RSS of a bare interpreter after importing each big dependency, which is
where an idle daemon's memory goes.

Usage: ``.venv/bin/python bench/idle.py [--window 60] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CLK_TCK,
    PYTHON,
    BenchDaemon,
    Profiler,
    Row,
    common_args,
    load_average,
    print_rows,
    proc_cpu_ticks,
    proc_status_kib,
    workdir,
    write_config,
    write_result,
)

CRON = "/usr/sbin/cron"


def idle_expressions(count: int, now: datetime, seed: int = 3) -> list[str]:
    """``count`` varied cron expressions none of which fires within the next month."""
    rng = random.Random(seed)
    avoid = {now.month, now.month % 12 + 1}
    months = [m for m in range(1, 13) if m not in avoid]
    out = []
    for _ in range(count):
        month = rng.choice(months)
        shape = rng.randrange(3)
        minute, hour, day = rng.randrange(60), rng.randrange(24), rng.randrange(1, 29)
        if shape == 0:
            out.append(f"{minute} {hour} {day} {month} *")
        elif shape == 1:
            out.append(f"{minute} {hour},{(hour + 12) % 24} {day} {month} *")
        else:
            out.append(f"*/{rng.choice([5, 10, 15, 30])} {hour} {day},{day + 1} {month} *")
    return out


# ---- Debian cron in a private mount namespace ---------------------------------------------------------

def ensure_cron() -> str | None:
    """Path of Debian's cron, installing it when missing; None (with a reason printed) if not."""
    if Path(CRON).exists():
        return CRON
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print("  Debian cron is not installed and cannot be installed here (needs root+apt)")
        return None
    print("  installing Debian cron (apt-get install -y cron) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", "install", "-y", "-q", "cron"], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not Path(CRON).exists():
        print(f"  apt-get install cron failed: {done.stderr[-500:]}")
        return None
    return CRON


def start_cron(folder: Path, exprs: list[str]) -> subprocess.Popen[bytes] | None:
    cron = ensure_cron()
    if cron is None or shutil.which("unshare") is None:
        return None
    crond, spool, run = folder / "cron.d", folder / "crontabs", folder / "run"
    for d in (crond, spool, run):
        d.mkdir()
    spool.chmod(0o1730)
    crontab = folder / "crontab"
    crontab.write_text("SHELL=/bin/sh\nPATH=/usr/bin:/bin\n")
    # cron ignores /etc/cron.d files whose names hold dots, or that others may write.
    table = crond / "cronkeeperbench"
    table.write_text("".join(f"{e} root /bin/true\n" for e in exprs))
    for f in (crontab, table):
        f.chmod(0o644)
    script = (f"mount --bind {crond} /etc/cron.d && mount --bind {spool} "
              f"/var/spool/cron/crontabs && mount --bind {crontab} /etc/crontab && "
              f"mount --bind {run} /run && exec {cron} -f")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"  cron exited: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
            return None
        try:
            if Path(f"/proc/{proc.pid}/comm").read_text().strip() == "cron":
                return proc
        except OSError:
            pass
        time.sleep(0.05)  # waiting for exec, bounded by the deadline
    proc.kill()
    proc.wait()
    return None


# ---- APScheduler ------------------------------------------------------------------------------------------

APS_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from datetime import timezone
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    def job():
        pass

    async def main():
        scheduler = AsyncIOScheduler(timezone=timezone.utc)
        for i, expr in enumerate(open(sys.argv[1]).read().split("\\n")):
            if expr:
                scheduler.add_job(job, CronTrigger.from_crontab(expr, timezone=timezone.utc),
                                  id=f"t{i}")
        scheduler.start()
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


def start_aps(folder: Path, exprs: list[str]) -> subprocess.Popen[str]:
    (folder / "exprs.txt").write_text("\n".join(exprs))
    proc = subprocess.Popen([PYTHON, "-c", APS_SCRIPT, str(folder / "exprs.txt")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ready" (bounded: the script prints it or exits)
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError("APScheduler baseline did not start")
    return proc


def import_rss() -> dict[str, float]:
    """RSS (MiB) of a fresh interpreter after importing, cumulatively, each big dependency
    of the daemon: where an idle daemon's memory goes before it holds any task."""
    steps = [
        ("python, nothing imported", ""),
        ("+ asyncio", "import asyncio"),
        ("+ peewee (sqlite3)", "import peewee"),
        ("+ apscheduler (AsyncIOScheduler)", "import apscheduler.schedulers.asyncio"),
        ("+ prometheus_client", "import prometheus_client"),
        ("+ aiohttp.web (pulls in aiohttp's client, ssl)", "import aiohttp.web"),
        ("+ cronkeeper.daemon (the rest)", "import cronkeeper.daemon"),
    ]
    out = {}
    code = ""
    for name, line in steps:
        code += line + "\n"
        probe = (f"{code}for l in open('/proc/self/status'):\n"
                 "    if l.startswith('VmRSS:'): print(int(l.split()[1]))")
        done = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
        if done.returncode == 0 and done.stdout.strip():
            out[name] = int(done.stdout.split()[-1]) / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(parser)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    window = 10.0 if args.quick else args.window
    settle = 2.0 if args.quick else args.settle
    exprs = idle_expressions(args.tasks, datetime.now(UTC))

    print(f"idle: {args.tasks} tasks, nothing due; {window:.0f} s window ...", flush=True)
    load = load_average()
    with workdir("idle") as wd:
        config = write_config(wd / "cronkeeper.toml",
                              {f"t{i:04d}": {"schedule": e, "command": ["/bin/true"]}
                               for i, e in enumerate(exprs)})
        daemon = BenchDaemon(config)
        cron: subprocess.Popen[bytes] | None = None
        aps: subprocess.Popen[str] | None = None
        cron_dir = wd / "cron"
        cron_dir.mkdir()
        profiler = Profiler(args.profile / "idle.raw") if args.profile else None
        try:
            daemon.start()
            cron = start_cron(cron_dir, exprs)
            aps = start_aps(wd, exprs)
            time.sleep(settle)  # let start-up work (imports, first commits) finish
            pids = {"cronkeeper": daemon.pid, "APScheduler 3": aps.pid}
            if cron is not None:
                pids["Debian cron"] = cron.pid
            cpu0 = {k: proc_cpu_ticks(p) for k, p in pids.items()}
            began = time.monotonic()
            rss_peak = dict.fromkeys(pids, 0)
            if profiler is not None:
                profiler.start(daemon.pid, window, idle=False)
            end = time.monotonic() + window
            while True:  # sample RSS every few seconds; the window ends on time
                for k, p in pids.items():
                    rss_peak[k] = max(rss_peak[k], proc_status_kib(p, "VmRSS"))
                left = end - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(5.0, left))
            cpu1 = {k: proc_cpu_ticks(p) for k, p in pids.items()}
            elapsed = time.monotonic() - began
            rss_end = {k: proc_status_kib(p, "VmRSS") for k, p in pids.items()}
            hwm = {k: proc_status_kib(p, "VmHWM") for k, p in pids.items()}
        finally:
            daemon.stop()
            for proc in (cron, aps):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        profile_text = profiler.finish() if profiler is not None else ""
        log_tail = daemon.log()[-2000:]

    ticks = {k: cpu1[k] - cpu0[k] for k in pids}
    per_min = {k: ticks[k] / CLK_TCK * 60 / elapsed for k in pids}
    rss = {k: rss_end[k] / 1024 for k in pids}
    baseline_names = [k for k in ("Debian cron", "APScheduler 3") if k in pids]
    bench = "idle"
    rows = [
        Row(bench, f"idle {args.tasks:,} tasks: CPU per minute", "s/min", per_min["cronkeeper"],
            {k: per_min[k] for k in baseline_names}, goal=("<=", 0.01), goal_text="<= 0.01 s/min",
            note=f"{ticks['cronkeeper']} tick(s) of {1 / CLK_TCK:g} s in {elapsed:.1f} s "
                 "(/proc utime+stime): the window resolves one tick per minute"),
        Row(bench, f"idle {args.tasks:,} tasks: RSS", "MiB", rss["cronkeeper"],
            {k: rss[k] for k in baseline_names}, goal=("<=", 40.0), goal_text="<= 40 MiB",
            note=f"peak sampled {rss_peak['cronkeeper'] / 1024:.1f} MiB, "
                 f"VmHWM {hwm['cronkeeper'] / 1024:.1f} MiB"),
    ]
    imports = import_rss()
    if profile_text:
        print(profile_text)
    print_rows("idle", rows)
    print("\n  RSS of a fresh interpreter after importing:")
    for name, mib in imports.items():
        print(f"    {name:<50} {mib:6.1f} MiB")
    path = write_result(bench, rows, quick=args.quick, out=args.out,
                        params={"tasks": args.tasks, "window_s": window, "settle_s": settle},
                        details={"cpu_per_min": per_min, "cpu_ticks": ticks, "elapsed_s": elapsed, "rss_mib": rss, "hwm_kib": hwm,
                                 "rss_peak_kib": rss_peak, "import_rss_mib": imports,
                                 "cron_available": cron is not None, "loadavg_before": load,
                                 "profile": profile_text, "daemon_log_tail": log_tail})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

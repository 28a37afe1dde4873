"""Run every benchmark (SPEC 9) and write the results table: ``make bench``.

Each benchmark runs as its own process (``bench/<name>.py``), prints its figures next to its
baselines', and writes a JSON result; this script gathers them into
``bench/results/latest.md`` (a markdown table headed by the date and the machine) and
``bench/results/latest.json``. ``--quick`` runs every benchmark at smoke-test sizes in well
under a minute and writes ``latest-quick.*`` instead, leaving the real table alone.

If ``bench/README.md`` (or the top-level ``README.md``) holds the markers
``<!-- bench:latest:start -->`` and ``<!-- bench:latest:end -->``, the table between them is
replaced with the new one (full runs only).

The whole run is bounded: each benchmark has a timeout, and the full suite takes about
10 minutes on a 2-core machine (plus ~1.5 minutes the first time, to build the
1,000,000-run history database, which is cached under ``bench/.cache/``).

Usage: ``.venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [--wait-quiet S]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH,
    PYTHON,
    RESULTS,
    ROOT,
    fmt,
    fmt_ratio,
    machine_info,
)

# name -> (script, full-run arguments, timeout in seconds); run in this order.
BENCHMARKS: dict[str, tuple[str, list[str], float]] = {
    "startup": ("startup.py", [], 240),
    "idle": ("idle.py", [], 240),
    "overhead": ("overhead.py", [], 240),
    "history": ("history.py", [], 420),
    "fire_precision": ("fire_precision.py", [], 420),
}
CHECK_10K = ("check_10k.py", ["--rounds", "3"], 180)  # text output only, no JSON
MARK_START, MARK_END = "<!-- bench:latest:start -->", "<!-- bench:latest:end -->"


def code_version() -> str:
    """The commit measured, and whether cronkeeper/ had uncommitted changes (read-only git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "cronkeeper"], cwd=ROOT,
                               text=True, capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes in cronkeeper/' if dirty else ''}"


def machine_busy(interval: float = 1.0) -> float:
    """Share of the machine's CPU time that was busy over ``interval`` seconds (0..1)."""

    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    total0, idle0 = read()
    time.sleep(interval)  # a sampling interval, not a wait for a condition
    total1, idle1 = read()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(limit_s: float, threshold: float = 0.3) -> float:
    """Wait (at most ``limit_s``) until the machine is less than ``threshold`` busy."""
    deadline = time.monotonic() + limit_s
    busy = machine_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = machine_busy(2.0)
    return busy


def run_one(name: str, script: str, extra: list[str], timeout: float, quick: bool,
            out: Path | None) -> tuple[int, float, str]:
    argv = [PYTHON, str(BENCH / script), *extra]
    if quick:
        argv.append("--quick")
    if out is not None:
        argv += ["--out", str(out)]
    print(f"\n######## {name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    lines: list[str] = []
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:  # ends when the child exits (or is killed by the timer)
            print(line, end="", flush=True)
            lines.append(line)
            if time.monotonic() - started > timeout:
                proc.kill()
                lines.append(f"\n(killed after {timeout:.0f} s)\n")
                break
        code = proc.wait(max(1.0, timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
        lines.append(f"\n(killed after {timeout:.0f} s)\n")
    return code, time.monotonic() - started, "".join(lines)


def md_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| benchmark | figure | cronkeeper | baseline(s) [cronkeeper / baseline] "
             "| goal | result |", "|---|---|---|---|---|---|"]
    for result in results:
        for row in result.get("rows", []):
            bases = "; ".join(
                f"{name} {fmt(value, row['unit'])} [{fmt_ratio(row['ratios'].get(name))}]"
                for name, value in row["baselines"].items()) or "-"
            status = {"PASS": "PASS", "MISS": "**MISS**"}.get(row["status"], "")
            figure = row["figure"].replace("|", "\\|")
            lines.append(f"| {row['bench']} | {figure} | {fmt(row['value'], row['unit'])} "
                         f"| {bases} | {row['goal_text']} | {status} |")
    return lines


def render_markdown(info: dict[str, Any], results: list[dict[str, Any]],
                    failures: dict[str, str], check_text: str, quick: bool,
                    timings: dict[str, float]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    m = info
    out = [
        f"## Benchmark results{' (quick smoke run: sizes too small to judge)' if quick else ''}",
        "",
        f"Run {when} with `make bench` (`bench/run_all.py`), code {m.get('code', '?')}, on: "
        f"{m['nproc']} CPUs "
        f"(`nproc`), {m['cpu']}, kernel {m['kernel']}, {m['os']}, Python {m['python']}, "
        f"{m['mem_total_mib']:,} MiB RAM. Load average before the run: "
        f"{', '.join(str(x) for x in m['loadavg'])}; machine busy before each benchmark "
        f"(other work included): "
        + ", ".join(f"{r['bench']} {r.get('busy_before', 0) * 100:.0f}%" for r in results)
        + f". Total {sum(timings.values()) / 60:.1f} min.",
        "",
        *md_table(results),
        "",
    ]
    missed = [(r["bench"], row) for r in results for row in r.get("rows", [])
              if row["status"] == "MISS"]
    if missed:
        out += ["Goals missed:", ""]
        for bench, row in missed:
            out.append(f"- {bench}: {row['figure']} = {fmt(row['value'], row['unit'])} "
                       f"(goal {row['goal_text']})")
        out.append("")
    notes = [(r["bench"], row) for r in results for row in r.get("rows", []) if row.get("note")]
    if notes:
        out += ["Notes:", ""]
        out += [f"- {bench}: {row['figure']}: {row['note']}" for bench, row in notes]
        out.append("")
    for name, why in failures.items():
        out += [f"**{name} failed**:", "", "```", why.strip()[-3000:], "```", ""]
    if check_text:
        out += ["`bench/check_10k.py` (config validation of 10,000 tasks, its own format):", "",
                "```", check_text.strip(), "```", ""]
    return "\n".join(out) + "\n"


def update_readmes(markdown: str) -> list[Path]:
    done = []
    for readme in (BENCH / "README.md", ROOT / "README.md"):
        if not readme.exists():
            continue
        text = readme.read_text()
        if MARK_START not in text or MARK_END not in text:
            continue
        head, rest = text.split(MARK_START, 1)
        _, tail = rest.split(MARK_END, 1)
        readme.write_text(f"{head}{MARK_START}\n{markdown}{MARK_END}{tail}")
        done.append(readme)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (seconds)")
    parser.add_argument("--only", nargs="*", choices=[*BENCHMARKS, "check_10k"],
                        help="run only these benchmarks")
    parser.add_argument("--wait-quiet", type=float, default=20.0, metavar="S",
                        help="before each benchmark wait up to S seconds for the machine "
                             "to be under 30%% busy (shared machines; default %(default)s, "
                             "0 to skip)")
    args = parser.parse_args()
    started = time.monotonic()
    info = machine_info()
    info["code"] = code_version()
    suffix = ".quick" if args.quick else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, kernel {info['kernel']}, "
          f"Python {info['python']}, load {info['loadavg']}", flush=True)

    results: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    selected = args.only or [*BENCHMARKS, "check_10k"]
    for name, (script, extra, timeout) in BENCHMARKS.items():
        if name not in selected:
            continue
        busy = wait_quiet(args.wait_quiet) if args.wait_quiet and not args.quick \
            else machine_busy()
        out = RESULTS / f"{name}{suffix}.json"
        out.unlink(missing_ok=True)
        code, elapsed, text = run_one(name, script, extra, timeout, args.quick, out)
        timings[name] = elapsed
        if code != 0 or not out.exists():
            failures[name] = f"exit code {code}\n{text[-3000:]}"
            continue
        result = json.loads(out.read_text())
        result["busy_before"] = busy
        result["elapsed_s"] = elapsed
        results.append(result)

    check_text = ""
    if "check_10k" in selected:
        script, extra, timeout = CHECK_10K
        if args.quick:
            extra = ["--tasks", "1000", "--rounds", "1"]
        code, elapsed, check_text = run_one("check_10k", script, extra, timeout, False, None)
        timings["check_10k"] = elapsed
        if code != 0:
            failures["check_10k"] = f"exit code {code}\n{check_text[-3000:]}"

    markdown = render_markdown(info, results, failures, check_text, args.quick, timings)
    md_path = RESULTS / f"latest{suffix.replace('.', '-')}.md"
    md_path.write_text(markdown)
    json_path = RESULTS / f"latest{suffix.replace('.', '-')}.json"
    json_path.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick, "machine": info,
        "loadavg_after": machine_info()["loadavg"], "timings_s": timings,
        "results": results, "failures": failures, "check_10k": check_text}, indent=2) + "\n")
    updated = [] if args.quick or args.only else update_readmes(markdown)

    print("\n" + "=" * 100)
    print(markdown)
    total = time.monotonic() - started
    print(f"wrote {md_path.relative_to(ROOT)} and {json_path.relative_to(ROOT)}"
          + (f"; updated {', '.join(str(p.relative_to(ROOT)) for p in updated)}"
             if updated else "")
          + f" in {total / 60:.1f} min "
          f"({', '.join(f'{k} {v:.0f}s' for k, v in timings.items())})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

"""Benchmark: the dashboard (SPEC 7) against a real daemon.

(a) Opening with 1,000 tasks: from starting the dashboard until its table holds every task.
    - headless: ``make_app(AsyncClient, SystemClock).run_test(size=(120, 40))`` in this
      process, from entering ``run_test`` until the app is connected and the table has
      all N rows (imports already done);
    - tmux: ``cronkeeper tui --socket`` in a detached 120x40 tmux session, from spawning
      it until the terminal shows "N tasks" in the status line and the first task's row
      (includes interpreter start and imports; the screen is read with ``capture-pane``).
    Baselines, same run: the same with 10 tasks, and the bare API fetch the dashboard
    makes (``status()`` + ``list_tasks()`` with ``AsyncClient``) for N tasks.

(b) Keys while 100 runs/s finish: a daemon with 100 tasks ``every 1s`` (``command = "true"``),
    so about 100 runs finish per second and ~5 events per run reach the dashboard.
    Key -> update latency, p50/p99/max, for cursor moves (down/up, alternating) and for
    opening the help screen (``?``, closed again with esc between presses):
    - headless: the key is posted to the app; the clock stops when the widgets show it
      (the detail line names the newly selected task / the help screen is mounted);
    - tmux: ``tmux send-keys``; the clock stops when ``capture-pane`` shows it. Includes
      tmux's own cost and the polling period (a few ms), which the baseline shows.
    Also the dashboard's own CPU use (tmux) over the warm-up, while it only watches.
    A key not shown within 30 s counts as 30 s and ends its series (reported as a timeout).
    Baseline, same run: the same 100 tasks without a schedule (an idle daemon, no events).
    The achieved load (runs finished per second during the window) is read from
    ``/metrics`` before and after.

Goals: open with 1,000 tasks < 1.5 s; key -> screen p99 < 100 ms under load.
Writes ``bench/results/tui.json`` (``tui.quick.json`` with ``--quick``).

Usage: ``.venv/bin/python bench/tui_bench.py [--quick] [--no-tmux] [--tasks 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("cronkeeper") is None:  # not installed: use this checkout
    sys.path.insert(0, str(ROOT))

from textual import events  # noqa: E402
from textual.widgets import Static  # noqa: E402

from cronkeeper.client import AsyncClient, Client  # noqa: E402
from cronkeeper.clock import SystemClock  # noqa: E402
from cronkeeper.tui.app import CronkeeperApp, make_app  # noqa: E402
from cronkeeper.tui.screens.help import HelpScreen  # noqa: E402
from cronkeeper.tui.screens.main import MainScreen  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CRONKEEPER = Path(sys.executable).parent / "cronkeeper"
SIZE = (120, 40)
DEADLINE = 60.0  # any single wait gives up after this
# A key not shown after this long counts as this long, and ends its series: the dashboard
# is then too far behind for further presses to mean anything.
KEY_DEADLINE = 30.0
GOAL_OPEN_S = 1.5
GOAL_KEY_P99_MS = 100.0
HELP_MARK = "Daemon not reachable"  # a section title only the help screen shows


# ---- a real daemon ---------------------------------------------------------------------------


def task_table(count: int, *, schedule: str | None) -> dict[str, dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = {}
    for index in range(count):
        task: dict[str, Any] = {"description": "bench task", "command": "true"}
        if schedule == "daily":  # spread over the day: nothing fires during the bench
            task["schedule"] = f"{index % 60} {index % 24} * * *"
        elif schedule is not None:
            task["schedule"] = schedule
        tasks[f"task-{index:04d}"] = task
    return tasks


class Daemon:
    """``cronkeeper daemon`` on a generated config in ``folder``; stopped by ``stop``."""

    def __init__(self, folder: Path, tasks: dict[str, dict[str, Any]]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.config = folder / "cronkeeper.toml"
        self.socket = folder / "ck.sock"
        self.log = folder / "daemon.log"
        self.config.write_text(tomli_w.dumps({
            "daemon": {"socket": "ck.sock", "database": "ck.db", "timezone": "UTC",
                       "shutdown_grace": "10s", "handlers_path": str(ROOT / "handlers")},
            "tasks": tasks}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(CRONKEEPER), "daemon", "--config", str(self.config)], cwd=self.folder,
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited:\n{self.log.read_text()[-3000:]}")
            if self.socket.exists():
                try:
                    with Client(self.socket) as client:
                        client.status()
                    return self
                except Exception:  # noqa: BLE001 - not answering yet
                    pass
            time.sleep(0.02)  # polling a condition, bounded by the deadline
        raise TimeoutError("daemon not ready")

    def runs_finished(self) -> float:
        """Sum of ``cronkeeper_runs_finished_total`` over every task and status."""
        with Client(self.socket) as client:
            text = client.metrics()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("cronkeeper_runs_finished_total{"))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def running(folder: Path, tasks: dict[str, dict[str, Any]]) -> Iterator[Daemon]:
    daemon = Daemon(folder, tasks)
    try:
        yield daemon.start()
    finally:
        daemon.stop()


# ---- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p100 = max); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": percentile(seconds, 50) * 1000, "p99_ms": percentile(seconds, 99) * 1000,
            "max_ms": percentile(seconds, 100) * 1000, "n": len(seconds)}


def summary_s(seconds: list[float]) -> dict[str, float]:
    return {"median_s": percentile(seconds, 50), "min_s": min(seconds),
            "max_s": max(seconds), "n": len(seconds)}


# ---- headless (in this process) --------------------------------------------------------------


def detail_names(app: CronkeeperApp, name: str) -> bool:
    """The line under the table describes ``name`` (the main screen's selection)."""
    screen = app.screen
    if not isinstance(screen, MainScreen):
        return False
    content = screen.query_one("#task-detail", Static).content
    return str(getattr(content, "plain", content)).startswith(f"{name} — ")


async def wait(predicate: Callable[[], bool], what: str, poll: float = 0.001,
               limit: float = DEADLINE) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(poll)


async def headless_open(socket: Path, count: int) -> float:
    app = make_app(AsyncClient(socket), SystemClock(), close_client=True)
    start = time.perf_counter()
    async with app.run_test(size=SIZE):
        await wait(lambda: app.connected and app.main_screen.table.row_count == count,
                   f"{count} rows")
        return time.perf_counter() - start


async def api_fetch(socket: Path) -> float:
    client = AsyncClient(socket)
    try:
        start = time.perf_counter()
        await client.status()
        await client.list_tasks()
        return time.perf_counter() - start
    finally:
        await client.aclose()


def press(app: CronkeeperApp, key: str, character: str | None = None) -> None:
    """A key as the terminal driver delivers it (Pilot.press also waits for idleness)."""
    app.post_message(events.Key(key, character))


async def headless_keys(socket: Path, count: int, moves: int, helps: int, warmup: float,
                        gap: float) -> dict[str, Any]:
    app = make_app(AsyncClient(socket), SystemClock(), close_client=True)
    move: list[float] = []
    helped: list[float] = []
    async with app.run_test(size=SIZE):
        await wait(lambda: app.connected and app.main_screen.table.row_count == count, "rows")
        await asyncio.sleep(warmup)  # the app keeps consuming events meanwhile
        names = [str(row.key.value) for row in app.main_screen.table.ordered_rows[:2]]
        try:
            for index in range(moves):
                key, name = ("down", names[1]) if index % 2 == 0 else ("up", names[0])
                start = time.perf_counter()
                press(app, key)
                await wait(partial(detail_names, app, name), f"cursor on {name}",
                           limit=KEY_DEADLINE)
                move.append(time.perf_counter() - start)
                await asyncio.sleep(gap)
            for _ in range(helps):
                start = time.perf_counter()
                press(app, "question_mark", "?")
                await wait(lambda: isinstance(app.screen, HelpScreen) and app.screen.is_mounted,
                           "help", limit=KEY_DEADLINE)
                helped.append(time.perf_counter() - start)
                await asyncio.sleep(gap)
                press(app, "escape")
                await wait(lambda: isinstance(app.screen, MainScreen), "help closed")
                await asyncio.sleep(gap)
        except TimeoutError as exc:
            return timed_out(move, helped, moves, exc)
        return {"move": move, "help": helped, "timeouts": 0}


# ---- a real terminal (tmux) ------------------------------------------------------------------


class Tmux:
    """``cronkeeper tui`` in a detached 120x40 session on a private tmux server."""

    def __init__(self, folder: Path) -> None:
        tmux = shutil.which("tmux")
        assert tmux is not None
        self.name = f"ckbench-{uuid.uuid4().hex[:8]}"
        # A fresh server per session: a server still exiting never meets the next one.
        self.base = [tmux, "-S", str(folder / f"{self.name}.sock"), "-f", os.devnull]

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, *args], capture_output=True, text=True,
                              timeout=DEADLINE, check=False)

    def start(self, socket: Path) -> None:
        # COLUMNS/LINES would override the pane's size in the program.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        env["TERM"] = "xterm-256color"
        done = subprocess.run([*self.base, "new-session", "-d", "-s", self.name,
                               "-x", str(SIZE[0]), "-y", str(SIZE[1]), "env", "TERM=xterm-256color",
                               str(CRONKEEPER), "tui", "--socket", str(socket)],
                              env=env, capture_output=True, text=True, timeout=DEADLINE)
        if done.returncode != 0:
            raise RuntimeError(f"tmux new-session failed: {done.stderr.strip()}")

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-t", self.name).stdout

    def keys(self, *keys: str) -> None:
        self._run("send-keys", "-t", self.name, *keys)

    def wait(self, predicate: Callable[[str], bool], what: str,
             limit: float = DEADLINE) -> float:
        """Poll the screen as fast as tmux answers; the moment it matches."""
        deadline = time.monotonic() + limit
        while True:
            text = self.screen()
            if predicate(text):
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; screen:\n{text}")

    def pid(self) -> int:
        """The dashboard's pid (``env`` execs it in the pane's first process)."""
        return int(self._run("display-message", "-p", "-t", self.name, "#{pane_pid}").stdout)

    def kill(self) -> None:
        self._run("kill-session", "-t", self.name)
        self._run("kill-server")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc (children excluded)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_out(move: list[float], helped: list[float], moves: int, exc: Exception
              ) -> dict[str, Any]:
    """A key that never showed: it counts as KEY_DEADLINE and ends the measurement."""
    print(f"  gave up: {exc}".splitlines()[0], flush=True)
    (move if len(move) < moves else helped).append(KEY_DEADLINE)
    return {"move": move, "help": helped, "timeouts": 1}


def detail_line(name: str) -> Callable[[str], bool]:
    return lambda text: f"{name} — bench task" in text


def tmux_open(folder: Path, socket: Path, count: int) -> tuple[float, float]:
    """Seconds from spawn to the first frame, and to every task loaded."""
    term = Tmux(folder)
    try:
        start = time.perf_counter()
        term.start(socket)
        first = term.wait(lambda s: bool(s.strip()), "the first frame")
        loaded = term.wait(lambda s: f"{count} tasks" in s and "task-0000" in s, "all tasks")
        return first - start, loaded - start
    finally:
        term.kill()


def tmux_keys(folder: Path, socket: Path, count: int, moves: int, helps: int, warmup: float,
              gap: float) -> dict[str, Any]:
    term = Tmux(folder)
    try:
        term.start(socket)
        term.wait(lambda s: f"{count} tasks" in s and "task-0001" in s, "the task list")
        term.wait(detail_line("task-0000"), "the first task selected")
        pid = term.pid()
        cpu0, start = cpu_seconds(pid), time.perf_counter()
        time.sleep(warmup)  # no key pressed: what the dashboard costs by just watching
        cpu_pct = 100 * (cpu_seconds(pid) - cpu0) / (time.perf_counter() - start)
        move: list[float] = []
        helped: list[float] = []
        try:
            for index in range(moves):
                key, name = ("Down", "task-0001") if index % 2 == 0 else ("Up", "task-0000")
                start = time.perf_counter()
                term.keys(key)
                move.append(term.wait(detail_line(name), f"cursor on {name}", KEY_DEADLINE)
                            - start)
                time.sleep(gap)
            for _ in range(helps):
                start = time.perf_counter()
                term.keys("-l", "?")
                helped.append(term.wait(lambda s: HELP_MARK in s, "help", KEY_DEADLINE) - start)
                time.sleep(gap)
                term.keys("Escape")
                term.wait(lambda s: HELP_MARK not in s, "help closed")
                time.sleep(gap)
        except TimeoutError as exc:
            return {**timed_out(move, helped, moves, exc), "cpu_pct": cpu_pct}
        return {"move": move, "help": helped, "timeouts": 0, "cpu_pct": cpu_pct}
    finally:
        term.kill()


# ---- the benchmark ---------------------------------------------------------------------------


def measure_open(folder: Path, count: int, rounds: int, use_tmux: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with running(folder, task_table(count, schedule="daily")) as daemon:
        asyncio.run(headless_open(daemon.socket, count))  # warm-up: caches, first imports
        out["headless"] = summary_s([asyncio.run(headless_open(daemon.socket, count))
                                     for _ in range(rounds)])
        out["api_fetch"] = summary_s([asyncio.run(api_fetch(daemon.socket))
                                      for _ in range(rounds)])
        if use_tmux:
            pairs = [tmux_open(folder, daemon.socket, count) for _ in range(rounds)]
            out["tmux_first_frame"] = summary_s([first for first, _ in pairs])
            out["tmux"] = summary_s([loaded for _, loaded in pairs])
    return out


def measure_keys(folder: Path, tasks: dict[str, dict[str, Any]], moves: int, helps: int,
                 warmup: float, gap: float, use_tmux: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with running(folder, tasks) as daemon:
        count = len(tasks)
        done0, t0 = daemon.runs_finished(), time.monotonic()
        headless = asyncio.run(headless_keys(daemon.socket, count, moves, helps, warmup, gap))
        out["headless_move"] = summary_ms(headless["move"])
        out["headless_help"] = summary_ms(headless["help"])
        out["headless_timeouts"] = headless["timeouts"]
        if use_tmux:
            terminal = tmux_keys(folder, daemon.socket, count, moves, helps, warmup, gap)
            out["tmux_move"] = summary_ms(terminal["move"])
            out["tmux_help"] = summary_ms(terminal["help"])
            out["tmux_tui_cpu_pct"] = terminal["cpu_pct"]
            out["tmux_timeouts"] = terminal["timeouts"]
        out["runs_per_s"] = (daemon.runs_finished() - done0) / (time.monotonic() - t0)
    return out


def print_table(figures: dict[str, Any], baseline: dict[str, Any], count: int) -> None:
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, value: float, base: float | None, unit: str, goal: str = "") -> None:
        ratio = f"{value / base:.2f}x" if base and not math.isnan(base) else "-"
        shown = "-" if base is None else f"{base:.0f} {unit}"
        rows.append((label, f"{value:.0f} {unit}", f"{shown} [{ratio}]", goal))

    opened, base_open = figures["open"], baseline["open"]
    goal = f"< {GOAL_OPEN_S * 1000:.0f} ms"
    add(f"open {count} tasks, headless (median)", opened["headless"]["median_s"] * 1000,
        base_open["headless_10"]["median_s"] * 1000, "ms", goal)
    add(f"  bare API fetch of {count} tasks", opened["api_fetch"]["median_s"] * 1000, None, "ms")
    if "tmux" in opened:
        add(f"open {count} tasks, tmux (median)", opened["tmux"]["median_s"] * 1000,
            base_open["tmux_10"]["median_s"] * 1000, "ms", goal)
        add("  tmux first frame (median)", opened["tmux_first_frame"]["median_s"] * 1000,
            base_open["tmux_first_frame_10"]["median_s"] * 1000, "ms")
    load, idle = figures["keys_under_load"], baseline["keys_idle"]
    for key in ("headless_move", "headless_help", "tmux_move", "tmux_help"):
        if key not in load:
            continue
        for stat in ("p50_ms", "p99_ms"):
            goal = f"< {GOAL_KEY_P99_MS:.0f} ms" if stat == "p99_ms" else ""
            add(f"key {key.replace('_', ' ')} {stat[:3]} ({load['runs_per_s']:.0f} runs/s)",
                load[key][stat], idle[key][stat], "ms", goal)
    if "tmux_tui_cpu_pct" in load:
        add("dashboard CPU while watching (tmux)", load["tmux_tui_cpu_pct"],
            idle["tmux_tui_cpu_pct"], "%")
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    header = ("figure", "cronkeeper", "baseline [ratio]", "goal")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    for mode in ("headless", "tmux"):
        if load.get(f"{mode}_timeouts"):
            print(f"({mode}: a key did not show within {KEY_DEADLINE:.0f} s under load; it "
                  "counts as that long and the rest of that series was skipped)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and presses")
    parser.add_argument("--no-tmux", action="store_true", help="headless figures only")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks for the open figure")
    parser.add_argument("--load-tasks", type=int, default=100, help="tasks `every 1s`")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    use_tmux = not args.no_tmux and shutil.which("tmux") is not None
    rounds, moves, helps, warmup, gap = (2, 15, 3, 2.0, 0.05) if args.quick else \
        (5, 50, 10, 5.0, 0.1)

    with tempfile.TemporaryDirectory(prefix="ck-tui-bench-") as tmp:
        folder = Path(tmp)
        print(f"open: {args.tasks} tasks, {rounds} rounds ...", flush=True)
        opened = measure_open(folder / "open", args.tasks, rounds, use_tmux)
        base_small = measure_open(folder / "open10", 10, rounds, use_tmux)
        print(f"keys: {args.load_tasks} tasks every 1s, {moves} moves + {helps} helps ...",
              flush=True)
        load = measure_keys(folder / "load", task_table(args.load_tasks, schedule="every 1s"),
                            moves, helps, warmup, gap, use_tmux)
        idle = measure_keys(folder / "idle", task_table(args.load_tasks, schedule=None),
                            moves, helps, warmup, gap, use_tmux)

    base_open = {"headless_10": base_small["headless"], "api_fetch_10": base_small["api_fetch"]}
    if use_tmux:
        base_open["tmux_10"] = base_small["tmux"]
        base_open["tmux_first_frame_10"] = base_small["tmux_first_frame"]
    figures = {"open": opened, "keys_under_load": load}
    baseline = {"open": base_open, "keys_idle": idle}
    goals = {"open_1000_tasks_s": GOAL_OPEN_S, "key_to_screen_p99_ms_under_100_runs_s":
             GOAL_KEY_P99_MS}
    print()
    print_table(figures, baseline, args.tasks)
    worst_p99 = max(load[k]["p99_ms"] for k in load if k.endswith("_move"))
    slowest_open = max(opened[k]["median_s"] for k in ("headless", "tmux") if k in opened)
    met = {"open": slowest_open < GOAL_OPEN_S, "key_p99": worst_p99 < GOAL_KEY_P99_MS}
    print(f"\ngoals: open < {GOAL_OPEN_S} s: {'PASS' if met['open'] else 'MISS'} "
          f"({slowest_open:.2f} s); cursor key p99 < {GOAL_KEY_P99_MS:.0f} ms under load: "
          f"{'PASS' if met['key_p99'] else 'MISS'} ({worst_p99:.0f} ms)")

    result = {
        "name": "tui", "quick": args.quick, "figures": figures, "baseline": baseline,
        "goals": goals, "met": met,
        "params": {"tasks": args.tasks, "load_tasks": args.load_tasks, "rounds": rounds,
                   "moves": moves, "helps": helps, "warmup_s": warmup, "gap_s": gap,
                   "tmux": use_tmux, "size": list(SIZE)},
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "loadavg": [round(x, 2) for x in os.getloadavg()]},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = args.out or RESULTS / ("tui.quick.json" if args.quick else "tui.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(result), indent=2) + "\n")
    print(f"wrote {out}")


def _finite(value: Any) -> Any:
    """NaN (no samples) becomes null, so the JSON stays valid everywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


if __name__ == "__main__":
    main()

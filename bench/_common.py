"""Shared helpers for the benchmarks: a real daemon on a temporary config, /proc readings,
percentiles, result rows and the JSON each benchmark hands to ``run_all.py``.

The daemon is started the way ``tests/harness.py`` does it (the real ``cronkeeper daemon`` on
a generated ``cronkeeper.toml``, state in a temporary folder), without the pytest parts.
Benchmarks may sleep to pace or wait out a measured window; every wait has a deadline.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
CACHE = BENCH / ".cache"
VENV_BIN = Path(sys.executable).parent
PYTHON = sys.executable
CRONKEEPER = VENV_BIN / "cronkeeper"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
DEADLINE = 60.0  # any single wait (daemon ready, stop) gives up after this


# ---- machine ---------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "os": _os_name(),
        "mem_total_mib": _mem_total_mib(),
        "loadavg": [round(x, 2) for x in load_average()],
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _mem_total_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def pidfd_supported() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (AttributeError, OSError):
        return False


# ---- /proc readings ----------------------------------------------------------------------------

def proc_cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` (all its threads, not its children), in clock ticks."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads, not its children), in seconds."""
    return proc_cpu_ticks(pid) / CLK_TCK


def proc_status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def proc_pss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


# ---- statistics --------------------------------------------------------------------------------

def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p100 is the max); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/max (and count) of durations given in seconds, in milliseconds."""
    return {"p50": percentile(seconds, 50) * 1000, "p99": percentile(seconds, 99) * 1000,
            "max": percentile(seconds, 100) * 1000, "n": len(seconds)}


# ---- results -------------------------------------------------------------------------------------

@dataclass
class Row:
    """One figure: cronkeeper's value, each baseline's, the goal and whether it is met.

    ``goal`` is ``("<=", 40.0)`` and friends, checked against ``value``; ``goal_text`` says it
    in words; ``ratio_goal`` (e.g. 1.5) is checked against value / first baseline.
    """

    bench: str
    figure: str
    unit: str
    value: float | None
    baselines: dict[str, float | None] = field(default_factory=dict)
    goal: tuple[str, float] | None = None
    ratio_goal: float | None = None
    goal_text: str = ""
    note: str = ""

    def ratios(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, base in self.baselines.items():
            if self.value is None or base is None or base == 0 or math.isnan(base) \
                    or math.isnan(self.value):
                out[name] = None
            else:
                out[name] = self.value / base
        return out

    def status(self) -> str:
        if self.goal is None and self.ratio_goal is None:
            return ""
        if self.value is None or math.isnan(self.value):
            return "MISS"
        ok = True
        if self.goal is not None:
            op, limit = self.goal
            ok = {"<=": self.value <= limit, ">=": self.value >= limit,
                  "==": self.value == limit}[op]
        if self.ratio_goal is not None:
            first = next(iter(self.ratios().values()), None)
            ok = ok and first is not None and first <= self.ratio_goal
        return "PASS" if ok else "MISS"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["goal"] = list(self.goal) if self.goal else None
        data["ratios"] = self.ratios()
        data["status"] = self.status()
        return _clean(data)


def _clean(value: Any) -> Any:
    """NaN/inf become null, so the JSON is valid everywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit in ("", "count", "runs") and float(value).is_integer():
        text = f"{int(value):,}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip() if unit not in ("count", "") else text


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:,.0f}x"


def print_rows(title: str, rows: Iterable[Row]) -> None:
    rows = list(rows)
    print(f"\n== {title}")
    header = ["figure", "cronkeeper", "baseline(s) [cronkeeper/baseline]", "goal", ""]
    table = [header]
    for row in rows:
        bases = "; ".join(f"{name} {fmt(base, row.unit)} [{fmt_ratio(ratio)}]"
                          for (name, base), ratio in zip(row.baselines.items(),
                                                         row.ratios().values(), strict=True))
        table.append([row.figure, fmt(row.value, row.unit), bases or "-", row.goal_text,
                      row.status()])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for line in table:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def write_result(name: str, rows: Sequence[Row], *, quick: bool, params: dict[str, Any],
                 details: dict[str, Any] | None = None, notes: Sequence[str] = (),
                 out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}{'.quick' if quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"bench": name, "quick": quick, "params": params,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
            "rows": [r.to_json() for r in rows], "notes": list(notes),
            "details": details or {}}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


# ---- a real daemon ---------------------------------------------------------------------------------

def write_config(path: Path, tasks: dict[str, dict[str, Any]], **daemon: Any) -> Path:
    """A cronkeeper.toml with state (socket, database) next to it."""
    section = {"socket": "ck.sock", "database": "ck.db", "timezone": "UTC",
               "shutdown_grace": "10s", "handlers_path": str(ROOT / "handlers"),
               # Retention off for the benchmark window: pruning is measured by itself.
               "keep_runs": 10_000_000, "keep_days": 36_500}
    section.update(daemon)
    path.write_text(tomli_w.dumps({"daemon": section, "tasks": tasks}))
    return path


def http_get_raw(sock_path: Path, target: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A minimal HTTP/1.1 GET over the Unix socket, with no client library (cheap to poll)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: cronkeeper\r\nConnection: close\r\n\r\n"
                  .encode())
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


class BenchDaemon:
    """``cronkeeper daemon`` on ``config`` (state next to it), started and stopped by us only."""

    def __init__(self, config: Path, *, log_name: str = "daemon.log") -> None:
        self.config = config
        self.workdir = config.parent
        self.socket = self.workdir / "ck.sock"
        self.db = self.workdir / "ck.db"
        self.log_path = self.workdir / log_name
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, wait: bool = True, poll: float = 0.01) -> float:
        """Start; with ``wait``, return seconds from spawn to /v1/status answering 200."""
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("JOURNAL_STREAM", None)
        with open(self.log_path, "ab") as log:
            self.spawned_at = time.perf_counter()
            self.proc = subprocess.Popen(
                [str(CRONKEEPER), "daemon", "--config", str(self.config)],
                cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        return self.wait_ready(poll=poll) if wait else 0.0

    def wait_ready(self, timeout: float = DEADLINE, poll: float = 0.01) -> float:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n"
                                   f"{self.log()[-4000:]}")
            try:
                status, _ = http_get_raw(self.socket, "/v1/status")
                if status == 200:
                    return time.perf_counter() - self.spawned_at
            except OSError:
                pass
            time.sleep(poll)  # polling a condition, bounded by the deadline
        raise TimeoutError(f"daemon not ready after {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")

    def status(self) -> dict[str, Any]:
        code, body = http_get_raw(self.socket, "/v1/status")
        if code != 200:
            raise RuntimeError(f"/v1/status answered {code}")
        result: dict[str, Any] = json.loads(body)
        return result

    def stop(self, timeout: float = DEADLINE) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@contextmanager
def daemon_running(config: Path, **kwargs: Any) -> Iterator[BenchDaemon]:
    daemon = BenchDaemon(config, **kwargs)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


@contextmanager
def workdir(prefix: str, keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"cronkeeper-bench-{prefix}-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def sleep_until(wall: float, deadline: float | None = None) -> None:
    """Sleep until the wall-clock instant ``wall`` (benchmarks pace on whole seconds)."""
    while True:
        left = wall - time.time()
        if left <= 0 or (deadline is not None and time.monotonic() > deadline):
            return
        time.sleep(min(left, 1.0))


# ---- py-spy ----------------------------------------------------------------------------------------

class Profiler:
    """``py-spy record`` attached to a pid for a window; summarises the hottest frames."""

    def __init__(self, out: Path, rate: int = 200) -> None:
        self.out = out
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return (VENV_BIN / "py-spy").exists() or shutil.which("py-spy") is not None

    def start(self, pid: int, duration: float, *, idle: bool = False) -> None:
        exe = str(VENV_BIN / "py-spy") if (VENV_BIN / "py-spy").exists() else "py-spy"
        self.out.parent.mkdir(parents=True, exist_ok=True)
        argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(duration))),
                "--rate", str(self.rate), "--format", "raw", "--output", str(self.out),
                "--nonblocking", "--threads"]
        if idle:
            argv.append("--idle")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self, timeout: float = 60.0) -> str:
        if self.proc is None:
            return ""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(10)
        return summarise_profile(self.out)


def summarise_profile(path: Path, top: int = 25) -> str:
    """Self and total sample counts per frame (function (file:line)) of a py-spy raw file."""
    if not path.exists():
        return f"(no profile at {path})"
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        for frame in set(frames):
            total_counts[frame] = total_counts.get(frame, 0) + count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
    if not samples:
        return f"(empty profile {path})"
    lines = [f"py-spy: {samples} samples ({path.name})", "  self%  total%  frame"]
    for frame, count in sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * count / samples:5.1f}  {100 * total_counts[frame] / samples:5.1f}"
                     f"   {_short(frame)}")
    lines.append("  -- by total (cronkeeper frames) --")
    ours = [(f, c) for f, c in total_counts.items() if "cronkeeper/" in f]
    for frame, count in sorted(ours, key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * self_counts.get(frame, 0) / samples:5.1f}"
                     f"  {100 * count / samples:5.1f}   {_short(frame)}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
        if marker in frame:
            head, _, tail = frame.partition("(")
            return head + "(" + tail.split(marker, 1)[-1]
    return frame


def common_args(parser: Any) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="smoke-test sizes: finishes in seconds, figures are indicative only")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON result")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="attach py-spy to the daemon during the measured window and write "
                             "raw profiles and summaries to DIR (figures are then perturbed)")

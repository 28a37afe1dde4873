"""Smoke test: the installed ``cronkeeper tui`` in a real terminal (tmux) against a real daemon.

The Pilot tests run the app in-process and headless; this one runs the console script as
a user would, reads the terminal with ``tmux capture-pane`` and types with ``send-keys``.
Each test gets its own tmux server (``-S`` a socket in ``tmp_path``), so nothing is
shared with other tests, other xdist workers or anyone's own tmux.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import DEADLINE, DaemonProcess, wait_until

TMUX = shutil.which("tmux")
CRONKEEPER = Path(sys.executable).parent / "cronkeeper"
WIDTH, HEIGHT = 120, 40
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")

TASKS = """
    [tasks.alpha-smoke]
    description = "First task"
    command = "echo alpha"

    [tasks.beta-smoke]
    description = "Second task"
    command = "echo beta"
"""


class Terminal:
    """One detached tmux session of a fixed size on a private tmux server."""

    def __init__(self, folder: Path) -> None:
        assert TMUX is not None
        self.name = f"ck-{uuid.uuid4().hex[:10]}"
        # Short enough for a socket path: tmp_path is well under 100 characters.
        self.server = folder / f"{self.name}.sock"
        self.base = [TMUX, "-S", str(self.server), "-f", os.devnull]
        # Everything the program writes, kept after the pane is gone (a crash's traceback).
        self.transcript_path = folder / f"{self.name}.out"

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, *args], capture_output=True, text=True,
                              timeout=DEADLINE, check=check)

    def start(self, command: list[str]) -> None:
        # COLUMNS/LINES (pytest-xdist workers have COLUMNS=80) would override the pane's
        # real size in the program; the new server hands its environment to the pane.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        env["TERM"] = "xterm-256color"
        done = subprocess.run([*self.base, "new-session", "-d", "-s", self.name,
                               "-x", str(WIDTH), "-y", str(HEIGHT),
                               "env", "TERM=xterm-256color", *command],
                              env=env, capture_output=True, text=True, timeout=DEADLINE)
        assert done.returncode == 0, f"tmux new-session failed: {done.stderr}"
        self.tmux("pipe-pane", "-t", self.name, f"cat >> {shlex.quote(str(self.transcript_path))}")

    def transcript(self, tail: int = 3000) -> str:
        """The program's output so far as plain text (escape sequences removed)."""
        if not self.transcript_path.exists():
            return ""
        raw = self.transcript_path.read_text(errors="replace")
        return ANSI.sub("", raw)[-tail:]

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", self.name, check=False).returncode == 0

    def screen(self) -> str:
        result = self.tmux("capture-pane", "-p", "-t", self.name, check=False)
        return result.stdout if result.returncode == 0 else ""

    def press(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.name, "-l", text)

    def wait_for(self, predicate: Callable[[str], bool], what: str,
                 timeout: float = DEADLINE) -> str:
        """Poll the screen until ``predicate(text)``; the last screen is in the error."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                state = "running" if self.alive() else "the session has ended"
                raise AssertionError(f"timed out waiting for {what} ({state}); the screen:\n"
                                     f"{text}\nthe end of the output:\n{self.transcript()}")
            time.sleep(0.05)  # polling a condition, bounded by the deadline

    def kill(self) -> None:
        self.tmux("kill-session", "-t", self.name, check=False)
        self.tmux("kill-server", check=False)


def manual_runs(daemon: DaemonProcess, task: str) -> list[dict[str, object]]:
    with daemon.client() as client:
        return [run for run in client.list_runs(task=task)[0] if run["trigger"] == "manual"]


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path)
    try:
        yield term
    finally:
        term.kill()


def test_tui_in_tmux(start_daemon: Callable[..., DaemonProcess], terminal: Terminal) -> None:
    d = start_daemon(TASKS)
    terminal.start([str(CRONKEEPER), "tui", "--socket", str(d.socket_path)])

    screen = terminal.wait_for(lambda s: "alpha-smoke" in s and "beta-smoke" in s,
                               "the task names")
    assert "2 tasks" in screen
    # Drawn for the whole 120x40 pane: the footer is on the last line.
    terminal.wait_for(lambda s: len(s.splitlines()) == HEIGHT and "Quit" in s.splitlines()[-1],
                      "the footer on the last line")

    # r runs the selected (first) task: the daemon records a manual run.
    terminal.press("r")
    runs = wait_until(lambda: manual_runs(d, "alpha-smoke"), what="a manual run of alpha-smoke")
    assert len(runs) == 1
    assert not manual_runs(d, "beta-smoke")

    # ? shows the help listing every screen's keys; esc closes it.
    terminal.type("?")
    help_text = terminal.wait_for(lambda s: "Daemon not reachable" in s, "the help screen")
    assert "Task list" in help_text
    terminal.press("Escape")
    terminal.wait_for(lambda s: "alpha-smoke" in s and "Daemon not reachable" not in s,
                      "back to the task list")

    # q quits: the program ends, and with it the session.
    terminal.type("q")
    try:
        wait_until(lambda: not terminal.alive(), what="the tmux session to end")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; the screen:\n{terminal.screen()}") from exc
    with d.client() as client:
        assert client.status()["tasks"] == 2  # the daemon keeps running

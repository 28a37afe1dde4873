"""The CLI as a user runs it: real `cronkeeper` processes against a real daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import DaemonProcess

CONFIG = """
    [tasks.ok]
    description = "always fine"
    schedule = "30 2 * * *"
    command = "echo all good"
    [tasks.bad]
    command = "echo broken >&2; exit 4"
    [tasks.slow]
    command = "sleep 600"
"""


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


@pytest.fixture
def daemon(start_daemon) -> DaemonProcess:
    return start_daemon(CONFIG)


def test_list_show_status(daemon: DaemonProcess) -> None:
    listing = daemon.cli("list")
    assert listing.returncode == 0, explain(listing)
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "STATE", "SCHEDULE"]
    assert any(line.startswith("ok ") and "active" in line for line in lines)
    as_json = json.loads(daemon.cli("list", "--json").stdout)
    assert [t["name"] for t in as_json] == ["ok", "bad", "slow"]
    show = daemon.cli("show", "ok")
    assert "always fine" in show.stdout and "30 2 * * *" in show.stdout
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["tasks"] == 3


def test_run_wait_exit_codes_and_output(daemon: DaemonProcess) -> None:
    good = daemon.cli("run", "ok", "--wait")
    assert good.returncode == 0, explain(good)
    assert good.stdout == "all good\n"
    bad = daemon.cli("run", "bad", "--wait")
    assert bad.returncode == 1, explain(bad)
    assert bad.stdout == "broken\n"
    assert "failed" in bad.stderr and "exit" in bad.stderr
    unknown = daemon.cli("run", "nope")
    assert unknown.returncode == 1
    assert "unknown task 'nope'" in unknown.stderr


def test_params_history_logs_cancel(daemon: DaemonProcess, tmp_path: Path) -> None:
    queued = json.loads(daemon.cli("run", "ok", "--param", "n=3", "--param", "who=ann",
                                   "--json").stdout)
    assert queued["params"] == {"n": 3, "who": "ann"}
    daemon.events.run_finished("ok")
    history = daemon.cli("history", "ok")
    assert history.returncode == 0, explain(history)
    assert str(queued["id"]) in history.stdout and "succeeded" in history.stdout
    runs = json.loads(daemon.cli("history", "ok", "--json").stdout)["runs"]
    assert runs[0]["id"] == queued["id"]
    assert daemon.cli("logs", str(queued["id"])).stdout == "all good\n"
    slow = json.loads(daemon.cli("run", "slow", "--json").stdout)
    daemon.events.wait_for(lambda e: e.kind == "run.started" and e.data["id"] == slow["id"])
    assert daemon.cli("cancel", str(slow["id"])).returncode == 0
    follow = daemon.cli("logs", str(slow["id"]), "--follow")
    assert follow.returncode == 0
    assert daemon.events.run_finished("slow")[0]["status"] == "cancelled"
    assert daemon.cli("cancel", str(slow["id"])).returncode == 1


def test_pause_resume_all_and_single(daemon: DaemonProcess) -> None:
    assert daemon.cli("pause", "ok").stdout.strip() == "ok: paused"
    assert daemon.cli("resume", "ok").stdout.strip() == "ok: active"
    assert daemon.cli("pause", "--all").returncode == 0
    assert json.loads(daemon.cli("status", "--json").stdout)["paused_all"] is True
    assert daemon.cli("resume", "--all").returncode == 0
    usage = daemon.cli("pause")
    assert usage.returncode == 2 and "TASK or --all" in usage.stderr


def test_reload_with_bad_file_exits_2(daemon: DaemonProcess) -> None:
    daemon.write_config('[tasks.x]\ncommand = "true"\nretries = -1\n')
    result = daemon.cli("reload")
    assert result.returncode == 2, explain(result)
    assert "[tasks.x] retries" in result.stderr


def test_unreachable_daemon_exit_3_names_socket(tmp_path: Path) -> None:
    sock = tmp_path / "nobody-home.sock"
    result = subprocess.run([sys.executable, "-m", "cronkeeper.cli", "--socket", str(sock),
                             "list"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 3, explain(result)
    assert str(sock) in result.stderr and "--socket" in result.stderr
    config = tmp_path / "ck.toml"
    config.write_text('[daemon]\nsocket = "run/x.sock"\n')
    after = subprocess.run([sys.executable, "-m", "cronkeeper.cli", "status", "--config",
                            str(config)], capture_output=True, text=True, timeout=30)
    assert after.returncode == 3
    assert str(tmp_path / "run" / "x.sock") in after.stderr
    assert str(config) in after.stderr

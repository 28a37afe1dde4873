"""End to end: the real daemon subprocess, its real socket, real child processes, real SQLite."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import DaemonProcess, wait_until

from cronkeeper.errors import ConfigError, Conflict


def rows(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def finished_runs(client, task: str, count: int = 1) -> list[dict]:
    """Runs of ``task`` that have finished, oldest first, once there are ``count`` of them.

    For runs fired during start-up, before an event subscriber can connect.
    """
    def done() -> list[dict] | None:
        runs = [r for r in client.list_runs(task=task)[0]
                if r["status"] not in ("queued", "running")]
        return runs[::-1] if len(runs) >= count else None

    return wait_until(done, what=f"{count} finished run(s) of {task}")


def test_scheduled_task_fires_and_is_recorded(start_daemon) -> None:
    d = start_daemon("""
        [tasks.tick]
        schedule = "every 1s"
        command = "echo tick-$CRONKEEPER_TASK-$CRONKEEPER_TRIGGER"
    """)
    first = d.events.run_finished("tick")[0]
    assert first["status"] == "succeeded"
    assert first["trigger"] == "schedule"
    assert d.events.run_events(first["id"]) == ["run.queued", "run.started", "run.finished"]
    with d.client() as client:
        assert client.get_output(first["id"]) == "tick-tick-schedule\n"
        task = client.get_task("tick")
    assert task["next_run"] is not None
    assert task["schedule_text"]
    d.stop()
    (status, trigger), = rows(d.db_path, "SELECT status, trigger FROM run WHERE id = ?",
                              first["id"])
    assert (status, trigger) == ("succeeded", "schedule")


def test_manual_run_env_params_and_handler_result(start_daemon, tmp_path: Path) -> None:
    handlers = tmp_path / "h"
    handlers.mkdir()
    (handlers / "jobs.py").write_text(
        "import os\n"
        "async def add(params):\n"
        "    print('adding', flush=True)\n"
        "    return {'sum': params['a'] + params['b'], 'task': os.environ['CRONKEEPER_TASK']}\n"
        "def boom(params):\n"
        "    raise RuntimeError('kaboom')\n"
        "def soft(params):\n"
        "    return {'success': False, 'error': 'disk full'}\n")
    d = start_daemon("""
        [tasks.sum]
        handler = "jobs:add"
        params = { a = 1, b = 2 }
        [tasks.boom]
        handler = "jobs:boom"
        [tasks.soft]
        handler = "jobs:soft"
        [tasks.env]
        command = ["/bin/sh", "-c", "echo $CRONKEEPER_RUN_ID $CRONKEEPER_ATTEMPT $GREETING $NOTIFY_SOCKET"]
        env = { GREETING = "hi" }
    """, daemon_section=f'handlers_path = "{handlers}"\n', env={"NOTIFY_SOCKET": ""})
    with d.client() as client:
        run = client.run_task("sum", {"b": 40})
        assert run["status"] == "queued" and run["trigger"] == "manual"
        done = d.events.run_finished("sum")[0]
        assert done["status"] == "succeeded"
        assert done["result"] == {"sum": 41, "task": "sum"}
        assert client.get_output(done["id"]) == "adding\n"

        client.run_task("boom")
        boom = d.events.run_finished("boom")[0]
        assert boom["status"] == "failed"
        assert "kaboom" in boom["error"]
        assert "Traceback" in client.get_output(boom["id"])

        client.run_task("soft")
        soft = d.events.run_finished("soft")[0]
        assert soft["status"] == "failed" and "disk full" in soft["error"]

        env_run = client.run_task("env")
        d.events.run_finished("env")
        assert client.get_output(env_run["id"]).split() == [str(env_run["id"]), "1", "hi"]


def test_retries_with_backoff_then_on_failure(start_daemon) -> None:
    d = start_daemon("""
        [tasks.flaky]
        command = "echo attempt $CRONKEEPER_ATTEMPT; exit 3"
        retries = 2
        retry_delay = "0.2s"
        retry_backoff = 2.0
        on_failure = ["alert"]
        [tasks.alert]
        command = "echo $CRONKEEPER_UPSTREAM_TASK $CRONKEEPER_UPSTREAM_RUN_ID $CRONKEEPER_UPSTREAM_STATUS"
    """)
    with d.client() as client:
        first = client.run_task("flaky")
        attempts = d.events.run_finished("flaky", count=3)
        assert [(r["attempt"], r["trigger"], r["status"], r["exit_code"]) for r in attempts] == [
            (1, "manual", "failed", 3), (2, "retry", "failed", 3), (3, "retry", "failed", 3)]
        alert = d.events.run_finished("alert")
        assert len(alert) == 1  # only after the last attempt
        assert alert[0]["trigger"] == "on_failure"
        assert client.get_output(alert[0]["id"]).split() == [
            "flaky", str(attempts[-1]["id"]), "failed"]
        assert first["id"] == attempts[0]["id"]
        task = client.get_task("flaky")
        assert task["retry_count"] == 2
        assert client.task_action("flaky", "reset-retries")["retry_count"] == 0


def test_on_success_chain(start_daemon) -> None:
    d = start_daemon("""
        [tasks.build]
        command = "true"
        on_success = ["deploy"]
        [tasks.deploy]
        command = "echo deploying after $CRONKEEPER_UPSTREAM_TASK"
    """)
    with d.client() as client:
        client.run_task("build")
        deploy = d.events.run_finished("deploy")[0]
        assert deploy["trigger"] == "on_success" and deploy["status"] == "succeeded"
        assert client.get_output(deploy["id"]) == "deploying after build\n"


@pytest.mark.parametrize("policy", ["skip", "queue", "allow", "replace"])
def test_overlap_policies(start_daemon, tmp_path: Path, policy: str) -> None:
    gate = tmp_path / f"gate-{policy}"
    d = start_daemon(f"""
        [tasks.slow]
        command = "while [ ! -e {gate} ]; do sleep 0.05; done"
        overlap = "{policy}"
        timeout = "60s"
    """)
    with d.client() as client:
        first = client.run_task("slow")
        d.events.wait_for(lambda e: e.kind == "run.started" and e.data["id"] == first["id"])
        if policy == "skip":
            with pytest.raises(Conflict):
                client.run_task("slow")
            gate.touch()
            assert d.events.run_finished("slow")[0]["status"] == "succeeded"
            return
        second = client.run_task("slow")
        if policy == "queue":
            third = client.run_task("slow")  # at most one pending: this one is skipped
            skipped = d.events.run_finished("slow")[0]
            assert skipped["id"] == third["id"] and skipped["status"] == "skipped"
            assert client.get_run(second["id"])["status"] == "queued"
            gate.touch()
            finished = d.events.run_finished("slow", count=3)
            assert [r["id"] for r in finished[1:]] == [first["id"], second["id"]]
        elif policy == "allow":
            d.events.wait_for(lambda e: e.kind == "run.started" and e.data["id"] == second["id"])
            gate.touch()
            statuses = {r["id"]: r["status"] for r in d.events.run_finished("slow", count=2)}
            assert statuses == {first["id"]: "succeeded", second["id"]: "succeeded"}
        else:  # replace
            cancelled = d.events.run_finished("slow")[0]
            assert cancelled["id"] == first["id"] and cancelled["status"] == "cancelled"
            d.events.wait_for(lambda e: e.kind == "run.started" and e.data["id"] == second["id"])
            gate.touch()
            assert d.events.run_finished("slow", count=2)[1]["status"] == "succeeded"


def test_max_concurrent_runs_queue_fifo(start_daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    d = start_daemon(f"""
        [defaults]
        overlap = "allow"
        [tasks.a]
        command = "while [ ! -e {gate} ]; do sleep 0.05; done"
        [tasks.b]
        command = "true"
        [tasks.c]
        command = "true"
    """, daemon_section="max_concurrent_runs = 1\n")
    with d.client() as client:
        a = client.run_task("a")
        d.events.wait_for(lambda e: e.kind == "run.started" and e.data["id"] == a["id"])
        b = client.run_task("b")
        c = client.run_task("c")
        assert client.get_run(b["id"])["status"] == "queued"
        assert client.status()["queued"] == 2
        gate.touch()
        d.events.run_finished("c")
        started = [e.data["id"] for e in d.events.events if e.kind == "run.started"]
        assert started == [a["id"], b["id"], c["id"]]


def test_timeout_kills_grandchild_that_ignores_sigterm(start_daemon, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = tmp_path / "stubborn.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"setsid sh -c 'trap \"\" TERM; echo $$ > {pidfile}; while :; do sleep 0.1; done' &\n"
        "trap '' TERM\n"
        "while :; do sleep 0.1; done\n")
    script.chmod(0o755)
    d = start_daemon(f"""
        [tasks.stubborn]
        command = ["{script}"]
        timeout = "1s"
        kill_grace = "0.5s"
    """)
    with d.client() as client:
        client.run_task("stubborn")
        done = d.events.run_finished("stubborn")[0]
    assert done["status"] == "timed_out"
    assert done["signal"] == signal.SIGKILL
    pid = int(pidfile.read_text())

    def gone() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().split(") ")[1][0] == "Z"  # a zombie awaiting reaping is dead
        except FileNotFoundError:
            return True

    wait_until(gone, what=f"grandchild {pid} to die")


def test_cancel_running_run(start_daemon) -> None:
    d = start_daemon("""
        [tasks.long]
        command = "sleep 600"
    """)
    with d.client() as client:
        run = client.run_task("long")
        d.events.wait_for(lambda e: e.kind == "run.started" and e.data["id"] == run["id"])
        client.cancel(run["id"])
        done = d.events.run_finished("long")[0]
        assert done["status"] == "cancelled"
        with pytest.raises(Conflict):
            client.cancel(run["id"])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_output_flood_keeps_daemon_memory_flat(start_daemon) -> None:
    d = start_daemon("""
        [tasks.flood]
        command = "head -c 200000000 /dev/zero | tr '\\\\0' 'x'"
    """, daemon_section='output_limit = "1MiB"\n')
    assert d.proc is not None
    peak = 0
    with d.client() as client:
        run = client.run_task("flood")
        deadline = time.monotonic() + 120
        while True:
            peak = max(peak, rss_kib(d.proc.pid))
            state = client.get_run(run["id"])["status"]
            if state not in ("queued", "running") or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # sampling memory while the flood runs
        done = client.get_run(run["id"])
        assert done["status"] == "succeeded"
        assert done["output_bytes"] == 200_000_000
        assert done["output_truncated"] is True
        output = client.get_output(run["id"])
    assert "bytes truncated ...]" in output
    assert len(output) < 1_100_000
    assert peak < 200 * 1024, f"daemon RSS peaked at {peak} KiB"


def test_kill9_mid_run_marks_interrupted_then_restart(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, """
        [tasks.long]
        command = "sleep 600"
    """).start()
    try:
        with d.client() as client:
            run = client.run_task("long")
            d.events.wait_for(lambda e: e.kind == "run.started" and e.data["id"] == run["id"])
        d.kill9()
        # The row was committed before the process started (its "running" update may not be).
        assert rows(d.db_path, "SELECT status FROM run WHERE id = ?", run["id"]) in (
            [("running",)], [("queued",)])
        d.start()
        with d.client() as client:
            after = client.get_run(run["id"])
        assert after["status"] == "interrupted"
        assert "daemon stopped" in after["error"]
    finally:
        d.stop()


def test_reload_rejects_invalid_file_and_keeps_running_config(start_daemon) -> None:
    d = start_daemon("""
        [tasks.keep]
        command = "echo kept"
    """)
    d.write_config("""
        [tasks.keep]
        command = "echo kept"
        schedule = "61 * * * *"
        [tasks.bad]
        command = "true"
        overlap = "sometimes"
    """)
    with d.client() as client:
        with pytest.raises(ConfigError) as err:
            client.reload()
        texts = [str(i) for i in err.value.issues]
        assert any("keep" in t and "schedule" in t for t in texts)
        assert any("bad" in t and "overlap" in t for t in texts)
        assert [t["name"] for t in client.list_tasks()] == ["keep"]
        d.write_config("""
            [tasks.keep]
            command = "echo kept"
            [tasks.added]
            command = "true"
        """)
        assert client.reload() == {"added": ["added"], "removed": [], "changed": []}
        d.signal(signal.SIGHUP)  # the same file again through SIGHUP: nothing changes
        d.events.wait_for(lambda e: e.kind == "config.reloaded")
        assert [t["name"] for t in client.list_tasks()] == ["keep", "added"]


def test_reload_never_interrupts_running_runs(start_daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    d = start_daemon(f"""
        [tasks.long]
        command = "while [ ! -e {gate} ]; do sleep 0.05; done"
    """)
    with d.client() as client:
        run = client.run_task("long")
        d.events.wait_for(lambda e: e.kind == "run.started" and e.data["id"] == run["id"])
        d.write_config("""
            [tasks.other]
            command = "true"
        """)
        assert client.reload()["removed"] == ["long"]
        gate.touch()
        assert d.events.run_finished("long")[0]["status"] == "succeeded"


def test_pause_state_survives_restart_and_catch_up_runs_once(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, """
        [tasks.nightly]
        schedule = "0 3 * * *"
        command = "echo caught up"
        catch_up = true
        [tasks.hourly]
        schedule = "0 * * * *"
        command = "true"
    """).start()
    try:
        with d.client() as client:
            assert client.task_action("hourly", "pause")["state"] == "paused"
        d.stop()
        # Pretend the daemon was down for two days: the last handled fire is long ago.
        two_days_ago = time.time() - 2 * 86400
        with sqlite3.connect(d.db_path) as conn:
            conn.execute("UPDATE task_state SET last_fire_at = ?, first_seen_at = ?",
                         (two_days_ago, two_days_ago))
        d.start()
        with d.client() as client:
            caught = finished_runs(client, "nightly")
            assert [(r["trigger"], r["status"]) for r in caught] == [("catch-up", "succeeded")]
            assert client.get_task("hourly")["state"] == "paused"
    finally:
        d.stop()


def test_one_shot_completes_for_good_and_reboot_fires_at_start(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, """
        [tasks.once]
        schedule = "at 2020-01-01T00:00"
        command = "echo once"
        [tasks.boot]
        schedule = "@reboot"
        command = "echo booted"
    """).start()
    try:
        with d.client() as client:
            assert [r["trigger"] for r in finished_runs(client, "once")] == ["catch-up"]
            assert [r["trigger"] for r in finished_runs(client, "boot")] == ["reboot"]
            wait_until(lambda: client.get_task("once")["state"] == "completed",
                       what="one-shot to complete")
            client.reload()  # a reload is not a reboot
        d.stop()
        d.start()
        with d.client() as client:
            boots = finished_runs(client, "boot", count=2)
            assert [r["trigger"] for r in boots] == ["reboot", "reboot"]
            assert client.get_task("once")["state"] == "completed"
            assert len(client.list_runs(task="once")[0]) == 1
    finally:
        d.stop()


def test_sigterm_waits_for_running_task_within_grace(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, """
        [tasks.long]
        command = "trap 'echo got-term' TERM; sleep 600 & wait"
    """, daemon_section='shutdown_grace = "0.5s"\n').start()
    with d.client() as client:
        run = client.run_task("long")
        d.events.wait_for(lambda e: e.kind == "run.started" and e.data["id"] == run["id"])
    assert d.stop() == 0
    (status, error), = rows(d.db_path, "SELECT status, error FROM run WHERE id = ?", run["id"])
    assert status == "interrupted"
    assert "shutdown_grace" in error
    assert not (tmp_path / "state" / "ck.sock").exists()


def test_invalid_config_at_start_exits_2_naming_every_error(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, """
        [tasks.a]
        command = "true"
        schedule = "every fortnight"
        [tasks.b]
        handler = "nosuchmodule:f"
        on_failure = ["ghost"]
    """)
    d.start(wait=False)
    assert d.proc is not None
    assert d.proc.wait(30) == 2
    log = d.log()
    for needle in ("[tasks.a] schedule", "[tasks.b] handler", "[tasks.b] on_failure", "ghost"):
        assert needle in log, log


def test_second_daemon_on_same_socket_refuses(start_daemon) -> None:
    d = start_daemon("""
        [tasks.x]
        command = "true"
    """)
    result = subprocess.run([sys.executable, "-m", "cronkeeper.cli", "daemon", "--config",
                             str(d.config_path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "already serving" in result.stderr
    with d.client() as client:
        assert client.status()["pid"] == d.proc.pid  # the first daemon is untouched
    assert os.path.exists(d.socket_path)


def test_sd_notify_ready_reloading_stopping_and_clean_task_env(tmp_path: Path) -> None:
    import socket as _socket

    notify_path = tmp_path / "notify.sock"
    sink = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    sink.bind(str(notify_path))
    sink.settimeout(30)
    (tmp_path / "w").mkdir()
    d = DaemonProcess(tmp_path / "w", """
        [tasks.env]
        command = "echo notify=${NOTIFY_SOCKET:-unset} watchdog=${WATCHDOG_USEC:-unset}"
    """, env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "2000000"})
    try:
        d.start()
        messages: list[str] = []

        def receive_until(needle: str) -> None:
            while not any(needle in m for m in messages):
                messages.append(sink.recv(4096).decode())

        receive_until("READY=1")
        # READY comes only once the socket answers (the harness saw it answer; it exists now).
        assert d.socket_path.exists()
        assert any("STATUS=" in m for m in messages)
        receive_until("WATCHDOG=1")
        with d.client() as client:
            run = client.run_task("env")
            d.events.run_finished("env")
            assert client.get_output(run["id"]) == "notify=unset watchdog=unset\n"
        d.signal(signal.SIGHUP)
        receive_until("RELOADING=1")
        d.stop()
        receive_until("STOPPING=1")
    finally:
        d.stop()
        sink.close()


def test_spawn_failure_is_a_failed_run_with_a_clear_error(start_daemon, tmp_path: Path) -> None:
    d = start_daemon(f"""
        [tasks.missing]
        command = ["{tmp_path}/no-such-program"]
        [tasks.badcwd]
        command = "true"
        cwd = "{tmp_path}/no-such-dir"
    """)
    with d.client() as client:
        run = client.run_task("missing")
        done = d.events.run_finished("missing")[0]
        assert done["status"] == "failed"
        assert "no-such-program" in done["error"]
        assert d.events.run_events(run["id"]) == ["run.queued", "run.finished"]
        client.run_task("badcwd")
        bad = d.events.run_finished("badcwd")[0]
        assert bad["status"] == "failed" and "no-such-dir" in bad["error"]

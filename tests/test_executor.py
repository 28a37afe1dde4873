"""executor.py against real processes: exit status, output, limits, timeouts, descendants.

No mocks and no fixed sleeps: children signal readiness through files or their output, and
every wait has a generous deadline. Run ids are unique per test process, so ``-n 2`` workers
never touch each other's processes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cronkeeper.executor import (
    OutputCapture,
    ProcessOutcome,
    ProcessRun,
    ProcessSpec,
    enable_subreaper,
    install_child_watcher,
    reap_orphans,
    sweep_orphans,
)

DEADLINE = 30.0
_run_ids = itertools.count(os.getpid() * 1000)
MARK = b"\n[... %d bytes truncated ...]\n"


@pytest.fixture(autouse=True, scope="module")
def _subreaper() -> None:
    assert enable_subreaper()


def make_spec(argv: list[str] | tuple[str, ...], **kw: object) -> ProcessSpec:
    run_id = next(_run_ids)
    env = {"PATH": os.environ["PATH"], "CRONKEEPER_RUN_ID": str(run_id)}
    env.update(kw.pop("env", {}))  # type: ignore[arg-type]
    kw.setdefault("kill_grace", 5.0)
    return ProcessSpec(argv=tuple(argv), env=env, run_id=run_id, **kw)  # type: ignore[arg-type]


def sh(script: str, **kw: object) -> ProcessSpec:
    return make_spec(["/bin/sh", "-c", script], **kw)


async def run(spec: ProcessSpec) -> ProcessOutcome:
    proc = ProcessRun(spec)
    await proc.start()
    return await asyncio.wait_for(proc.wait(), DEADLINE)


async def poll_until(check: Callable[[], bool]) -> None:
    """Wait for a condition only the kernel or a child can change (no event to wait on)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


def has_line(path: Path) -> bool:
    return path.exists() and path.read_text().endswith("\n")


def is_gone(pid: int) -> bool:
    """Dead: no such process, or a zombie (reaped later by whoever is its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat[stat.rindex(b")") + 2:].startswith(b"Z")


# ---- exit status, errors, environment ----

async def test_success() -> None:
    out = await run(sh("echo hello"))
    assert (out.ok, out.exit_code, out.signal, out.error) == (True, 0, None, None)
    assert out.output == b"hello\n" and out.output_bytes == 6 and not out.output_truncated
    assert not out.timed_out and not out.cancelled and out.result is None


async def test_exit_code() -> None:
    out = await run(sh("exit 3"))
    assert (out.ok, out.exit_code, out.signal) == (False, 3, None)
    assert out.error == "exit status 3"


async def test_signal_death() -> None:
    out = await run(sh("kill -USR1 $$"))
    assert (out.ok, out.exit_code, out.signal) == (False, None, signal.SIGUSR1)
    assert out.error == "killed by SIGUSR1"


async def test_argv_runs_without_shell() -> None:
    out = await run(make_spec(["printf", "%s|", "a b", "$HOME", "*"]))
    assert out.ok and out.output == b"a b|$HOME|*|"


async def test_missing_executable() -> None:
    out = await run(make_spec(["no-such-command-ck"]))
    assert not out.ok and out.exit_code is None
    assert out.error == "command not found: no-such-command-ck"


async def test_missing_cwd(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    out = await run(make_spec(["/bin/true"], cwd=missing))
    assert not out.ok and out.error == f"cwd does not exist: {missing}"


async def test_cwd_used(tmp_path: Path) -> None:
    out = await run(sh("pwd", cwd=str(tmp_path)))
    assert out.ok and out.output.decode().strip() == str(tmp_path)


async def test_env_is_complete_and_passed() -> None:
    spec = sh('echo "$FOO|$CRONKEEPER_RUN_ID|${HOME-unset}"', env={"FOO": "bar baz"})
    out = await run(spec)
    assert out.output == f"bar baz|{spec.run_id}|unset\n".encode()


async def test_stdin_passed_and_closed() -> None:
    assert (await run(sh("cat", stdin=b"one\ntwo"))).output == b"one\ntwo"
    assert (await run(sh("cat"))).output == b""  # None: /dev/null, no hang


async def test_stdin_larger_than_pipe_buffer() -> None:
    data = os.urandom(1_000_000)
    out = await run(make_spec(["cat"], stdin=data, output_limit=2_000_000))
    assert out.ok and out.output == data
    # A child that never reads its stdin does not block the run either.
    assert (await run(make_spec(["/bin/true"], stdin=data))).ok


async def test_unknown_user() -> None:
    out = await run(make_spec(["/bin/true"], user="no-such-user-ck"))
    assert not out.ok and out.error == "unknown user: no-such-user-ck"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_runs_as_user() -> None:
    nobody = pwd.getpwnam("nobody")
    out = await run(make_spec(["id", "-u"], user="nobody"))
    assert out.ok and out.output == f"{nobody.pw_uid}\n".encode()


async def test_result_fd_is_inherited() -> None:
    # dash's >&N takes one digit only: reopen the inherited pipe through /dev/fd instead.
    script = 'printf \'{"ok": true, "result": [1, "x"]}\' > /dev/fd/"$CRONKEEPER_RESULT_FD"'
    out = await run(sh(script, want_result=True))
    assert out.ok and out.result == [1, "x"]
    out = await run(sh("exit 0", want_result=True))
    assert not out.ok and out.error == "handler exited without reporting a result"


async def test_many_concurrent_runs() -> None:
    outs = await asyncio.gather(*(run(sh(f"echo {i}")) for i in range(30)))
    assert [o.output for o in outs] == [f"{i}\n".encode() for i in range(30)]
    assert all(o.ok for o in outs)


# ---- output ----

async def test_stdout_and_stderr_interleaved_in_order() -> None:
    script = "for i in 1 2 3 4 5 6 7 8; do echo out$i; echo err$i >&2; done"
    out = await run(sh(script))
    expected = "".join(f"out{i}\nerr{i}\n" for i in range(1, 9)).encode()
    assert out.output == expected


@pytest.mark.parametrize("limit", [1000, 1001])
async def test_truncation_keeps_exact_head_and_tail(tmp_path: Path, limit: int) -> None:
    data = b"".join(b"%05d\n" % i for i in range(1000))  # 6000 bytes
    (tmp_path / "data").write_bytes(data)
    out = await run(make_spec(["cat", str(tmp_path / "data")], output_limit=limit))
    head, tail = limit // 2, limit - limit // 2
    assert out.output == data[:head] + MARK % (len(data) - limit) + data[-tail:]
    assert out.output_bytes == 6000 and out.output_truncated


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_flood_of_200mb_keeps_memory_flat() -> None:
    await run(sh("yes | head -c 5000000", output_limit=1 << 20))  # warm up allocators
    before = _rss_kib()
    out = await run(sh("yes | head -c 200000000", output_limit=1 << 20))
    growth_mib = (_rss_kib() - before) / 1024
    assert out.ok and out.output_bytes == 200_000_000 and out.output_truncated
    assert len(out.output) < (1 << 20) + 100
    assert growth_mib < 50, f"RSS grew by {growth_mib:.0f} MiB"


@pytest.mark.parametrize("limit", [0, 1, 2, 10, 1000])
@pytest.mark.parametrize("chunk", [1, 3, 7, 500, 501, 4096])
def test_capture_matches_reference(limit: int, chunk: int) -> None:
    data = bytes(i % 251 for i in range(2500))
    for size in (0, 1, 5, limit, limit + 1, 2500):
        cap = OutputCapture(limit)
        part = data[:size]
        for i in range(0, size, chunk):
            cap.feed(part[i:i + chunk])
        head, tail = limit // 2, limit - limit // 2
        if size <= limit:
            expected = part
        else:
            expected = part[:head] + MARK % (size - limit) + (part[size - tail:] if tail else b"")
        assert cap.getvalue() == expected, (limit, chunk, size)
        assert cap.total_bytes == size and cap.truncated == (size > limit)


async def test_follow_reports_a_gap_when_it_falls_behind() -> None:
    cap = OutputCapture(20)
    cap.feed(b"0123456789")
    follower = cap.follow()
    assert await anext(follower) == b"0123456789"
    cap.feed(b"abcdefghij" * 5)  # 50 bytes while the follower is not reading
    cap.close()
    rest = b"".join([chunk async for chunk in follower])
    assert rest == MARK % 40 + b"abcdefghij"
    assert cap.getvalue() == b"0123456789" + MARK % 40 + b"abcdefghij"


async def test_follow_yields_whole_output_of_slow_child() -> None:
    code = ("import sys, time\n"
            "for i in range(25):\n"
            "    sys.stdout.write(f'line {i}\\n'); sys.stdout.flush(); time.sleep(0.01)\n")
    proc = ProcessRun(make_spec([sys.executable, "-c", code]))
    await proc.start()
    chunks = [chunk async for chunk in proc.output.follow()]
    out = await asyncio.wait_for(proc.wait(), DEADLINE)
    expected = "".join(f"line {i}\n" for i in range(25)).encode()
    assert b"".join(chunks) == expected == out.output
    assert len(chunks) > 1  # it streamed, rather than arriving at the end


# ---- timeout, cancel, kill ----

async def test_timeout_kills_sigterm_ignorer_after_grace() -> None:
    out = await run(sh("trap '' TERM; sleep 1000", timeout=1.0, kill_grace=0.2))
    assert out.timed_out and not out.ok and not out.cancelled
    assert out.signal == signal.SIGKILL
    assert out.error == "killed by SIGKILL after timeout of 1s"


async def test_cancel_is_graceful() -> None:
    proc = ProcessRun(make_spec(["sleep", "1000"]))
    await proc.start()
    proc.cancel()
    out = await asyncio.wait_for(proc.wait(), DEADLINE)
    assert out.cancelled and not out.timed_out and not out.ok
    assert out.signal == signal.SIGTERM and out.error == "cancelled (killed by SIGTERM)"


async def test_kill_does_not_wait_for_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = ProcessRun(sh(f"trap '' TERM; echo > {ready}; sleep 1000", kill_grace=3600))
    await proc.start()
    await poll_until(lambda: has_line(ready))
    proc.kill()
    out = await asyncio.wait_for(proc.wait(), DEADLINE)  # the grace would be an hour
    assert out.cancelled and out.signal == signal.SIGKILL


async def test_cancel_before_start() -> None:
    proc = ProcessRun(make_spec(["sleep", "1000"]))
    proc.cancel()
    assert await proc.start() is None
    out = await proc.wait()
    assert out.cancelled and not out.ok and out.error == "cancelled before start"


# ---- no grandchild outlives its run ----

# A grandchild that ignores SIGTERM, writes its pid and sleeps. Variants: it stays in the
# run's process group; it calls setsid but keeps the output pipe; it calls setsid and closes
# its output too (detached like a daemon), so only the subreaper + environment marker find it.
GRANDCHILD = {
    "group": "sh -c 'trap \"\" TERM; echo $$ > {pid}; exec sleep 1000' &",
    "setsid": "setsid sh -c 'trap \"\" TERM; echo $$ > {pid}; exec sleep 1000' &",
    "detached": "setsid sh -c 'trap \"\" TERM; echo $$ > {pid}; exec sleep 1000' "
                ">/dev/null 2>&1 </dev/null &",
}


def leave_grandchild(kind: str, pid_file: Path, then: str = "echo done") -> str:
    return (GRANDCHILD[kind].format(pid=pid_file)
            + f"\nwhile [ ! -s {pid_file} ]; do sleep 0.01; done\n{then}")


@pytest.mark.parametrize("kind", sorted(GRANDCHILD))
async def test_grandchild_is_killed_at_normal_end(tmp_path: Path, kind: str) -> None:
    pid_file = tmp_path / "pid"
    out = await run(sh(leave_grandchild(kind, pid_file), kill_grace=0.2))
    assert out.ok and out.output == b"done\n"
    assert is_gone(int(pid_file.read_text()))


@pytest.mark.parametrize("kind", ["group", "detached"])
async def test_grandchild_is_killed_on_timeout(tmp_path: Path, kind: str) -> None:
    pid_file = tmp_path / "pid"
    script = leave_grandchild(kind, pid_file, then=f"echo > {tmp_path}/ready; sleep 1000")
    proc = ProcessRun(sh(script, kill_grace=0.2))
    await proc.start()
    await poll_until(lambda: has_line(tmp_path / "ready"))
    proc.cancel()
    out = await asyncio.wait_for(proc.wait(), DEADLINE)
    assert out.cancelled and out.signal == signal.SIGTERM
    assert is_gone(int(pid_file.read_text()))


async def test_sweep_kills_leftovers_while_other_runs_are_active(tmp_path: Path) -> None:
    # With another run active the run end cannot attribute an orphan cheaply: the sweep does.
    other = ProcessRun(make_spec(["sleep", "1000"]))
    await other.start()
    try:
        pid_file = tmp_path / "pid"
        out = await run(sh(leave_grandchild("detached", pid_file), kill_grace=0.2))
        assert out.ok
        await sweep_orphans(kill_grace=0.2)
        assert is_gone(int(pid_file.read_text()))
        assert not is_gone(other.pid or 0)  # the active run is left alone
    finally:
        other.cancel()
        assert (await asyncio.wait_for(other.wait(), DEADLINE)).cancelled


async def test_reap_orphans_collects_zombies(tmp_path: Path) -> None:
    other = ProcessRun(make_spec(["sleep", "1000"]))
    await other.start()
    try:
        pid_file = tmp_path / "pid"
        script = (f"setsid sh -c 'echo $$ > {pid_file}; read x' >/dev/null 2>&1 "
                  f"< {tmp_path}/fifo &\n"
                  f"while [ ! -s {pid_file} ]; do sleep 0.01; done")
        os.mkfifo(tmp_path / "fifo")
        fifo = os.open(tmp_path / "fifo", os.O_RDWR)  # keeps the orphan's `read` blocked
        try:
            assert (await run(sh(script))).ok
            orphan = int(pid_file.read_text())
            assert not is_gone(orphan)
        finally:
            os.write(fifo, b"go\n")  # the orphan exits: it becomes our zombie
            os.close(fifo)

        def reaped() -> bool:
            reap_orphans()
            return not Path(f"/proc/{orphan}").exists()
        await poll_until(reaped)
        assert not is_gone(other.pid or 0)  # the tracked child was not reaped behind asyncio
    finally:
        other.cancel()
        assert (await asyncio.wait_for(other.wait(), DEADLINE)).signal == signal.SIGTERM


async def test_install_child_watcher_keeps_asyncio_subprocesses_working() -> None:
    policy = asyncio.get_event_loop_policy()
    saved = getattr(policy, "_watcher", None)
    try:
        assert install_child_watcher()
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", "exit 4")
        assert await asyncio.wait_for(proc.wait(), DEADLINE) == 4
        assert (await run(sh("exit 0"))).ok
    finally:
        if sys.version_info < (3, 12):
            asyncio.set_child_watcher(saved)


async def test_no_file_descriptor_leaks(tmp_path: Path) -> None:
    await run(sh("true"))  # lazily opened things (e.g. /dev/null) are open by now
    before = len(os.listdir("/proc/self/fd"))
    specs = [sh("echo x", stdin=b"in", want_result=True), make_spec(["no-such-command-ck"]),
             make_spec(["/bin/true"], cwd=str(tmp_path / "nope"), stdin=b"x", want_result=True),
             make_spec(["/bin/true"], user="no-such-user-ck"),
             sh(leave_grandchild("setsid", tmp_path / "pid"), kill_grace=0.1)]
    await asyncio.gather(*(run(spec) for spec in specs))
    proc = ProcessRun(make_spec(["sleep", "1000"], stdin=b"x" * 200_000, want_result=True))
    await proc.start()
    proc.kill()
    await asyncio.wait_for(proc.wait(), DEADLINE)
    assert len(os.listdir("/proc/self/fd")) == before

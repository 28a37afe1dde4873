"""sdnotify.Notifier against real AF_UNIX datagram sockets, and the logging formats."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cronkeeper.logging_setup import JournalFormatter, journal_stream_matches, setup_logging
from cronkeeper.sdnotify import CHILD_ENV_STRIP, Notifier, child_environment

# ---------------------------------------------------------------------------------------------
# sd_notify


@pytest.fixture
def short_dir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, unless it is too long for sun_path (108 bytes): then a short private dir."""
    if len(str(tmp_path / "notify.sock")) < 100:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="ck-") as short:
        yield Path(short)


@pytest.fixture
def listener(short_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd, and its NOTIFY_SOCKET value."""
    path = short_dir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)  # a deadline for a datagram already sent, not a sleep
    yield sock, str(path)
    sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    # A unique abstract name so parallel workers never collide.
    name = f"cronkeeper-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(10)
    yield sock, "@" + name
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(65536).decode().split("\n")


def test_without_notify_socket_everything_is_a_noop() -> None:
    notifier = Notifier(env={})
    assert not notifier.enabled
    assert notifier.ready("up") is False
    assert notifier.status("x") is False
    assert notifier.reloading() is False
    assert notifier.stopping() is False
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval() is None


def test_ready_with_status_is_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    with Notifier(env={"NOTIFY_SOCKET": address}) as notifier:
        assert notifier.enabled
        assert notifier.ready("scheduler running, 3 tasks") is True
        assert received(sock) == ["READY=1", "STATUS=scheduler running, 3 tasks"]
        assert notifier.ready() is True
        assert received(sock) == ["READY=1"]


def test_abstract_socket_address(abstract_listener: tuple[socket.socket, str]) -> None:
    sock, address = abstract_listener
    with Notifier(env={"NOTIFY_SOCKET": address}) as notifier:
        assert notifier.watchdog() is True
        assert received(sock) == ["WATCHDOG=1"]


def test_each_message(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    with Notifier(env={"NOTIFY_SOCKET": address}) as notifier:
        notifier.stopping()
        assert received(sock) == ["STOPPING=1"]
        notifier.watchdog()
        assert received(sock) == ["WATCHDOG=1"]
        notifier.status("line one\nline two")
        # A newline would start a new assignment: STATUS is flattened to one line.
        assert received(sock) == ["STATUS=line one line two"]


def test_reloading_carries_monotonic_usec(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    with Notifier(env={"NOTIFY_SOCKET": address}) as notifier:
        notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = received(sock)
    assert lines[0] == "RELOADING=1"
    match = re.fullmatch(r"MONOTONIC_USEC=(\d+)", lines[1])
    assert match is not None
    assert before <= int(match.group(1)) <= after


def test_socket_is_close_on_exec(listener: tuple[socket.socket, str]) -> None:
    _, address = listener
    with Notifier(env={"NOTIFY_SOCKET": address}) as notifier:
        sock = notifier._sock
        assert sock is not None
        assert fcntl.fcntl(sock.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert not sock.get_inheritable()


def test_send_failure_never_raises(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = short_dir / "gone.sock"
    with caplog.at_level(logging.DEBUG, logger="cronkeeper.sdnotify"):
        with Notifier(env={"NOTIFY_SOCKET": str(missing)}) as notifier:
            assert notifier.enabled
            assert notifier.ready("x") is False
            assert notifier.watchdog() is False
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failures and all(r.levelno == logging.DEBUG for r in failures)


def test_unsupported_address_disables(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="cronkeeper.sdnotify"):
        notifier = Notifier(env={"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert "unsupported" in caplog.text


def test_close_makes_later_calls_noops(listener: tuple[socket.socket, str]) -> None:
    _, address = listener
    notifier = Notifier(env={"NOTIFY_SOCKET": address})
    notifier.close()
    assert not notifier.enabled
    assert notifier.ready() is False
    notifier.close()  # idempotent


def test_default_env_is_the_process_environment(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = listener
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    with Notifier() as notifier:
        notifier.status("from os.environ")
    assert received(sock) == ["STATUS=from os.environ"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, None, id="unset"),
        pytest.param({"WATCHDOG_USEC": "30000000"}, 30.0, id="no_pid"),
        pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "{pid}"}, 30.0, id="our_pid"),
        pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None, id="other_pid"),
        pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None, id="bad_pid"),
        pytest.param({"WATCHDOG_USEC": "500000"}, 0.5, id="fraction"),
        pytest.param({"WATCHDOG_USEC": "0"}, None, id="zero"),
        pytest.param({"WATCHDOG_USEC": "soon"}, None, id="malformed"),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    env = {k: v.replace("{pid}", str(os.getpid())) for k, v in env.items()}
    assert Notifier(env=env).watchdog_interval() == expected


def test_child_environment_strips_systemd_variables() -> None:
    env = {
        "PATH": "/usr/bin",
        "HOME": "/var/lib/cronkeeper",
        "INVOCATION_ID": "abc",
        "RUNTIME_DIRECTORY": "/run/cronkeeper",
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": "42",
        "LISTEN_FDS": "1",
        "LISTEN_PID": "42",
        "LISTEN_FDNAMES": "api",
        "JOURNAL_STREAM": "8:1234",
        "SYSTEMD_EXEC_PID": "42",
    }
    original = dict(env)
    child = child_environment(env)
    assert child == {
        "PATH": "/usr/bin",
        "HOME": "/var/lib/cronkeeper",
        "INVOCATION_ID": "abc",
        "RUNTIME_DIRECTORY": "/run/cronkeeper",
    }
    assert env == original  # a copy, the daemon's own environment is untouched
    assert {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"} <= CHILD_ENV_STRIP


# ---------------------------------------------------------------------------------------------
# logging_setup


@pytest.fixture
def clean_root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    aps_level = logging.getLogger("apscheduler").level
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(aps_level)


def test_plain_format_has_timestamp(clean_root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream)
    logging.getLogger("cronkeeper.test").warning("disk %s", "full")
    line = stream.getvalue().rstrip("\n")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING cronkeeper\.test: disk full", line
    ), line


def test_journal_format_priorities(clean_root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream, journal=True)
    log = logging.getLogger("cronkeeper.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert stream.getvalue().splitlines() == [
        "<7>cronkeeper.test: d",
        "<6>cronkeeper.test: i",
        "<4>cronkeeper.test: w",
        "<3>cronkeeper.test: e",
        "<2>cronkeeper.test: c",
    ]


def test_journal_format_prefixes_every_traceback_line(clean_root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    setup_logging(stream=stream, journal=True)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("cronkeeper.test").exception("run failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)
    assert lines[0] == "<3>cronkeeper.test: run failed"
    assert lines[-1] == "<3>RuntimeError: boom"


def test_journal_stream_detected_by_device_and_inode(
    clean_root_logger: logging.Logger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "stderr", "w+", encoding="utf-8") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert journal_stream_matches(stream)
        setup_logging("INFO", stream=stream)
        logging.getLogger("cronkeeper.test").info("hello")
        stream.flush()
        stream.seek(0)
        assert stream.read() == "<6>cronkeeper.test: hello\n"


@pytest.mark.parametrize("value", ["1:2", "garbage", ""])
def test_journal_stream_mismatch_means_plain(
    clean_root_logger: logging.Logger, tmp_path: Path, value: str
) -> None:
    with open(tmp_path / "stderr", "w", encoding="utf-8") as stream:
        assert not journal_stream_matches(stream, env={"JOURNAL_STREAM": value})
    # A stream with no file descriptor cannot be the journal.
    assert not journal_stream_matches(io.StringIO(), env={"JOURNAL_STREAM": "1:2"})


def test_setup_twice_replaces_its_handler(clean_root_logger: logging.Logger) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging(stream=first)
    handler = setup_logging(stream=second, journal=True)
    ours = [h for h in clean_root_logger.handlers if getattr(h, "_cronkeeper_handler", False)]
    assert ours == [handler]
    logging.getLogger("cronkeeper.test").info("once")
    assert first.getvalue() == ""
    assert second.getvalue() == "<6>cronkeeper.test: once\n"


def test_level_names_and_errors(clean_root_logger: logging.Logger) -> None:
    setup_logging("warning", stream=io.StringIO())
    assert clean_root_logger.level == logging.WARNING
    assert logging.getLogger("apscheduler").level == logging.WARNING
    setup_logging("debug", stream=io.StringIO())
    assert logging.getLogger("apscheduler").level == logging.NOTSET
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        setup_logging("loud")


def test_journal_formatter_is_usable_alone() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "a\nb", None, None)
    assert JournalFormatter().format(record) == "<4>x: a\n<4>b"

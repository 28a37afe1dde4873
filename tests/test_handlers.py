"""The built-in handlers in handlers/, against real files, a real SQLite database, a real
local HTTP server and a small local SMTP sink (all on 127.0.0.1, port 0)."""

from __future__ import annotations

import base64
import email as email_lib
import email.policy
import http.server
import importlib
import importlib.util
import json
import os
import socket
import socketserver
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ROOT / "handlers"
DAY = 86400

UPSTREAM_FAILED: dict[str, Any] = {
    "id": 41,
    "task": "backup-db",
    "trigger": "schedule",
    "attempt": 3,
    "status": "failed",
    "exit_code": 2,
    "signal": None,
    "error": "exited with status 2",
    "started_at": "2026-01-01T02:30:00+01:00",
    "finished_at": "2026-01-01T02:30:05+01:00",
    "duration_ms": 5000,
    "output_bytes": 120,
    "output_truncated": False,
}
UPSTREAM_OK = {**UPSTREAM_FAILED, "id": 42, "status": "succeeded", "exit_code": 0, "error": None}


def _load(name: str) -> ModuleType:
    # The runner imports handlers with handlers_path first on sys.path; do the same, only for
    # the import, so other test modules in this worker see an unchanged sys.path.
    sys.path.insert(0, str(HANDLERS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(HANDLERS))


@pytest.fixture(scope="module")
def maintenance() -> ModuleType:
    return _load("maintenance")


@pytest.fixture(scope="module")
def notify() -> ModuleType:
    return _load("notify")


@pytest.fixture(scope="module")
def http_ping() -> ModuleType:
    return _load("http_ping")


@pytest.fixture(autouse=True)
def _no_daemon_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The handlers fall back to CRONKEEPER_* variables; a test run inside a cronkeeper task
    # must not leak them in.
    for name in list(os.environ):
        if name.startswith("CRONKEEPER_"):
            monkeypatch.delenv(name)


def test_no_builtin_shadows_a_stdlib_module() -> None:
    # handlers/http.py would shadow the stdlib `http` package for every handler (see
    # handlers/http_ping.py); keep all built-in names clear of the standard library.
    names = {p.stem for p in HANDLERS.glob("*.py")} | {p.name for p in HANDLERS.iterdir() if p.is_dir()}
    assert not names & set(sys.stdlib_module_names)


# ---------------------------------------------------------------------------------------------
# maintenance:cleanup_files


def _file(path: Path, age_days: float, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "logs"
    _file(root / "old.log", 40, size=100)
    _file(root / "old.txt", 40, size=7)
    _file(root / "new.log", 1)
    _file(root / "sub" / "deep-old.log", 40, size=5)
    _file(root / "sub" / "deep-new.log", 1)
    return root


def test_cleanup_deletes_old_matching_files(maintenance: ModuleType, tree: Path) -> None:
    result = maintenance.cleanup_files(
        {"path": str(tree), "glob": "*.log", "older_than_days": 30}
    )
    assert result == {
        "deleted": [str(tree / "old.log")],
        "count": 1,
        "bytes": 100,
        "dry_run": False,
        "errors": [],
        "success": True,
    }
    assert sorted(p.name for p in tree.iterdir()) == ["new.log", "old.txt", "sub"]
    assert (tree / "sub" / "deep-old.log").exists()  # not recursive by default


def test_cleanup_recursive_and_default_glob(maintenance: ModuleType, tree: Path) -> None:
    result = maintenance.cleanup_files({"path": str(tree), "older_than_days": 30, "recursive": True})
    assert sorted(result["deleted"]) == sorted(
        str(p) for p in (tree / "old.log", tree / "old.txt", tree / "sub" / "deep-old.log")
    )
    assert result["count"] == 3 and result["bytes"] == 112
    remaining = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    assert remaining == ["new.log", "sub/deep-new.log"]
    assert (tree / "sub").is_dir()  # directories are never removed


def test_cleanup_dry_run_deletes_nothing(maintenance: ModuleType, tree: Path) -> None:
    before = sorted(tree.rglob("*"))
    result = maintenance.cleanup_files(
        {"path": str(tree), "older_than_days": 30, "recursive": True, "dry_run": True}
    )
    assert result["dry_run"] is True and result["count"] == 3
    assert sorted(tree.rglob("*")) == before


def test_cleanup_fractional_days(maintenance: ModuleType, tmp_path: Path) -> None:
    _file(tmp_path / "a", 0.5)
    _file(tmp_path / "b", 0.1)
    result = maintenance.cleanup_files({"path": str(tmp_path), "older_than_days": 0.25})
    assert result["deleted"] == [str(tmp_path / "a")]


def test_cleanup_never_follows_or_deletes_symlinks(maintenance: ModuleType, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    precious = _file(outside / "precious.log", 400)
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "link.log").symlink_to(precious)
    old = time.time() - 400 * DAY
    os.utime(root / "link.log", (old, old), follow_symlinks=False)

    result = maintenance.cleanup_files({"path": str(root), "older_than_days": 1, "recursive": True})
    assert result["count"] == 0
    assert precious.exists()
    assert (root / "link.log").is_symlink() and (root / "escape").is_symlink()


def test_cleanup_path_may_be_a_symlink_to_a_directory(maintenance: ModuleType, tree: Path) -> None:
    alias = tree.parent / "alias"
    alias.symlink_to(tree, target_is_directory=True)
    result = maintenance.cleanup_files({"path": str(alias), "older_than_days": 30, "glob": "old.*"})
    assert result["count"] == 2
    assert not (tree / "old.log").exists()


def test_cleanup_lists_at_most_max_listed(
    maintenance: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "MAX_LISTED", 2)
    for i in range(5):
        _file(tmp_path / f"f{i}", 10, size=1)
    result = maintenance.cleanup_files({"path": str(tmp_path), "older_than_days": 1})
    assert result["count"] == 5 and result["bytes"] == 5
    assert len(result["deleted"]) == 2 and result["deleted_truncated"] is True
    assert list(tmp_path.iterdir()) == []


def test_cleanup_reports_undeletable_files_and_fails(
    maintenance: ModuleType, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root (CI) no permission setting makes unlink fail, so the refusal is simulated;
    # everything else is real.
    real_unlink = os.unlink

    def unlink(path: Any, *, dir_fd: int | None = None) -> None:
        if path == "old.log":
            raise PermissionError(1, "Operation not permitted")
        real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(maintenance.os, "unlink", unlink)
    result = maintenance.cleanup_files({"path": str(tree), "older_than_days": 30})
    monkeypatch.undo()
    assert result["success"] is False
    assert result["errors"] == [f"{tree / 'old.log'}: Operation not permitted"]
    assert result["error"] == f"1 path could not be cleaned up: {tree / 'old.log'}: Operation not permitted"
    assert result["deleted"] == [str(tree / "old.txt")]  # the rest was still done
    assert (tree / "old.log").exists() and not (tree / "old.txt").exists()


def test_cleanup_accepts_the_upstream_key(maintenance: ModuleType, tree: Path) -> None:
    # Any built-in can be an on_success target: the daemon adds params["upstream"].
    result = maintenance.cleanup_files(
        {"path": str(tree), "older_than_days": 30, "upstream": UPSTREAM_OK}
    )
    assert result["success"] is True


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"older_than_days": 1}, "cleanup_files: 'path' is required", id="no_path"),
        pytest.param({"path": "{tmp}"}, "cleanup_files: 'older_than_days' is required", id="no_age"),
        pytest.param({"path": "{tmp}", "older_than_days": "30"}, "'older_than_days' must be a number", id="age_string"),
        pytest.param({"path": "{tmp}", "older_than_days": True}, "'older_than_days' must be a number", id="age_bool"),
        pytest.param({"path": "{tmp}", "older_than_days": -1}, "'older_than_days' must be at least 0", id="age_negative"),
        pytest.param({"path": "{tmp}", "older_than_days": 1, "recursive": "yes"}, "'recursive' must be true or false", id="recursive_string"),
        pytest.param({"path": "{tmp}", "older_than_days": 1, "dry_run": 1}, "'dry_run' must be true or false", id="dry_run_int"),
        pytest.param({"path": "{tmp}", "older_than_days": 1, "glob": "a/*"}, "'glob' matches file names", id="glob_slash"),
        pytest.param({"path": "{tmp}", "older_than_days": 1, "glob": 5}, "'glob' must be a string", id="glob_int"),
        pytest.param({"path": "", "older_than_days": 1}, "'path' must not be empty", id="path_empty"),
        pytest.param({"path": "{tmp}/missing", "older_than_days": 1}, "does not exist", id="path_missing"),
        pytest.param({"path": "{tmp}/file", "older_than_days": 1}, "is not a directory", id="path_file"),
        pytest.param({"path": "/", "older_than_days": 1}, "must not be the root directory", id="path_root"),
        pytest.param({"path": "{tmp}", "older_than_days": 1, "age": 3}, "unknown parameter 'age'; allowed: dry_run, glob", id="unknown"),
    ],
)
def test_cleanup_validation(
    maintenance: ModuleType, tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    (tmp_path / "file").write_text("x")
    params = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in params.items()}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        maintenance.cleanup_files(params)
    assert (tmp_path / "file").exists()


def test_params_must_be_a_mapping(maintenance: ModuleType) -> None:
    with pytest.raises(ValueError, match="cleanup_files: params must be a table"):
        maintenance.cleanup_files(["path"])


# ---------------------------------------------------------------------------------------------
# maintenance:sqlite_backup


@pytest.fixture
def live_db(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """A WAL database with rows, kept open (as the daemon keeps its own) during the backup."""
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, task TEXT, output BLOB)")
    with conn:
        conn.executemany(
            "INSERT INTO runs (task, output) VALUES (?, ?)",
            [(f"task-{i}", os.urandom(64)) for i in range(500)],
        )
    yield path, conn
    conn.close()


def _rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, task, output FROM runs ORDER BY id").fetchall()
    finally:
        conn.close()


def test_sqlite_backup_copies_a_live_database(
    maintenance: ModuleType, live_db: tuple[Path, sqlite3.Connection], tmp_path: Path
) -> None:
    source, conn = live_db
    backups = tmp_path / "backups"
    backups.mkdir()
    destination = backups / "app-backup.db"
    result = maintenance.sqlite_backup({"source": str(source), "destination": str(destination)})
    assert result == {
        "source": str(source),
        "destination": str(destination),
        "bytes": destination.stat().st_size,
    }
    assert _rows(destination) == conn.execute("SELECT id, task, output FROM runs ORDER BY id").fetchall()
    assert len(_rows(destination)) == 500
    assert [p.name for p in backups.iterdir()] == ["app-backup.db"]  # no temp file left
    assert stat.S_IMODE(destination.stat().st_mode) == 0o600


def test_sqlite_backup_into_directory_replaces_old_backup(
    maintenance: ModuleType, live_db: tuple[Path, sqlite3.Connection], tmp_path: Path
) -> None:
    source, conn = live_db
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "app.db").write_bytes(b"yesterday's backup")
    result = maintenance.sqlite_backup({"source": str(source), "destination": str(backups)})
    assert result["destination"] == str(backups / "app.db")
    with conn:
        conn.execute("DELETE FROM runs WHERE id > 10")
    assert len(_rows(backups / "app.db")) == 500  # a snapshot, independent of the source


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"destination": "{tmp}/b.db"}, "sqlite_backup: 'source' is required", id="no_source"),
        pytest.param({"source": "{tmp}/app.db"}, "sqlite_backup: 'destination' is required", id="no_destination"),
        pytest.param({"source": "{tmp}/nope.db", "destination": "{tmp}/b.db"}, "'source' .* is not an existing file", id="source_missing"),
        pytest.param({"source": "{tmp}/app.db", "destination": "{tmp}/no/dir/b.db"}, "'destination' directory .* does not exist", id="dest_dir_missing"),
        pytest.param({"source": "{tmp}/app.db", "destination": "{tmp}/app.db"}, "'destination' is the source database itself", id="same_file"),
        pytest.param({"source": "{tmp}/app.db", "destination": "{tmp}/b.db", "vacuum": True}, "unknown parameter 'vacuum'", id="unknown"),
    ],
)
def test_sqlite_backup_validation(
    maintenance: ModuleType,
    live_db: tuple[Path, sqlite3.Connection],
    tmp_path: Path,
    params: dict[str, Any],
    message: str,
) -> None:
    params = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in params.items()}
    with pytest.raises(ValueError, match=message):
        maintenance.sqlite_backup(params)
    assert not (tmp_path / "nope.db").exists()  # a missing source is never created


def test_sqlite_backup_of_a_non_database_fails_cleanly(maintenance: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database, just some text " * 100)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="sqlite_backup: cannot back up .*notes.txt"):
        maintenance.sqlite_backup({"source": str(tmp_path / "notes.txt"), "destination": str(out)})
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# A real HTTP server on 127.0.0.1 for notify:webhook and http_ping:ping


class _Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.requests: list[dict[str, Any]] = []
        # path -> (status, extra headers); everything else answers 200.
        self.answers: dict[str, tuple[int, dict[str, str]]] = {}

    def url(self, path: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{path}"


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    server: _Recorder

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        # Recorded before answering, so the client has it by the time its call returns.
        self.server.requests.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        status, headers = self.server.answers.get(self.path.split("?")[0], (200, {}))
        payload = b"nope" if status >= 300 else b"OK"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        # Keep the test output clean; the requests are recorded on the server instead.
        return None


@pytest.fixture
def web() -> Iterator[_Recorder]:
    server = _Recorder()
    # A short poll interval only makes shutdown() at teardown return sooner.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="test-http", daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# notify:webhook


def test_webhook_posts_the_upstream_run(notify: ModuleType, web: _Recorder) -> None:
    result = notify.webhook(
        {"url": web.url("/hook"), "headers": {"Authorization": "Bearer t0k"}, "upstream": UPSTREAM_FAILED}
    )
    assert result == {"url": web.url("/hook"), "status_code": 200}
    [request] = web.requests
    assert request["method"] == "POST" and request["path"] == "/hook"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == "Bearer t0k"
    assert request["headers"]["User-Agent"].startswith("cronkeeper/")
    body = json.loads(request["body"])
    assert body["task"] == "backup-db" and body["run_id"] == 41 and body["status"] == "failed"
    assert body["upstream"] == UPSTREAM_FAILED
    assert body["host"] == socket.gethostname()
    assert body["text"].startswith("cronkeeper: backup-db failed (exit 2, 5.0s) on ")
    assert body["text"].endswith(": exited with status 2")


def test_webhook_by_hand_reports_its_own_task(
    notify: ModuleType, web: _Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRONKEEPER_TASK", "alert-ops")
    monkeypatch.setenv("CRONKEEPER_RUN_ID", "7")
    notify.webhook({"url": web.url("/hook"), "timeout": "5s"})
    body = json.loads(web.requests[0]["body"])
    assert (body["task"], body["run_id"], body["status"], body["upstream"]) == ("alert-ops", 7, None, None)


@pytest.mark.parametrize("status", [500, 404, 302])
def test_webhook_non_2xx_fails_with_the_status(notify: ModuleType, web: _Recorder, status: int) -> None:
    web.answers["/hook"] = (status, {"Location": web.url("/elsewhere")})
    with pytest.raises(RuntimeError, match=f"webhook: .*/hook answered HTTP {status}"):
        notify.webhook({"url": web.url("/hook"), "upstream": UPSTREAM_FAILED})
    assert [r["path"] for r in web.requests] == ["/hook"]  # redirects are not followed


def test_webhook_unreachable(notify: ModuleType) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    with pytest.raises(RuntimeError, match="webhook: cannot reach http://127.0.0.1"):
        notify.webhook({"url": url, "timeout": 5})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({}, "webhook: 'url' is required", id="no_url"),
        pytest.param({"url": "ftp://127.0.0.1/x"}, "'url' must be an http:// or https:// URL", id="ftp"),
        pytest.param({"url": "127.0.0.1/x"}, "'url' must be an http:// or https:// URL", id="no_scheme"),
        pytest.param({"url": "http://127.0.0.1/", "timeout": 0}, "'timeout' must be greater than zero", id="timeout_zero"),
        pytest.param({"url": "http://127.0.0.1/", "timeout": "soon"}, "'timeout' must be a number of seconds", id="timeout_text"),
        pytest.param({"url": "http://127.0.0.1/", "headers": {"X": 1}}, "'headers' must be a table of string values", id="header_int"),
        pytest.param({"url": "http://127.0.0.1/", "method": "PUT"}, "webhook: unknown parameter 'method'", id="unknown"),
        pytest.param({"url": "http://127.0.0.1/", "upstream": "41"}, "'upstream' must be a run object", id="upstream_text"),
    ],
)
def test_webhook_validation(notify: ModuleType, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        notify.webhook(params)


# ---------------------------------------------------------------------------------------------
# http_ping:ping


@pytest.mark.parametrize(
    ("params", "path", "signal"),
    [
        pytest.param({"upstream": UPSTREAM_FAILED}, "/ping/abc/fail", "fail", id="auto_failed"),
        pytest.param({"upstream": {**UPSTREAM_FAILED, "status": "timed_out"}}, "/ping/abc/fail", "fail", id="auto_timed_out"),
        pytest.param({"upstream": UPSTREAM_OK}, "/ping/abc", "success", id="auto_succeeded"),
        pytest.param({}, "/ping/abc", "success", id="auto_heartbeat"),
        pytest.param({"signal": "start"}, "/ping/abc/start", "start", id="start"),
        pytest.param({"signal": "fail"}, "/ping/abc/fail", "fail", id="fail"),
        pytest.param({"signal": "success", "upstream": UPSTREAM_FAILED}, "/ping/abc", "success", id="explicit_wins"),
    ],
)
def test_ping_signals(
    http_ping: ModuleType, web: _Recorder, params: dict[str, Any], path: str, signal: str
) -> None:
    result = http_ping.ping({"url": web.url("/ping/abc"), **params})
    assert result == {"url": web.url(path), "status_code": 200, "signal": signal}
    assert [r["path"] for r in web.requests] == [path]


def test_ping_keeps_query_and_trailing_slash(http_ping: ModuleType, web: _Recorder) -> None:
    result = http_ping.ping({"url": web.url("/ping/abc/?rid=1"), "signal": "start"})
    assert result["url"] == web.url("/ping/abc/start?rid=1")
    assert web.requests[0]["path"] == "/ping/abc/start?rid=1"


def test_ping_body_summarises_the_upstream_run(http_ping: ModuleType, web: _Recorder) -> None:
    http_ping.ping({"url": web.url("/p"), "upstream": UPSTREAM_FAILED})
    body = web.requests[0]["body"].decode()
    assert body.startswith("backup-db failed (exit 2, 5.0s) on ")


def test_ping_non_2xx_fails(http_ping: ModuleType, web: _Recorder) -> None:
    web.answers["/p/fail"] = (404, {})
    with pytest.raises(RuntimeError, match="ping: .*/p/fail answered HTTP 404"):
        http_ping.ping({"url": web.url("/p"), "signal": "fail"})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({}, "ping: 'url' is required", id="no_url"),
        pytest.param({"url": "http://127.0.0.1/", "signal": "ok"}, "'signal' must be one of auto, start, success, fail, not 'ok'", id="bad_signal"),
        pytest.param({"url": "http://127.0.0.1/", "timeout": -1}, "'timeout' must be greater than zero", id="bad_timeout"),
        pytest.param({"url": "http://127.0.0.1/", "retries": 3}, "ping: unknown parameter 'retries'; allowed: signal, timeout, url", id="unknown"),
    ],
)
def test_ping_validation(http_ping: ModuleType, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        http_ping.ping(params)


# ---------------------------------------------------------------------------------------------
# A tiny SMTP sink on 127.0.0.1 for notify:email (test-only; speaks just what smtplib sends)


class _SMTPSink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SMTPSession)
        self.messages: list[dict[str, Any]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _SMTPSession(socketserver.StreamRequestHandler):
    server: _SMTPSink

    def reply(self, *lines: str) -> None:
        # Multi-line replies use "250-" for all but the last line (RFC 5321 4.2.1).
        out = [f"{line[:3]}-{line[4:]}" for line in lines[:-1]] + [lines[-1]]
        self.wfile.write("".join(f"{line}\r\n" for line in out).encode())

    def handle(self) -> None:
        self.reply("220 127.0.0.1 test sink")
        envelope: dict[str, Any] = {"from": None, "to": [], "auth": None}
        for raw in self.rfile:
            command = raw.decode().rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250 127.0.0.1", "250 AUTH PLAIN", "250 8BITMIME")
            elif verb == "HELO" or verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "AUTH":
                _, user, password = base64.b64decode(command.split()[2]).split(b"\0")
                envelope["auth"] = (user.decode(), password.decode())
                self.reply("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                envelope["from"] = command.split(":", 1)[1].split()[0].strip("<>")
                self.reply("250 OK")
            elif verb == "RCPT":
                envelope["to"].append(command.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = b""
                for line in self.rfile:
                    if line == b".\r\n":
                        break
                    data += line[1:] if line.startswith(b"..") else line  # dot-unstuffing
                message = email_lib.message_from_bytes(data, policy=email.policy.default)
                self.server.messages.append({**envelope, "message": message})
                self.reply("250 OK queued")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")


@pytest.fixture
def smtp() -> Iterator[_SMTPSink]:
    server = _SMTPSink()
    # A short poll interval only makes shutdown() at teardown return sooner.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="test-smtp", daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_email_sends_the_upstream_summary(notify: ModuleType, smtp: _SMTPSink) -> None:
    result = notify.email(
        {
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "from": "cron@example.test",
            "to": ["ops@example.test", "dev@example.test"],
            "upstream": UPSTREAM_FAILED,
        }
    )
    assert result == {
        "to": ["ops@example.test", "dev@example.test"],
        "subject": "[cronkeeper] backup-db failed",
        "smtp_host": "127.0.0.1",
    }
    [sent] = smtp.messages
    assert sent["from"] == "cron@example.test"
    assert sent["to"] == ["ops@example.test", "dev@example.test"]
    assert sent["auth"] is None
    message = sent["message"]
    assert message["Subject"] == "[cronkeeper] backup-db failed"
    assert message["To"] == "ops@example.test, dev@example.test"
    body = message.get_content()
    assert body.startswith("backup-db failed (exit 2, 5.0s) on ")
    for expected in ("Run:           41", "Exit code:     2", "Error:         exited with status 2",
                     "Duration:      5.0s", "Attempt:       3", "cronkeeper logs 41"):
        assert expected in body, body


def test_email_single_recipient_template_and_auth(notify: ModuleType, smtp: _SMTPSink) -> None:
    result = notify.email(
        {
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "to": "ops@example.test",
            "subject": "{host}: {task} -> {status} ({exit_code}) #{run_id}",
            "username": "cron",
            "password": "s3cret",
            "upstream": UPSTREAM_OK,
        }
    )
    [sent] = smtp.messages
    assert sent["to"] == ["ops@example.test"]
    assert sent["auth"] == ("cron", "s3cret")
    assert result["subject"] == f"{socket.gethostname()}: backup-db -> succeeded (0) #42"
    assert sent["message"]["Subject"] == result["subject"]
    assert sent["from"].startswith("cronkeeper@")


def test_email_starttls_unsupported_by_server_fails(notify: ModuleType, smtp: _SMTPSink) -> None:
    with pytest.raises(RuntimeError, match=r"email: sending through 127\.0\.0\.1:\d+ failed: STARTTLS"):
        notify.email({"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "to": "a@example.test",
                      "starttls": True})
    assert smtp.messages == []


def test_email_unreachable_server(notify: ModuleType) -> None:
    port = _closed_port()
    with pytest.raises(RuntimeError, match=f"email: sending through 127.0.0.1:{port} failed"):
        notify.email({"smtp_host": "127.0.0.1", "smtp_port": port, "to": "a@example.test", "timeout": 5})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({}, "email: 'to' is required", id="no_to"),
        pytest.param({"to": []}, "'to' must be a string or a non-empty list", id="to_empty"),
        pytest.param({"to": ["a@x.test", 3]}, "'to' must contain only non-empty strings", id="to_int"),
        pytest.param({"to": "a@x.test", "subject": "{oops}"}, "'subject' is not a valid template .*fields: task, status", id="bad_field"),
        pytest.param({"to": "a@x.test", "subject": "{task"}, "'subject' is not a valid template", id="bad_brace"),
        pytest.param({"to": "a@x.test", "smtp_port": 0}, "'smtp_port' must be between 1 and 65535", id="port_zero"),
        pytest.param({"to": "a@x.test", "smtp_port": "25"}, "'smtp_port' must be an integer", id="port_text"),
        pytest.param({"to": "a@x.test", "ssl": True, "starttls": True}, "'starttls' cannot be combined with 'ssl'", id="two_tls"),
        pytest.param({"to": "a@x.test", "username": "u"}, "'username' and 'password' must be given together", id="user_only"),
        pytest.param({"to": "a@x.test", "starttls": "yes"}, "'starttls' must be true or false", id="tls_text"),
        pytest.param({"to": "a@x.test", "cc": "b@x.test"}, "email: unknown parameter 'cc'", id="unknown"),
    ],
)
def test_email_validation(notify: ModuleType, params: dict[str, Any], message: str) -> None:
    # Validation happens before any connection: the port is never contacted.
    with pytest.raises(ValueError, match=message):
        notify.email({"smtp_host": "127.0.0.1", "smtp_port": _closed_port(), **params})


# ---------------------------------------------------------------------------------------------
# Through the real runner child, as the daemon runs handlers


def _runner_available() -> bool:
    return importlib.util.find_spec("cronkeeper.runner") is not None


def _run_handler(handler: str, params: dict[str, Any], env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    """Run ``python -m cronkeeper.runner`` as the engine does; return (exit code, message, output)."""
    read_fd, write_fd = os.pipe()
    child_env = {**os.environ, **(env or {}), "CRONKEEPER_RESULT_FD": str(write_fd)}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cronkeeper.runner", handler, str(HANDLERS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env,
            pass_fds=(write_fd,),
            cwd=str(ROOT),
        )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as result_pipe:
        output, _ = proc.communicate(json.dumps(params).encode(), timeout=60)
        raw = result_pipe.read()
    # The runner reports {"ok": bool, "result": ..., "error": ...} on the result fd.
    message = json.loads(raw) if raw.strip() else None
    return proc.returncode, message, output.decode(errors="replace")


needs_runner = pytest.mark.skipif(
    not _runner_available(), reason="cronkeeper/runner.py is not there yet (written separately)"
)


@needs_runner
def test_runner_runs_cleanup_files(tree: Path) -> None:
    code, message, output = _run_handler(
        "maintenance:cleanup_files", {"path": str(tree), "older_than_days": 30, "dry_run": True}
    )
    assert code == 0, output
    assert message["ok"] is True, message
    assert message["result"]["count"] == 2 and message["result"]["dry_run"] is True
    assert (tree / "old.log").exists()


@needs_runner
def test_runner_webhook_imports_urllib_without_shadowing(web: _Recorder) -> None:
    # urllib.request imports http.client: this proves no handler module shadows `http`.
    code, message, output = _run_handler(
        "notify:webhook", {"url": web.url("/hook"), "upstream": UPSTREAM_FAILED}
    )
    assert code == 0, output
    assert message == {"ok": True, "result": {"url": web.url("/hook"), "status_code": 200}}
    assert json.loads(web.requests[0]["body"])["run_id"] == 41


@needs_runner
def test_runner_fails_the_run_on_invalid_params() -> None:
    code, message, output = _run_handler("maintenance:cleanup_files", {"older_than_days": 1})
    assert code != 0
    assert message["ok"] is False
    assert message["error"] == "ValueError: cleanup_files: 'path' is required"
    assert "cleanup_files: 'path' is required" in output  # the traceback, in the run's output


@needs_runner
def test_runner_http_ping_from_handlers_path(web: _Recorder) -> None:
    code, message, output = _run_handler(
        "http_ping:ping", {"url": web.url("/hc/1"), "upstream": UPSTREAM_FAILED}
    )
    assert code == 0, output
    assert message["result"]["url"] == web.url("/hc/1/fail")
    assert [r["path"] for r in web.requests] == ["/hc/1/fail"]

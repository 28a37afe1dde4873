"""config.py and units.py: converters, defaults, paths, and reporting every error at once."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from types import MappingProxyType

import pytest

from cronkeeper.config import (
    DEFAULTS_KEYS,
    TASK_KEYS,
    Config,
    TaskConfig,
    host_timezone,
    load_config,
    parse_config,
    read_socket_path,
)
from cronkeeper.errors import ConfigError
from cronkeeper.units import format_duration, parse_duration, parse_size
from cronkeeper.vocab import Overlap


def write(tmp_path: Path, body: str, name: str = "cronkeeper.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def issues_of(path: Path) -> list[tuple[str | None, str | None, str | None, str]]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [(i.task, i.section, i.key, i.message) for i in caught.value.issues]


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), ("0", 0),
    ("90", 90), (90, 90), (1.5, 1.5), (0, 0), ("1h 30m", 5400), ("1.5h", 5400), ("1w2d3h4m5s",
    604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5), ("30S", 30),
], ids=str)
def test_parse_duration_accepts(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value", [
    "", "  ", "-5s", "-1", -1, "5x", "1h1h", "h", "1.h", "abc", True, False, None, [], "5 m s",
    float("inf"), float("nan"),
], ids=repr)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)  # type: ignore[arg-type]
    message = str(caught.value)
    assert '"1h30m"' in message  # shows the accepted form
    if isinstance(value, str):
        assert repr(value) in message  # and the value


@pytest.mark.parametrize(("text", "size"), [
    ("512KiB", 512 * 1024), ("1MiB", 1024**2), ("1GiB", 1024**3), ("10KB", 10_000),
    ("2MB", 2_000_000), ("100B", 100), ("1mib", 1024**2), ("1.5MiB", 1536 * 1024), (512, 512),
    ("4096", 4096), (1024.0, 1024),
], ids=str)
def test_parse_size_accepts(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("value", ["", "1M", "1K", "x", "-1KiB", -1, True, 1.5, "1 MiBs", None],
                         ids=repr)
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="MiB"):
        parse_size(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (45, "45s"), (90, "1m30s"), (5400, "1h30m"), (86400, "1d"), (604800, "1w"),
    (864000, "10d"), (3661, "1h1m1s"), (1.5, "1.5s"),
])
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


# --------------------------------------------------------------------------- happy paths


def test_minimal_config_has_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        [tasks.hello]
        command = "echo hi"
    """))
    daemon = config.daemon
    assert daemon.socket == tmp_path / ".cronkeeper/cronkeeper.sock"
    assert daemon.database == str(tmp_path / ".cronkeeper/cronkeeper.db")
    assert (daemon.socket_mode, daemon.max_concurrent_runs, daemon.keep_runs) == (0o660, 16, 1000)
    assert (daemon.output_limit, daemon.keep_days, daemon.shutdown_grace) == (1024**2, 90, 30)
    assert daemon.timezone == host_timezone()
    task = config.tasks["hello"]
    assert task.kind == "command" and task.schedule is None and task.timezone == daemon.timezone
    assert (task.timeout, task.kill_grace, task.retries, task.retry_delay) == (0, 10, 0, 30)
    assert (task.retry_backoff, task.retry_max_delay, task.jitter) == (2.0, 3600, 0)
    assert task.overlap is Overlap.SKIP and task.catch_up is False and task.enabled is True
    assert dict(task.env) == {} and dict(task.params) == {} and task.on_failure == ()


def test_sample_config_loads(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parent.parent / "cronkeeper.toml"
    if not (sample.parent / "handlers" / "maintenance.py").exists():
        pytest.skip("handlers/maintenance.py not written yet")
    config = load_config(sample)
    assert {"heartbeat", "tidy-state", "new-year-2030"} <= set(config.tasks)
    assert config.tasks["new-year-2030"].catch_up is True
    assert config.tasks["tidy-state"].kind == "handler"


def test_defaults_inheritance_and_override(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        [daemon]
        timezone = "Asia/Tokyo"
        env = { FROM_DAEMON = "1" }

        [defaults]
        timeout = "5m"
        retries = 2
        overlap = "queue"
        timezone = "Europe/Berlin"
        env = { A = "default", B = "default" }
        on_failure = ["alert"]

        [tasks.inherits]
        command = "true"
        schedule = "0 3 * * *"

        [tasks.overrides]
        command = ["true"]
        timeout = 90
        retries = 0
        overlap = "allow"
        timezone = "UTC"
        env = { B = "task", C = 3 }
        on_failure = []

        [tasks.alert]
        command = "echo alert"
    """))
    inherits, overrides, alert = (config.tasks[n] for n in ("inherits", "overrides", "alert"))
    assert (inherits.timeout, inherits.retries, inherits.overlap) == (300, 2, Overlap.QUEUE)
    assert inherits.timezone == "Europe/Berlin" and inherits.schedule is not None
    assert inherits.schedule.tz.key == "Europe/Berlin"
    assert dict(inherits.env) == {"A": "default", "B": "default"}
    assert inherits.on_failure == ("alert",)
    assert (overrides.timeout, overrides.retries, overrides.overlap) == (90, 0, Overlap.ALLOW)
    assert overrides.timezone == "UTC" and overrides.command == ("true",)
    # env merges key by key (the task wins); [daemon] env stays separate for the executor.
    assert dict(overrides.env) == {"A": "default", "B": "task", "C": "3"}
    assert dict(config.daemon.env) == {"FROM_DAEMON": "1"}
    assert overrides.on_failure == ()
    # A default on_failure naming the task itself is not inherited by that task (no loop).
    assert alert.on_failure == ()


def test_timezone_falls_back_to_daemon_zone(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        [daemon]
        timezone = "America/New_York"
        [tasks.t]
        command = "true"
        schedule = "@daily"
    """))
    assert config.tasks["t"].timezone == "America/New_York"
    assert config.tasks["t"].schedule.tz.key == "America/New_York"  # type: ignore[union-attr]


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "hooks").mkdir()
    (conf_dir / "hooks" / "mine.py").write_text("def go(params):\n    return 1\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the current directory must not matter
    config = load_config(write(conf_dir, """
        [daemon]
        socket = "run/ck.sock"
        database = "state/ck.db"
        handlers_path = "hooks"
        [defaults]
        cwd = "work"
        [tasks.a]
        handler = "mine:go"
        [tasks.b]
        command = "true"
        cwd = "/srv/abs"
        [tasks.c]
        command = "true"
        cwd = "../other"
    """))
    assert config.daemon.socket == conf_dir / "run/ck.sock"
    assert config.daemon.database == str(conf_dir / "state/ck.db")
    assert config.daemon.handlers_path == conf_dir / "hooks"
    assert config.tasks["a"].cwd == conf_dir / "work"
    assert config.tasks["b"].cwd == Path("/srv/abs")
    assert config.tasks["c"].cwd == tmp_path / "other"
    assert config.path == conf_dir / "cronkeeper.toml"


@pytest.mark.parametrize(("value", "expected"), [
    ('"postgresql://ck@db/cronkeeper"', "postgresql://ck@db/cronkeeper"),
    ('"postgres://db/x"', "postgres://db/x"),
    ('"/var/lib/ck/ck.db"', "/var/lib/ck/ck.db"),
])
def test_database_path_or_url(tmp_path: Path, value: str, expected: str) -> None:
    config = load_config(write(tmp_path, f"[daemon]\ndatabase = {value}\n"))
    assert config.daemon.database == expected


@pytest.mark.parametrize(("value", "mode"), [('"0660"', 0o660), ('"600"', 0o600), ("0o640", 0o640),
                                             ('"0o700"', 0o700)])
def test_socket_mode_forms(tmp_path: Path, value: str, mode: int) -> None:
    assert load_config(write(tmp_path, f"[daemon]\nsocket_mode = {value}\n")).daemon.socket_mode == mode


def test_one_shot_defaults_to_catch_up(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        [defaults]
        catch_up = false
        [tasks.once]
        command = "true"
        schedule = "at 2030-01-01T09:00"
        [tasks.once-no-catch-up]
        command = "true"
        schedule = "at 2030-01-01T09:00"
        catch_up = false
        [tasks.cron]
        command = "true"
        schedule = "0 9 * * *"
    """))
    assert config.tasks["once"].catch_up is True
    assert config.tasks["once-no-catch-up"].catch_up is False
    assert config.tasks["cron"].catch_up is False


BASE = """
    [daemon]
    timezone = "UTC"
    [tasks.a]
    command = "echo a"
    schedule = "*/5 * * * *"
    env = { X = "1" }
    [tasks.b]
    command = ["echo", "b"]
    schedule = "every 15m"
    on_success = ["a"]
"""


def test_unchanged_tasks_compare_equal_across_loads(tmp_path: Path) -> None:
    first = load_config(write(tmp_path, BASE, "one.toml"))
    second = load_config(write(tmp_path, BASE.replace('"echo a"', '"echo A"'), "two.toml"))
    assert first.tasks["b"] == second.tasks["b"]
    assert hash(first.tasks["b"]) == hash(second.tasks["b"])
    assert first.tasks["a"] != second.tasks["a"]
    assert first.daemon == second.daemon
    again = load_config(tmp_path / "one.toml")
    assert again == first and list(again.tasks) == ["a", "b"]


def test_config_values_are_immutable(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    task = config.tasks["a"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.retries = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        task.env["X"] = "2"  # type: ignore[index]
    with pytest.raises(TypeError):
        config.tasks["c"] = task  # type: ignore[index]
    assert isinstance(config.tasks, MappingProxyType) and isinstance(task.env, MappingProxyType)
    # The parser's fast constructor gives the same object as the public one.
    assert dataclasses.replace(task) == task
    rebuilt = TaskConfig(**{f.name: getattr(task, f.name) for f in dataclasses.fields(task)})
    assert rebuilt == task and isinstance(config, Config)


def test_handler_module_found_without_importing_it(tmp_path: Path) -> None:
    handlers = tmp_path / "handlers"
    (handlers / "pkg").mkdir(parents=True)
    # Importing this would fail loudly: validation must only locate it.
    (handlers / "boom.py").write_text("raise SystemExit('imported!')\n")
    (handlers / "pkg" / "__init__.py").write_text("")
    (handlers / "pkg" / "sub.py").write_text("def run(params):\n    return params\n")
    config = load_config(write(tmp_path, """
        [tasks.a]
        handler = "boom:run"
        params = { path = "/tmp", nested = { list = [1, 2], flag = true } }
        [tasks.b]
        handler = "pkg.sub:run"
    """))
    assert config.tasks["a"].kind == "handler"
    assert config.tasks["a"].params["nested"] == {"list": [1, 2], "flag": True}


def test_handler_module_missing(tmp_path: Path) -> None:
    (tmp_path / "handlers").mkdir()
    issues = issues_of(write(tmp_path, """
        [tasks.a]
        handler = "nosuch:run"
        [tasks.b]
        handler = "nosuch.deeper:run"
        [tasks.c]
        handler = "not-a-handler"
    """))
    assert [(t, k) for t, _, k, _ in issues] == [("a", "handler"), ("b", "handler"), ("c", "handler")]
    assert "'nosuch' not found in handlers_path" in issues[0][3]
    assert "module:function" in issues[2][3]


def test_handlers_path_missing_is_reported_per_handler_task(tmp_path: Path) -> None:
    issues = issues_of(write(tmp_path, """
        [daemon]
        handlers_path = "nowhere"
        [tasks.a]
        handler = "x:y"
        [tasks.b]
        command = "true"
    """))
    assert len(issues) == 1 and issues[0][:3] == ("a", None, "handler")
    assert "is not a folder" in issues[0][3]


def test_ten_thousand_tasks_load(tmp_path: Path) -> None:
    lines = ["[defaults]\ntimeout = \"5m\"\n"]
    for i in range(10_000):
        lines.append(f'[tasks.t{i:05d}]\nschedule = "{i % 60} {i % 24} * * {i % 7}"\n'
                     f'command = "echo {i}"\n')
    config = load_config(write(tmp_path, "\n".join(lines)))
    assert len(config.tasks) == 10_000
    assert config.tasks["t09999"].schedule.text == "39 15 * * 3"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- errors


def test_five_mistakes_give_exactly_five_issues(tmp_path: Path) -> None:
    issues = issues_of(write(tmp_path, """
        [tasks.typo]
        command = "true"
        timout = "5m"

        [tasks.bad-schedule]
        command = "true"
        schedule = "61 * * * *"

        [tasks.bad-zone]
        command = "true"
        schedule = "0 3 * * *"
        timezone = "Mars/Olympus"

        [tasks.dangling]
        command = "true"
        on_failure = ["alert-ops"]

        [tasks.negative]
        command = "true"
        retries = -1
    """))
    assert [(task, key) for task, _, key, _ in issues] == [
        ("typo", "timout"), ("bad-schedule", "schedule"), ("bad-zone", "timezone"),
        ("dangling", "on_failure"), ("negative", "retries"),
    ]
    messages = {task: message for task, _, _, message in issues}
    assert "did you mean 'timeout'" in messages["typo"]
    assert "minute" in messages["bad-schedule"] and "61" in messages["bad-schedule"]
    assert "Mars/Olympus" in messages["bad-zone"]
    assert "'alert-ops'" in messages["dangling"]
    assert "at least 0" in messages["negative"]


def test_error_text_names_file_task_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[tasks.x]\ncommand = "true"\nretries = "3"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert error.exit_code == 2 and error.path == str(path)
    assert str(error.issues[0]) == "[tasks.x] retries: must be an integer, got string '3'"
    assert str(path) in error.message


@pytest.mark.parametrize(("body", "where", "expect"), [
    ('[tasks.x]\ncommand = "true"\nretry_backoff = 0.5\n', ("x", None, "retry_backoff"), "at least 1"),
    ('[tasks.x]\ncommand = "true"\noverlap = "never"\n', ("x", None, "overlap"),
     "skip, queue, allow, replace"),
    ('[tasks.x]\ncommand = "true"\nenabled = "yes"\n', ("x", None, "enabled"), "boolean"),
    ('[tasks.x]\ncommand = "true"\ntimeout = "soon"\n', ("x", None, "timeout"), "'soon'"),
    ('[tasks.x]\ncommand = 5\n', ("x", None, "command"), "array of strings"),
    ('[tasks.x]\ncommand = []\n', ("x", None, "command"), "empty"),
    ('[tasks.x]\ncommand = ["a", 1]\n', ("x", None, "command"), "only strings"),
    ('[tasks.x]\ncommand = "true"\nenv = { A = true }\n', ("x", None, "env"), "A must be a string"),
    ('[tasks.x]\ncommand = "true"\non_success = "x"\n', ("x", None, "on_success"), "itself"),
    ('[tasks.x]\ncommand = "true"\nparams = { a = 1 }\n', ("x", None, "params"), "handlers only"),
    ('[tasks.x]\ncommand = "true"\nschedule = ""\n', ("x", None, "schedule"), "non-empty"),
    ('[tasks.x]\nschedule = "@daily"\n', ("x", None, "command"), "neither"),
    ('[tasks.x]\ncommand = "a"\nhandler = "m:f"\n', ("x", None, "command"), "both"),
    ('[tasks."bad name!"]\ncommand = "true"\n', ("bad name!", None, None), "invalid task name"),
    ("[tasks]\nx = 1\n", ("x", None, None), "must be a table"),
    ('[daemon]\nmax_concurrent_runs = 0\n', (None, "daemon", "max_concurrent_runs"), "at least 1"),
    ('[daemon]\nkeep_runs = 0\n', (None, "daemon", "keep_runs"), "at least 1"),
    ('[daemon]\nkeep_days = 0\n', (None, "daemon", "keep_days"), "more than 0"),
    ('[daemon]\nsocket_mode = 660\n', (None, "daemon", "socket_mode"), '"0660"'),
    ('[daemon]\nsocket_mode = "rw"\n', (None, "daemon", "socket_mode"), "octal"),
    ('[daemon]\noutput_limit = "1M"\n', (None, "daemon", "output_limit"), "MiB"),
    ('[daemon]\ntimezone = "Nowhere/Land"\n', (None, "daemon", "timezone"), "IANA"),
    ('[daemon]\ndatabase = "mysql://x"\n', (None, "daemon", "database"), "postgresql://"),
    ('[defaults]\nretries = -2\n', (None, "defaults", "retries"), "at least 0"),
    ('[defaults]\non_failure = ["ghost"]\n', (None, "defaults", "on_failure"), "'ghost'"),
    ('[defaults]\nschedule = "@daily"\n', (None, "defaults", "schedule"), "set per task"),
    ('daemon = 3\n', (None, "daemon", None), "must be a table"),
], ids=lambda v: v if isinstance(v, str) and "\n" not in v else None)
def test_single_mistakes(tmp_path: Path, body: str, where: tuple[str | None, ...], expect: str) -> None:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "m.py").write_text("")
    issues = issues_of(write(tmp_path, body))
    assert len(issues) == 1, issues
    assert issues[0][:3] == where
    assert expect in issues[0][3]


def test_params_reject_toml_dates(tmp_path: Path) -> None:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "m.py").write_text("")
    issues = issues_of(write(tmp_path, '[tasks.x]\nhandler = "m:f"\nparams = { when = 2026-01-01 }\n'))
    assert issues[0][2] == "params" and "params.when" in issues[0][3]


@pytest.mark.parametrize(("body", "section", "task", "allowed"), [
    ('bogus = 1\n', None, None, ("daemon", "defaults", "tasks")),
    ('[daemon]\nsockt = "x"\n', "daemon", None, ("socket", "shutdown_grace", "env")),
    ('[defaults]\nretry = 1\n', "defaults", None, DEFAULTS_KEYS),
    ('[tasks.x]\ncommand = "true"\ncomand = "x"\n', None, "x", TASK_KEYS),
])
def test_unknown_keys_list_allowed_keys(tmp_path: Path, body: str, section: str | None,
                                        task: str | None, allowed: tuple[str, ...]) -> None:
    issues = issues_of(write(tmp_path, body))
    assert len(issues) == 1
    got_task, got_section, key, message = issues[0]
    assert (got_task, got_section) == (task, section)
    assert "unknown key" in message and key
    for name in allowed:
        assert name in message


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[tasks.x]\ncommand = "true"\nretries = = 3\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (issue,) = caught.value.issues
    assert str(path) in issue.message
    assert "line 3, column" in issue.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml")
    (issue,) = caught.value.issues
    assert "absent.toml" in issue.message and "does not exist" in issue.message


def test_parse_config_without_a_file(tmp_path: Path) -> None:
    config = parse_config({"tasks": {"x": {"command": "true", "cwd": "sub"}}}, base_dir=tmp_path)
    assert config.path is None and config.tasks["x"].cwd == tmp_path / "sub"
    with pytest.raises(ConfigError) as caught:
        parse_config({"tasks": {"x": {}}}, base_dir=tmp_path)
    assert caught.value.path is None


# --------------------------------------------------------------------------- socket lookup


@pytest.mark.parametrize(("body", "expected"), [
    ('[daemon]\nsocket = "run/a.sock"\n', "run/a.sock"),
    ('[daemon]\nsocket = "/abs/b.sock"\n', "/abs/b.sock"),
    ("[daemon]\ntimezone = \"UTC\"\n", ".cronkeeper/cronkeeper.sock"),
    ("[tasks.x]\ncommand = \"true\"\n", ".cronkeeper/cronkeeper.sock"),
    # Only [daemon] is read when it stands on its own: a broken task does not hide the socket.
    ('[daemon]\nsocket = "c.sock"\n[tasks.x]\ncommand = = 1\n', "c.sock"),
    ('[tasks.x]\ncommand = "true"\n[daemon]\nsocket = "d.sock" # comment\n', "d.sock"),
    ("this is not toml\n", ".cronkeeper/cronkeeper.sock"),
])
def test_read_socket_path(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, body)
    assert read_socket_path(path) == tmp_path / expected


def test_read_socket_path_missing_file(tmp_path: Path) -> None:
    assert read_socket_path(tmp_path / "nope.toml") == tmp_path / ".cronkeeper/cronkeeper.sock"


def test_host_timezone_is_a_zone_name() -> None:
    from zoneinfo import ZoneInfo

    assert ZoneInfo(host_timezone())

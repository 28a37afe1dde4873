"""``check``, ``next`` and ``import-crontab`` through click's CliRunner, no daemon involved."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from cronkeeper import cli_offline
from cronkeeper.cli_options import global_options
from cronkeeper.clock import FakeClock
from cronkeeper.errors import ConfigError, UsageError, exit_code


@click.group()
@global_options
def cli() -> None:
    """A stand-in for the main group of cli.py, which adds the same commands."""


for _command in cli_offline.COMMANDS:
    cli.add_command(_command)


def run(args: list[str], **kwargs: object) -> Result:
    return CliRunner().invoke(cli, args, **kwargs)  # type: ignore[arg-type]


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


CONFIG = """
    [daemon]
    timezone = "UTC"

    [tasks.backup]
    schedule = "30 2 * * *"
    timezone = "Europe/Berlin"
    command = "true"

    [tasks.tick]
    schedule = "every 15m"
    command = "true"

    [tasks.manual]
    command = "true"

    [tasks.off]
    schedule = "@daily"
    command = "true"
    enabled = false

    [tasks.boot]
    schedule = "@reboot"
    command = "true"

    [tasks.past]
    schedule = "at 2020-01-01T00:00"
    command = "true"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cronkeeper.toml"
    path.write_text(textwrap.dedent(CONFIG))
    return path


# --------------------------------------------------------------------------- next


def test_next_json_exact() -> None:
    result = ok(run(["next", "30 2 * * *", "--tz", "Europe/Berlin", "--after",
                     "2026-03-28T12:00", "-n", "2", "--json"]))
    assert result.stdout == '["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]\n'


def test_next_text_output() -> None:
    result = ok(run(["next", "0 9 * * mon", "--tz", "UTC", "--after", "2026-03-28T12:00Z",
                     "-n", "2"]))
    assert result.stdout.splitlines() == [
        "0 9 * * mon (UTC): " + result.stdout.split(": ", 1)[1].splitlines()[0],
        "2026-03-30T09:00:00+00:00  Mon  in 1d 21h",
        "2026-04-06T09:00:00+00:00  Mon  in 8d 21h",
    ]


@pytest.mark.parametrize("where", ["before", "after"])
def test_next_uses_the_tasks_schedule_and_zone(config: Path, where: str) -> None:
    args = ["next", "backup", "--after", "2026-03-28T12:00:00+01:00", "-n", "2", "--json"]
    args = ["--config", str(config), *args] if where == "before" else [*args, "--config", str(config)]
    result = ok(run(args))
    assert json.loads(result.stdout) == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]


def test_next_tz_overrides_the_tasks_zone(config: Path) -> None:
    result = ok(run(["--config", str(config), "next", "backup", "--tz", "UTC",
                     "--after", "2026-03-28T12:00", "-n", "1", "--json"]))
    assert json.loads(result.stdout) == ["2026-03-29T02:30:00+00:00"]


def test_next_schedule_defaults_to_the_daemon_zone(tmp_path: Path) -> None:
    path = tmp_path / "ck.toml"
    path.write_text('[daemon]\ntimezone = "Asia/Tokyo"\n')
    result = ok(run(["--config", str(path), "next", "@daily", "--after", "2026-01-01T12:00",
                     "-n", "1", "--json"]))
    assert json.loads(result.stdout) == ["2026-01-02T00:00:00+09:00"]


def test_next_reads_now_from_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_offline, "_clock", FakeClock(datetime(2026, 6, 1, 10, 7, tzinfo=UTC)))
    result = ok(run(["next", "every 15m", "--tz", "UTC", "-n", "2", "--json"]))
    assert json.loads(result.stdout) == ["2026-06-01T10:15:00+00:00", "2026-06-01T10:30:00+00:00"]


@pytest.mark.parametrize(("target", "text"), [("boot", "no clock times"), ("past", "no fire times")])
def test_next_without_fire_times(config: Path, target: str, text: str) -> None:
    result = ok(run(["--config", str(config), "next", target, "--json"]))
    assert json.loads(result.stdout) == []
    assert text in ok(run(["--config", str(config), "next", target])).stdout


@pytest.mark.parametrize(("args", "message"), [
    (["next", "61 * * * *", "--tz", "UTC"], "minute"),
    (["next", "0 1 * * *", "--tz", "Mars/Base"], "Mars/Base"),
    (["next", "0 1 * * *", "--tz", "UTC", "--after", "yesterday"], "ISO 8601"),
    (["next", "ghost", "--tz", "UTC"], "neither a task"),
    (["next", "manual"], "has no schedule"),
])
def test_next_usage_errors(config: Path, args: list[str], message: str) -> None:
    result = run(["--config", str(config), *args])
    assert isinstance(result.exception, UsageError), result.output
    assert message in str(result.exception)
    assert exit_code(result.exception) == 2


def test_next_with_a_broken_config_still_parses_schedules(tmp_path: Path) -> None:
    path = tmp_path / "ck.toml"
    path.write_text("[tasks.x]\nretries = = 1\n")
    ok(run(["--config", str(path), "next", "@hourly", "--json"]))
    result = run(["--config", str(path), "next", "x"])
    assert "did not load" in str(result.exception)


# --------------------------------------------------------------------------- check


def test_check_lists_tasks_with_next_run(config: Path) -> None:
    result = ok(run(["check", "--config", str(config), "--after", "2026-03-28T12:00:00+00:00"]))
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TASK", "NEXT", "RUN", "WHEN", "SCHEDULE"]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert "2026-03-29T03:00:00+02:00" in rows["backup"] and "in 13h" in rows["backup"]
    assert "2026-03-28T12:15:00+00:00  in 15m" in rows["tick"]
    assert "manual/triggered only" in rows["manual"]
    assert "disabled" in rows["off"] and "at daemon start" in rows["boot"]
    assert "already past" in rows["past"]
    assert lines[-1] == f"{config}: OK, 6 tasks"


def test_check_json(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_offline, "_clock", FakeClock(datetime(2026, 3, 28, 12, tzinfo=UTC)))
    result = ok(run(["--config", str(config), "check", "--json"]))
    tasks = json.loads(result.stdout)["tasks"]
    assert [t["name"] for t in tasks] == ["backup", "tick", "manual", "off", "boot", "past"]
    assert tasks[0] == {"name": "backup", "schedule": "30 2 * * *",
                        "schedule_text": tasks[0]["schedule_text"], "timezone": "Europe/Berlin",
                        "next_run": "2026-03-29T03:00:00+02:00", "enabled": True}
    assert tasks[0]["schedule_text"]
    assert tasks[1]["next_run"] == "2026-03-28T12:15:00+00:00"
    assert [t["next_run"] for t in tasks[2:]] == [None, None, None, None]


def test_check_reports_every_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent("""
        [tasks.a]
        command = "true"
        retries = -1
        [tasks.b]
        schedule = "nope"
        command = "true"
        timout = 3
    """))
    result = run(["check", "--config", str(path)])
    assert isinstance(result.exception, ConfigError)
    assert exit_code(result.exception) == 2
    assert len(result.exception.issues) == 3
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert lines[0] == f"{path}: [tasks.a] retries: must be at least 0, got -1"
    assert f"{path}: [tasks.b] timout: unknown key" in result.stderr
    assert f"{path}: [tasks.b] schedule: " in result.stderr
    assert result.exception.message == f"{path}: 3 configuration errors"
    assert result.stdout == ""


def test_check_json_errors_and_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[tasks.a]\ncommand = \n")
    result = run(["check", "--json", "--config", str(path)])
    assert isinstance(result.exception, ConfigError)
    (error,) = json.loads(result.stdout)["errors"]
    assert "line 2" in error["message"]
    # File-level issues already name the file: it is not repeated.
    assert result.stderr.startswith(f"invalid TOML in {path} at line 2")


def test_check_missing_config(tmp_path: Path) -> None:
    result = run(["check", "--config", str(tmp_path / "none.toml")])
    assert isinstance(result.exception, ConfigError)
    assert "does not exist" in result.stderr


def test_exit_codes_through_the_real_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = getattr(pytest.importorskip("cronkeeper.cli"), "main", None)
    if main is None:
        pytest.skip("cronkeeper.cli.main not there yet")
    bad = tmp_path / "bad.toml"
    bad.write_text('[tasks.a]\ncommand = "true"\nretries = -1\n')
    good = tmp_path / "good.toml"
    good.write_text('[tasks.a]\ncommand = "true"\n')
    for args, code in [
        (["check", "--config", str(bad)], 2),
        (["--config", str(good), "check"], 0),
        (["next", "61 * * * *", "--tz", "UTC"], 2),
        (["next", "30 2 * * *", "--tz", "Europe/Berlin", "--after", "2026-03-28T12:00",
          "-n", "2", "--json"], 0),
    ]:
        with pytest.raises(SystemExit) as caught:
            main(args)
        assert caught.value.code == code, (args, capsys.readouterr())
    out = capsys.readouterr().out
    assert '["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]' in out

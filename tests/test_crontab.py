"""crontab.py: crontab lines to cronkeeper tasks, with cron's own semantics kept."""

from __future__ import annotations

import subprocess
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from cronkeeper.cli_offline import import_crontab
from cronkeeper.cli_options import global_options
from cronkeeper.config import load_config
from cronkeeper.crontab import convert_crontab, crontab_to_toml, split_cron_command, with_stdin


def convert(text: str, **kwargs: Any) -> tuple[dict[str, Any], tuple[str, ...], str]:
    result = convert_crontab(textwrap.dedent(text), **kwargs)
    return tomllib.loads(result.toml).get("tasks", {}), result.warnings, result.toml


def assert_loads(toml_text: str, tmp_path: Path) -> None:
    path = tmp_path / "converted.toml"
    path.write_text(toml_text)
    load_config(path)  # raises ConfigError listing every problem


def test_user_crontab(tmp_path: Path) -> None:
    tasks, warnings, text = convert("""
        # m h dom mon dow command
        */5 * * * * /usr/local/bin/backup.sh --quick
        0 2 * * 1-5   cd /srv/app && ./nightly.sh > /tmp/log 2>&1

        # yearly reminder
        0 9 1 jan *  echo "new year"
    """)
    assert tasks == {
        "backup.sh": {"schedule": "*/5 * * * *", "command": "/usr/local/bin/backup.sh --quick"},
        "nightly.sh": {"schedule": "0 2 * * 1-5",
                       "command": "cd /srv/app && ./nightly.sh > /tmp/log 2>&1"},
        "echo": {"schedule": "0 9 1 jan *", "command": 'echo "new year"'},
    }
    assert warnings == ()
    assert "# m h dom mon dow command" in text and "# yearly reminder" in text
    assert "# crontab line 4: 0 2 * * 1-5" in text  # line 1 is the blank after """
    assert text.index("# yearly reminder") < text.index("[tasks.echo]")
    assert_loads(text, tmp_path)


def test_system_format_with_user_column(tmp_path: Path) -> None:
    body = """
        SHELL=/bin/sh
        PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
        17 *  * * *  root  cd / && run-parts --report /etc/cron.hourly
        @reboot      www-data /usr/bin/warm-cache
    """
    for kwargs in ({"system": True}, {"source": "/etc/cron.d/example"}, {"source": "/etc/crontab"}):
        tasks, _, text = convert(body, **kwargs)
        assert tasks["run-parts"]["user"] == "root"
        assert tasks["run-parts"]["command"] == "cd / && run-parts --report /etc/cron.hourly"
        assert tasks["warm-cache"] == {
            "schedule": "@reboot", "command": "/usr/bin/warm-cache", "user": "www-data",
            "env": {"SHELL": "/bin/sh",
                    "PATH": "/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin"},
        }
        assert_loads(text, tmp_path)


def test_system_format_guessed_from_existing_users() -> None:
    result = convert_crontab("0 1 * * * root /usr/bin/true\n@daily root /bin/date\n")
    assert result.system is True
    assert "--user" in result.warnings[0]
    # Forced the other way, "root" is the program.
    forced = convert_crontab("0 1 * * * root /usr/bin/true\n", system=False)
    assert tomllib.loads(forced.toml)["tasks"]["root"]["command"] == "root /usr/bin/true"
    # One line without a user name: a user crontab.
    mixed = convert_crontab("0 1 * * * root /usr/bin/true\n0 2 * * * /bin/date\n")
    assert mixed.system is False


def test_env_lines_apply_to_the_jobs_below() -> None:
    tasks, _, _ = convert("""
        0 1 * * * first
        FOO = "quoted value "
        BAR='single'
        BAZ=  plain with spaces
        0 2 * * * second
        FOO=changed
        0 3 * * * third
    """)
    assert "env" not in tasks["first"]
    assert tasks["second"]["env"] == {"FOO": "quoted value ", "BAR": "single",
                                      "BAZ": "plain with spaces"}
    assert tasks["third"]["env"]["FOO"] == "changed"


def test_cron_tz_sets_timezone_and_tz_only_env(tmp_path: Path) -> None:
    tasks, warnings, text = convert("""
        0 1 * * * before
        CRON_TZ=Europe/Berlin
        30 2 * * * berlin
        TZ=Asia/Tokyo
        0 3 * * * tokyo-env
        CRON_TZ=Mars/Base
        0 4 * * * still-berlin
    """)
    assert "timezone" not in tasks["before"]
    assert tasks["berlin"]["timezone"] == "Europe/Berlin"
    assert tasks["tokyo-env"]["timezone"] == "Europe/Berlin"
    assert tasks["tokyo-env"]["env"]["TZ"] == "Asia/Tokyo"
    assert tasks["still-berlin"]["timezone"] == "Europe/Berlin"
    assert any(":5: TZ only sets" in w for w in warnings)
    assert any(":7: not converted: unknown time zone 'Mars/Base'" in w for w in warnings)
    assert_loads(text, tmp_path)


def test_shell_line_makes_argv_commands() -> None:
    tasks, _, _ = convert("SHELL=/bin/bash\n0 1 * * * echo $BASH_VERSION\n")
    assert tasks["echo"]["command"] == ["/bin/bash", "-c", "echo $BASH_VERSION"]


def test_mailto_becomes_a_comment_and_a_warning() -> None:
    _, warnings, text = convert("MAILTO=ops@example.com\n0 1 * * * true\nMAILTO=\"\"\n0 2 * * * true\n")
    assert "# MAILTO=ops@example.com" in text and "notify:email" in text
    assert len([w for w in warnings if "MAILTO" in w]) == 1  # MAILTO="" just turns mail off
    assert "MAILTO" not in str(tomllib.loads(text)["tasks"])


@pytest.mark.parametrize("macro", ["@reboot", "@yearly", "@annually", "@monthly", "@weekly",
                                   "@daily", "@midnight", "@hourly", "@DAILY"])
def test_macros(macro: str, tmp_path: Path) -> None:
    tasks, warnings, text = convert(f"{macro} /usr/bin/true\n")
    assert tasks == {"true": {"schedule": macro.lower(), "command": "/usr/bin/true"}}
    assert warnings == ()
    assert_loads(text, tmp_path)


def test_cronie_dash_prefix_is_dropped() -> None:
    tasks, warnings, _ = convert("-*/5 * * * * /usr/bin/true\n")
    assert tasks == {"true": {"schedule": "*/5 * * * *", "command": "/usr/bin/true"}}
    assert warnings == ()


def test_unconvertible_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    result = convert_crontab(textwrap.dedent("""\
        0 1 * * * good
        61 * * * * bad minute
        @sometimes nope
        * * * oops
        0 1 * * * %only stdin
    """), source="my.cron")
    warnings = result.warnings
    assert [w.split(": ", 1)[0] for w in warnings] == ["my.cron:2", "my.cron:3", "my.cron:4",
                                                       "my.cron:5"]
    assert "minute" in warnings[0] and "@sometimes" in warnings[1]
    assert "# cronkeeper: line 2 not converted" in result.toml
    assert "# 61 * * * * bad minute" in result.toml
    assert result.tasks == ("good",)
    assert_loads(result.toml, tmp_path)


def test_generated_names_are_valid_and_unique(tmp_path: Path) -> None:
    text = "".join(f"{i} * * * * /opt/my tool/run.sh --n {i}\n" for i in range(3))
    text += "0 1 * * * FOO=1 nice -n 10 /usr/bin/find /tmp -delete\n"
    text += "0 2 * * * test -x /usr/sbin/anacron || run-parts /etc/cron.daily\n"
    text += "0 3 * * * 'weird name!'\n"
    text += "0 4 * * * test -e /run/systemd/system || SERVICE_MODE=1 /sbin/e2scrub_all -A\n"
    result = convert_crontab(text)
    assert result.tasks == ("my", "my-2", "my-3", "find", "run-parts", "weird-name",
                            "e2scrub_all")
    assert_loads(result.toml, tmp_path)


# --------------------------------------------------------------------------- % and stdin


@pytest.mark.parametrize(("line", "command", "stdin"), [
    ("echo hi", "echo hi", None),
    ("cat%", "cat", None),
    ("cat%a", "cat", "a\n"),
    ("cat%a%b", "cat", "a\nb\n"),
    ("cat%a%b%", "cat", "a\nb\n"),
    ("cat%%", "cat", "\n"),
    (r"date +\%Y", "date +%Y", None),
    (r"date +\%Y%in\%put", "date +%Y", "in%put\n"),
    (r"echo \\%x", "echo \\\\", "x\n"),
    (r"cat%back\slash", "cat", "back\\slash\n"),
    ("cat%trailing\\", "cat", "trailing\\\n"),
])
def test_split_cron_command(line: str, command: str, stdin: str | None) -> None:
    assert split_cron_command(line) == (command, stdin)


@pytest.mark.parametrize(("job", "cron_feeds"), [
    ("cat%line one%line two", "line one\nline two\n"),
    (r"cat%100\% sure%$HOME `not run` 'quoted'", "100% sure\n$HOME `not run` 'quoted'\n"),
    ("cat%CRONKEEPER_STDIN%after", "CRONKEEPER_STDIN\nafter\n"),
    ("cat%%%", "\n\n"),
    ("read a; read b; echo \"$b|$a\"%first%second", "second|first\n"),
    ("tr a-z A-Z # comment%shout", "SHOUT\n"),
])
def test_stdin_conversion_runs_like_cron(job: str, cron_feeds: str, tmp_path: Path) -> None:
    """Run the converted command with /bin/sh: its output is what cron would feed the job."""
    tasks, _, text = convert(f"* * * * * {job}\n")
    (task,) = tasks.values()
    done = subprocess.run(["/bin/sh", "-c", task["command"]], capture_output=True, text=True,
                          timeout=30, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == cron_feeds
    assert_loads(text, tmp_path)


def test_with_stdin_picks_a_free_delimiter() -> None:
    script = with_stdin("cat", "CRONKEEPER_STDIN\nCRONKEEPER_STDIN_2\n")
    assert script.endswith("CRONKEEPER_STDIN_3")


def test_crontab_to_toml_is_the_text_of_convert() -> None:
    assert crontab_to_toml("@daily true\n") == convert_crontab("@daily true\n").toml


# --------------------------------------------------------------------------- the command


@click.group()
@global_options
def cli() -> None:
    """A stand-in for the main group."""


cli.add_command(import_crontab)


def test_import_crontab_command_from_stdin_and_file(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["import-crontab", "-"],
                           input="0 1 * * * /bin/true\n99 * * * * bad\n")
    assert result.exit_code == 0, result.output
    assert tomllib.loads(result.stdout)["tasks"]["true"]["schedule"] == "0 1 * * *"
    assert "-:2: not converted" in result.stderr
    path = tmp_path / "cron.d-file"
    path.write_text("0 1 * * * root /bin/true\n")
    result = runner.invoke(cli, ["import-crontab", str(path), "--system"])
    assert tomllib.loads(result.stdout)["tasks"]["true"]["user"] == "root"
    result = runner.invoke(cli, ["import-crontab", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "cannot read" in str(result.exception)

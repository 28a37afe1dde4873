"""CLI commands that work without a daemon: ``check``, ``next`` and ``import-crontab``.

``cli.py`` adds them to the main group (``for command in COMMANDS: cli.add_command(command)``).
They raise ``CronkeeperError`` subclasses and leave the exit code to ``cli.main``'s table
(``ConfigError``/``UsageError`` -> 2). "Now" comes from the module-level ``_clock`` (tests may
swap in a ``FakeClock``) unless ``--after`` pins it.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from cronkeeper.cli_options import get_options, global_options, json_option
from cronkeeper.clock import Clock, SystemClock
from cronkeeper.config import TASK_NAME_RE, Config, TaskConfig, host_timezone, load_config
from cronkeeper.errors import ConfigError, ConfigIssue, UsageError
from cronkeeper.humanize import relative
from cronkeeper.schedule import Schedule, ScheduleError, next_fire_times, parse_schedule

__all__ = ["check", "next_cmd", "next_command", "import_crontab", "COMMANDS"]

_clock: Clock = SystemClock()


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UsageError(f"unknown time zone {name!r}; use an IANA name such as 'UTC' or "
                         "'Europe/Berlin'") from None


def _reference_time(after: str | None, zone: tzinfo) -> datetime:
    """``--after`` as an aware datetime (naive = wall-clock time in ``zone``), else now."""
    if after is None:
        return _clock.now()
    try:
        moment = datetime.fromisoformat(after)
    except ValueError:
        raise UsageError(f"--after {after!r} is not an ISO 8601 date-time, e.g. "
                         "2026-03-28T12:00 or 2026-03-28T12:00:00+01:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)  # fold=0: an ambiguous wall time is its first instance
    return moment


def _issue_line(path: Path, issue: ConfigIssue) -> str:
    # File-level issues (missing file, TOML syntax) already name the file.
    if not issue.where() and str(path) in issue.message:
        return issue.message
    return f"{path}: {issue}"


def _next_run(task: TaskConfig, after: datetime) -> tuple[datetime | None, str]:
    """The task's next scheduled fire in its own zone, and what to show when there is none."""
    schedule = task.schedule
    if schedule is None:
        return None, "manual/triggered only"
    if not task.enabled:
        return None, "disabled"
    if schedule.is_reboot:
        return None, "at daemon start"
    nxt = schedule.next_after(after)
    if nxt is None:
        return None, "already past" if schedule.is_one_shot else "never"
    return nxt.astimezone(schedule.tz), ""


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds" if not moment.microsecond else "microseconds")


def _table(rows: list[tuple[str, ...]]) -> str:
    # One format string for all rows: `check` prints 10,000 of them.
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    line = "  ".join(f"{{:<{width}}}" for width in widths) + "  {}"
    return "\n".join(line.format(*row).rstrip() for row in rows)


@click.command("check")
@global_options
@json_option
@click.option("--after", metavar="ISO8601",
              help="Compute next runs as of this instant instead of now (naive = daemon's zone).")
def check(as_json: bool, after: str | None) -> None:
    """Validate the configuration offline: every error, or each task with its next run."""
    path = get_options().config_path()
    try:
        config = load_config(path)
    except ConfigError as error:
        if as_json:
            click.echo(json.dumps(error.to_json()))
        for issue in error.issues:
            click.echo(_issue_line(path, issue), err=True)
        # The issues are printed above, one per line; the summary is what cli.main repeats.
        count = len(error.issues)
        short = ConfigError(error.issues, str(path))
        short.message = f"{path}: {count} configuration error{'s' if count != 1 else ''}"
        short.args = (short.message,)
        raise short from None
    moment = _reference_time(after, _zone(config.daemon.timezone))
    if as_json:
        click.echo(json.dumps({"tasks": [_task_json(task, moment) for task in config.tasks.values()]}))
        return
    rows: list[tuple[str, ...]] = [("TASK", "NEXT RUN", "WHEN", "SCHEDULE")]
    for task in config.tasks.values():
        nxt, why = _next_run(task, moment)
        words = task.schedule.describe() if task.schedule else "-"
        rows.append((task.name, _iso(nxt) if nxt else "-",
                     relative(nxt, moment) if nxt else why, words))
    if len(rows) > 1:
        click.echo(_table(rows))
    count = len(config.tasks)
    click.echo(f"{path}: OK, {count} task{'s' if count != 1 else ''}")


def _task_json(task: TaskConfig, moment: datetime) -> dict[str, Any]:
    nxt, _ = _next_run(task, moment)
    return {
        "name": task.name,
        "schedule": task.schedule.text if task.schedule else None,
        "schedule_text": task.schedule.describe() if task.schedule else None,
        "timezone": task.timezone,
        "next_run": _iso(nxt) if nxt else None,
        "enabled": task.enabled,
    }


def _config_for_next(path: Path) -> tuple[Config | None, str]:
    """The config when it exists and loads; otherwise None and why (for messages)."""
    if not path.exists():
        return None, f"no config at {path}"
    try:
        return load_config(path), ""
    except ConfigError as error:
        count = len(error.issues)
        return None, f"{path} did not load ({count} error{'s' if count != 1 else ''}; see `cronkeeper check`)"


@click.command("next")
@global_options
@json_option
@click.argument("target", metavar="SCHEDULE|TASK")
@click.option("--tz", "tz_name", metavar="ZONE",
              help="Zone to read the schedule in. Default: the task's, else the daemon's, else the host's.")
@click.option("--after", metavar="ISO8601",
              help="Start after this instant (naive = wall-clock time in the zone). Default: now.")
@click.option("-n", "count", type=click.IntRange(1, 100_000), default=5, show_default=True,
              help="How many fire times.")
def next_cmd(target: str, tz_name: str | None, after: str | None, count: int,
                 as_json: bool) -> None:
    """The next N fire times of a task or a schedule text, computed offline."""
    schedule, label = _resolve_target(target, tz_name)
    moment = _reference_time(after, schedule.tz)
    fires = [fire.astimezone(schedule.tz) for fire in next_fire_times(schedule, moment, count)]
    if as_json:
        click.echo(json.dumps([_iso(fire) for fire in fires]))
        return
    click.echo(f"{label}{schedule.text} ({schedule.tz.key}): {schedule.describe()}")
    if schedule.is_reboot:
        click.echo("fires each time the daemon starts; no clock times")
    elif not fires:
        click.echo("no fire times after " + _iso(moment.astimezone(schedule.tz)))
    for fire in fires:
        click.echo(f"{_iso(fire)}  {fire:%a}  {relative(fire, moment)}")


def _resolve_target(target: str, tz_name: str | None) -> tuple[Schedule, str]:
    """A task's schedule (re-read in ``--tz`` when given) or ``target`` parsed as a schedule.

    Also returns a label for the heading: ``"task NAME: "`` for a task, else ``""``.
    """
    config: Config | None = None
    why = ""
    looks_like_task = bool(TASK_NAME_RE.fullmatch(target))
    # Config is read only when needed: for a task name, or for the daemon's default zone.
    if looks_like_task or tz_name is None:
        config, why = _config_for_next(get_options().config_path())
    task = config.tasks.get(target) if config else None
    if task is not None:
        if task.schedule is None:
            raise UsageError(f"task {target!r} has no schedule: it runs only by hand or when triggered")
        label = f"task {target}: "
        if tz_name is None:
            return task.schedule, label
        return _parse_or_fail(task.schedule.text, _zone(tz_name), target), label
    if tz_name is not None:
        zone = _zone(tz_name)
    else:
        zone = _zone(config.daemon.timezone if config else host_timezone())
    try:
        return parse_schedule(target, zone), ""
    except ScheduleError as exc:
        if looks_like_task:
            where = why or f"no task {target!r} in {config.path if config else 'the config'}"
            raise UsageError(f"{target!r} is neither a task ({where}) nor a schedule: {exc}") from None
        raise UsageError(str(exc)) from None


def _parse_or_fail(text: str, zone: ZoneInfo, task: str) -> Schedule:
    try:
        return parse_schedule(text, zone)
    except ScheduleError as exc:
        raise UsageError(f"task {task!r}: {exc}") from None


@click.command("import-crontab")
@global_options
@click.argument("source", default="-", metavar="[FILE|-]")
@click.option("--system/--user", "system", default=None,
              help="Lines have a user column after the schedule (/etc/crontab, /etc/cron.d) or "
                   "not. Default: /etc/crontab and /etc/cron.d/* are system format; otherwise "
                   "guessed from the lines.")
def import_crontab(source: str, system: bool | None) -> None:
    """Print a crontab (FILE, or - for stdin) as cronkeeper.toml tasks; warnings go to stderr."""
    from cronkeeper.crontab import convert_crontab  # only this command needs tomli_w & co.

    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UsageError(f"cannot read {source}: {reason}") from None
    result = convert_crontab(text, system=system, source=source)
    click.echo(result.toml, nl=False)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


next_command = next_cmd  # both names are used by callers
COMMANDS = (check, next_cmd, import_crontab)

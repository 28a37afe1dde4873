"""The ``cronkeeper`` command: a thin click layer over ``client.py`` (and, offline, config/schedule).

Each command parses its arguments, calls the client and formats the result (a table for
people, ``--json`` for scripts). ``main()`` is the only place that turns errors into exit
codes: 0 ok, 1 the operation failed, 2 usage or configuration error, 3 daemon unreachable.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from cronkeeper import __version__
from cronkeeper.cli_options import GlobalOptions, get_options, global_options, json_option
from cronkeeper.errors import CronkeeperError, RunFailed, UsageError
from cronkeeper.humanize import duration, parse_time, relative, timestamp

if TYPE_CHECKING:
    from cronkeeper.client import Client


def _client() -> Client:
    # Imported here: httpx costs ~130 ms of start-up that offline commands (check, next) skip.
    from cronkeeper.client import Client

    opts = get_options()
    path = opts.socket_path()
    return Client(path, tuple(opts.tried))


def _emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers]] + [[("-" if c is None else str(c)) for c in r]
                                            for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw  # not JSON: keep the text as given
    return params


def _last_result(task: dict[str, Any], now: datetime) -> str:
    last = task.get("last_run")
    if not last:
        return "-"
    when = parse_time(last.get("finished_at") or last.get("queued_at"))
    return f"{last['status']} {relative(when, now)}"


class _Commands(click.Group):
    """Loads the offline commands' modules (config, schedule, crontab) only when they run,
    so client commands such as ``history`` start fast."""

    lazy = {"check": "check", "next": "next_cmd", "import-crontab": "import_crontab"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module = importlib.import_module("cronkeeper.cli_offline")
            command: click.Command = getattr(module, self.lazy[cmd_name])
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(__version__, prog_name="cronkeeper")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """cronkeeper: cron with supervision, history, an API and a dashboard."""
    ctx.ensure_object(GlobalOptions)


@cli.command()
@global_options
def daemon() -> None:
    """Run the daemon in the foreground (systemd's ExecStart)."""
    from cronkeeper.daemon import run_daemon
    from cronkeeper.logging_setup import setup_logging

    setup_logging()
    run_daemon(get_options().config_path())


@cli.command()
@global_options
def tui() -> None:
    """Open the dashboard."""
    from cronkeeper.tui.app import run_tui

    opts = get_options()
    path = opts.socket_path()
    run_tui(path, tuple(opts.tried))


@cli.command("list")
@global_options
@json_option
def list_cmd(as_json: bool) -> None:
    """Tasks: state, schedule, next run, last result."""
    with _client() as client:
        tasks = client.list_tasks()
    if as_json:
        _emit_json(tasks)
        return
    now = datetime.now().astimezone()
    _table(["NAME", "STATE", "SCHEDULE", "NEXT RUN", "LAST RESULT", "DURATION"], [
        [t["name"], t["state"], t["schedule_text"],
         relative(parse_time(t["next_run"]), now) if t["next_run"] else "-",
         _last_result(t, now),
         duration((t.get("last_run") or {}).get("duration_ms"))]
        for t in tasks])


@cli.command()
@global_options
@json_option
@click.argument("task")
def show(task: str, as_json: bool) -> None:
    """One task in full."""
    with _client() as client:
        data = client.get_task(task)
    if as_json:
        _emit_json(data)
        return
    now = datetime.now().astimezone()
    command = data["command"] if data["kind"] == "command" else data["handler"]
    if isinstance(command, list):
        command = json.dumps(command)
    rows = [
        ("name", data["name"]), ("description", data["description"] or "-"),
        ("schedule", f"{data['schedule'] or '-'}  ({data['schedule_text']})"),
        ("timezone", data["timezone"]), (data["kind"], command),
        ("params", json.dumps(data["params"]) if data["params"] else "-"),
        ("state", data["state"] + (" (disabled)" if not data["enabled"] else "")),
        ("next run", f"{timestamp(data['next_run'])}  "
                     f"{relative(parse_time(data['next_run']), now)}" if data["next_run"] else "-"),
        ("last result", _last_result(data, now)),
        ("active runs", ", ".join(map(str, data["active_runs"])) or "-"),
        ("retries", f"{data['retry_count']} of {data['retries']}"),
        ("overlap", data["overlap"]), ("timeout", data["timeout"] or "none"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


def _follow(client: Client, run_id: int) -> None:
    out = sys.stdout.buffer
    for chunk in client.follow_output(run_id):
        out.write(chunk)
        out.flush()


@cli.command()
@global_options
@json_option
@click.argument("task")
@click.option("--param", "params", multiple=True, metavar="K=V",
              help="Parameter for this run (repeatable); values parse as JSON when they can.")
@click.option("--wait", is_flag=True, help="Stream the output and exit with the run's result.")
def run(task: str, params: tuple[str, ...], wait: bool, as_json: bool) -> None:
    """Run TASK now."""
    with _client() as client:
        record = client.run_task(task, _parse_params(params))
        run_id = record["id"]
        if not wait:
            if as_json:
                _emit_json(record)
            else:
                print(f"run {run_id} of {task} queued")
            return
        _follow(client, run_id)
        final = client.get_run(run_id)
    if as_json:
        _emit_json(final)
    if final["status"] != "succeeded":
        detail = f": {final['error']}" if final.get("error") else ""
        raise RunFailed(f"run {run_id} of {task} {final['status']}{detail}")


def _task_or_all(action: str, plural: str) -> Callable[..., None]:
    @global_options
    @json_option
    @click.argument("task", required=False)
    @click.option("--all", "all_", is_flag=True, help=f"{plural.capitalize()} every task.")
    def command(task: str | None, all_: bool, as_json: bool) -> None:
        if bool(task) == all_:
            raise UsageError(f"{action}: give a TASK or --all (not both)")
        with _client() as client:
            data = (client.global_action(f"{action}-all") if all_
                    else client.task_action(str(task), action))
        if as_json:
            _emit_json(data)
        elif all_:
            print(f"all tasks {plural}d" if action == "pause" else "scheduled fires resumed")
        else:
            print(f"{data['name']}: {data['state']}")

    command.__doc__ = f"{plural.capitalize()} a task's scheduled fires, or all with --all."
    return command


cli.command("pause")(_task_or_all("pause", "pause"))
cli.command("resume")(_task_or_all("resume", "resume"))


@cli.command("reset-retries")
@global_options
@json_option
@click.argument("task")
def reset_retries(task: str, as_json: bool) -> None:
    """Clear TASK's retry count and any pending retry."""
    with _client() as client:
        data = client.task_action(task, "reset-retries")
    if as_json:
        _emit_json(data)
    else:
        print(f"{data['name']}: retries reset ({data['state']})")


@cli.command()
@global_options
@json_option
@click.argument("task", required=False)
@click.option("--status", help="Only runs with this status.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--before", type=int, help="Page: only runs older than this run id.")
def history(task: str | None, status: str | None, limit: int, before: int | None,
            as_json: bool) -> None:
    """Recent runs, newest first (of TASK, or of all tasks)."""
    with _client() as client:
        runs, cursor = client.list_runs(task, status, limit, before)
    if as_json:
        _emit_json({"runs": runs, "next": cursor})
        return
    _table(["RUN", "TASK", "TRIGGER", "ATTEMPT", "STATUS", "STARTED", "DURATION", "EXIT", "ERROR"],
           [[r["id"], r["task"], r["trigger"], r["attempt"], r["status"],
             timestamp(r["started_at"] or r["queued_at"]), duration(r["duration_ms"]),
             r["exit_code"], (r["error"] or "")[:60]] for r in runs])
    if cursor is not None:
        print(f"(more: --before {cursor})")


@cli.command()
@global_options
@click.argument("run_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Stream until the run ends.")
def logs(run_id: int, follow: bool) -> None:
    """A run's captured output."""
    with _client() as client:
        if follow:
            _follow(client, run_id)
        else:
            sys.stdout.write(client.get_output(run_id))


@cli.command()
@global_options
@json_option
@click.argument("run_id", type=int)
def cancel(run_id: int, as_json: bool) -> None:
    """Stop a queued or running run."""
    with _client() as client:
        data = client.cancel(run_id)
    if as_json:
        _emit_json(data)
    else:
        print(f"run {run_id} of {data['task']}: cancelling")


@cli.command()
@global_options
@json_option
def reload(as_json: bool) -> None:
    """Re-read the configuration file (rejected whole if invalid)."""
    with _client() as client:
        diff = client.reload()
    if as_json:
        _emit_json(diff)
        return
    parts = [f"{key}: {', '.join(diff[key]) or '-'}" for key in ("added", "removed", "changed")]
    print("reloaded; " + "; ".join(parts))


@cli.command()
@global_options
@json_option
def status(as_json: bool) -> None:
    """The daemon: version, pid, uptime, task and run counts."""
    with _client() as client:
        data = client.status()
    if as_json:
        _emit_json(data)
        return
    for key in ("version", "pid", "host", "started_at", "config", "socket", "database", "tasks",
                "running", "queued", "paused_all"):
        print(f"{key:<11} {data.get(key)}")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to the SPEC's exit codes."""
    code = 0
    try:
        result = cli.main(args=list(argv) if argv is not None else None,
                          prog_name="cronkeeper", standalone_mode=False)
        if isinstance(result, int):
            code = result  # click returns ctx.exit()'s code in non-standalone mode
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.UsageError as exc:
        exc.show()
        code = 2
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.Abort:
        print("aborted", file=sys.stderr)
        code = 1
    except CronkeeperError as exc:
        print(f"cronkeeper: {exc.message}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()

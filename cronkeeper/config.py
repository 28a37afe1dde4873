"""``cronkeeper.toml`` into frozen, typed objects, validated once at the boundary.

``load_config(path)`` reads and validates a file; ``parse_config(data, base_dir=...)`` validates
an already-parsed TOML document. Either returns a ``Config`` or raises ``ConfigError`` listing
*every* problem found (the validator never stops at the first one), each naming its task or
section and key.

Decisions the SPEC leaves open (also in the README):

- ``[defaults]`` holds *execution* keys only: ``timeout kill_grace retries retry_delay
  retry_backoff retry_max_delay overlap catch_up jitter timezone env cwd user enabled
  on_failure on_success``. ``description schedule command handler params`` are per task and
  rejected there. A task key replaces the default, except ``env``, which is merged key by key
  (the task wins). A task never inherits an ``on_failure``/``on_success`` naming itself from
  ``[defaults]`` (that would loop); naming itself explicitly is an error.
- ``[daemon] env`` and a task's ``env`` stay separate values here; the executor layers the
  daemon's process environment, then ``[daemon] env``, then the task's.
- A task's time zone is its own ``timezone``, else ``[defaults] timezone``, else
  ``[daemon] timezone``, else the host's zone.
- One-shots (``at ...``) get ``catch_up = true`` unless the task itself sets ``catch_up``;
  ``[defaults] catch_up`` does not apply to them.
- ``params`` is only for handler tasks; environment values may be strings or numbers (numbers
  become strings); ``params`` values must be JSON-compatible (TOML dates are refused).
- The handler module is looked up (``importlib.machinery.PathFinder``) in ``handlers_path``
  without importing user code, so a missing *function* shows up only when the task runs.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import lru_cache
from importlib.machinery import PathFinder
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    # tomli is the same parser as the standard library's tomllib (same errors and messages),
    # compiled with mypyc: about 4x faster, which is most of `check` time for 10,000 tasks.
    import tomli as tomllib
except ImportError:  # pragma: no cover - exercised where tomli is not installed
    import tomllib  # type: ignore[no-redef]

from cronkeeper.errors import ConfigError, ConfigIssue
from cronkeeper.paths import DEFAULT_SOCKET, read_socket_path
from cronkeeper.paths import resolve_path as _resolve
from cronkeeper.schedule import Schedule, ScheduleError, parse_schedule
from cronkeeper.units import format_duration, parse_duration, parse_size
from cronkeeper.vocab import Overlap

__all__ = [
    "Config", "DaemonConfig", "TaskConfig", "load_config", "parse_config", "read_socket_path",
    "default_config_path", "host_timezone", "parse_duration", "parse_size", "format_duration",
    "TASK_NAME_RE", "DAEMON_KEYS", "TASK_KEYS", "DEFAULTS_KEYS",
]

TASK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_DATABASE = ".cronkeeper/cronkeeper.db"

DAEMON_KEYS = (
    "socket", "database", "socket_mode", "socket_group", "timezone", "max_concurrent_runs",
    "output_limit", "keep_runs", "keep_days", "handlers_path", "shell", "shutdown_grace", "env",
)
DEFAULTS_KEYS = (
    "timeout", "kill_grace", "retries", "retry_delay", "retry_backoff", "retry_max_delay",
    "overlap", "catch_up", "jitter", "timezone", "env", "cwd", "user", "enabled",
    "on_failure", "on_success",
)
TASK_KEYS = ("description", "schedule", "command", "handler", "params", *DEFAULTS_KEYS)
_TOP_KEYS = ("daemon", "defaults", "tasks")
_TASK_KEY_SET = frozenset(TASK_KEYS)
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class DaemonConfig:
    """The ``[daemon]`` table: how the daemon itself runs."""

    socket: Path = Path(DEFAULT_SOCKET)
    """Unix socket of the HTTP API; relative to the config file's folder. Default ``.cronkeeper/cronkeeper.sock``."""
    database: str = DEFAULT_DATABASE
    """SQLite file as an absolute path (relative ones resolve against the config file's folder),
    or a ``postgresql://`` URL kept as written. Default ``.cronkeeper/cronkeeper.db``."""
    socket_mode: int = 0o660
    """File mode of the socket: ``"0660"`` (octal string) or a TOML integer such as ``0o660``."""
    socket_group: str = ""
    """Group whose members may use the socket besides root and the daemon's user; ``""`` = none."""
    timezone: str = "UTC"
    """IANA zone name, the default for tasks. Default: the host's local zone."""
    max_concurrent_runs: int = 16
    """Runs beyond this many wait in status ``queued``, first in first out. At least 1."""
    output_limit: int = 1024 * 1024
    """Bytes of output kept per run (first and last halves); a size such as ``"1MiB"``."""
    keep_runs: int = 1000
    """Runs of history kept per task (at least 1) ..."""
    keep_days: float = 90.0
    """... and none older than this many days (more than 0)."""
    handlers_path: Path = Path("handlers")
    """Folder that ``handler = "module:function"`` modules are imported from; relative to the config file."""
    shell: str = "/bin/sh"
    """Shell that runs string commands as ``shell -c COMMAND``."""
    shutdown_grace: float = 30.0
    """On stop, seconds to let running tasks finish before killing them (a duration)."""
    env: Mapping[str, str] = field(default_factory=_empty)
    """Environment variables added to every task (a task's own ``env`` wins)."""


@dataclass(frozen=True)
class TaskConfig:
    """One ``[tasks.NAME]`` table with ``[defaults]`` applied. Equal iff nothing about the task changed."""

    name: str
    """The table name: ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``."""
    description: str = ""
    """Free text shown in listings."""
    schedule: Schedule | None = None
    """When it fires: cron, ``@macro``, ``every 15m``, ``at 2026-12-01T09:00``; None = only by hand or trigger."""
    timezone: str = "UTC"
    """Zone the schedule is read in (task, else ``[defaults]``, else ``[daemon]`` timezone)."""
    command: str | tuple[str, ...] | None = None
    """A string runs under ``shell -c``; an array is the argv, run without a shell."""
    handler: str | None = None
    """``"module:function"`` found in ``handlers_path``, called as ``function(params)`` in a child process."""
    params: Mapping[str, Any] = field(default_factory=_empty)
    """Handler parameters (JSON-compatible); handler tasks only."""
    cwd: Path | None = None
    """Working directory; relative to the config file's folder. None = the daemon's."""
    env: Mapping[str, str] = field(default_factory=_empty)
    """Environment for this task, over ``[daemon] env`` (``[defaults] env`` already merged in)."""
    user: str | None = None
    """Run as this user; only possible when the daemon runs as root."""
    timeout: float = 0.0
    """Seconds before the run is stopped (SIGTERM, then SIGKILL after ``kill_grace``); 0 = none."""
    kill_grace: float = 10.0
    """Seconds between SIGTERM to the process group and SIGKILL."""
    retries: int = 0
    """Extra attempts after a failed or timed-out run."""
    retry_delay: float = 30.0
    """Seconds before the first retry ..."""
    retry_backoff: float = 2.0
    """... multiplied by this per further attempt (at least 1) ..."""
    retry_max_delay: float = 3600.0
    """... and never more than this many seconds."""
    overlap: Overlap = Overlap.SKIP
    """When it fires while a run is active: ``skip``, ``queue``, ``allow`` or ``replace``."""
    catch_up: bool = False
    """Run once at start-up if fires were missed while the daemon was down. One-shots default to true."""
    jitter: float = 0.0
    """Each scheduled fire is delayed by a random 0..jitter seconds."""
    on_failure: tuple[str, ...] = ()
    """Tasks triggered when a run finally fails (after its retries)."""
    on_success: tuple[str, ...] = ()
    """Tasks triggered after a successful run."""
    enabled: bool = True
    """False: never fires on schedule, still runnable by hand or trigger."""

    @property
    def kind(self) -> Literal["command", "handler"]:
        """``"handler"`` for a Python handler task, else ``"command"``."""
        return "handler" if self.handler is not None else "command"

    # Explicit because the Mapping fields are unhashable; equal tasks still hash equal.
    def __hash__(self) -> int:
        return hash((self.name, self.kind, self.command, self.handler))


@dataclass(frozen=True)
class Config:
    """A whole validated configuration. ``tasks`` keeps the file's order."""

    path: Path | None
    """The file it was loaded from (None when built from data)."""
    daemon: DaemonConfig
    """The ``[daemon]`` table."""
    tasks: Mapping[str, TaskConfig] = field(default_factory=_empty)
    """Every task by name, in file order."""


# ---------------------------------------------------------------------------------------------
# value converters: each returns the typed value or raises ValueError with the user's message

_TOML_TYPES = {str: "string", int: "integer", float: "float", bool: "boolean", list: "array",
               dict: "table", datetime: "datetime", date: "date", time: "time"}


def _got(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{_TOML_TYPES.get(type(value), type(value).__name__)} {value!r}"


def _expect(what: str, value: object) -> ValueError:
    return ValueError(f"must be {what}, got {_got(value)}")


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _expect("a string", value)
    return value


def _nonempty_string(value: object) -> str:
    if not _string(value).strip():
        raise ValueError("must be a non-empty string")
    return value  # type: ignore[return-value]


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _expect("a boolean (true or false)", value)
    return value


def _integer(minimum: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _expect("an integer", value)
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value
    return convert


def _number(minimum: float, *, inclusive: bool = True) -> Callable[[object], float]:
    def convert(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _expect("a number", value)
        if value < minimum or (not inclusive and value == minimum):
            word = "at least" if inclusive else "more than"
            raise ValueError(f"must be {word} {minimum:g}, got {value:g}")
        return float(value)
    return convert


def _duration(value: object) -> float:
    return parse_duration(value)  # type: ignore[arg-type]  # it rejects wrong types itself


def _size(value: object) -> int:
    size = parse_size(value)  # type: ignore[arg-type]
    if size < 1:
        raise ValueError(f"must be at least 1 byte, got {value!r}")
    return size


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _timezone(value: object) -> str:
    name = _string(value)
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC', 'Europe/Berlin' "
            "or 'America/New_York'"
        ) from None
    return name


_OVERLAPS = ", ".join(o.value for o in Overlap)


def _overlap(value: object) -> Overlap:
    try:
        return Overlap(_string(value))
    except ValueError:
        raise ValueError(f"must be one of {_OVERLAPS}; got {_got(value)}") from None


_ENV_NAME = re.compile(r"[^=\x00]+")


def _env(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _expect("a table of NAME = \"value\"", value)
    env: dict[str, str] = {}
    bad: list[str] = []
    for name, item in value.items():
        if not _ENV_NAME.fullmatch(name):
            bad.append(f"invalid variable name {name!r}")
        elif isinstance(item, str):
            env[name] = item
        elif isinstance(item, int | float) and not isinstance(item, bool):
            env[name] = str(item)  # PORT = 5432 is what people write; the child sees "5432"
        else:
            bad.append(f"{name} must be a string, got {_got(item)}")
    if bad:
        raise ValueError("; ".join(bad))
    return env


def _names(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _expect("an array of task names", value)
    return tuple(value)


def _command(value: object) -> str | tuple[str, ...]:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        return value
    if isinstance(value, list):
        if not value:
            raise ValueError("must not be an empty array")
        if not all(isinstance(v, str) for v in value):
            raise ValueError("an argv array must hold only strings")
        if not value[0]:
            raise ValueError("the program (first element) must not be empty")
        return tuple(value)
    raise _expect("a shell command string or an array of strings (argv)", value)


_HANDLER = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)")


def _handler(value: object) -> str:
    if not _HANDLER.fullmatch(_string(value)):
        raise ValueError(f"must be \"module:function\" (e.g. \"maintenance:cleanup_files\"), got {value!r}")
    return value  # type: ignore[return-value]


def _json_value(value: object, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _json_value(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _json_value(item, f"{where}[{index}]")
    elif isinstance(value, datetime | date | time):
        raise ValueError(f"{where}: TOML dates and times cannot be passed to a handler; quote it as a string")


def _params(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _expect("a table", value)
    _json_value(value, "params")
    return value


# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def host_timezone() -> str:
    """The host's local zone name: ``$TZ``, /etc/timezone, the /etc/localtime link, else ``"UTC"``."""
    candidates: list[str] = []
    tz_env = os.environ.get("TZ", "").lstrip(":")
    if tz_env:
        candidates.append(tz_env)
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass  # not every distribution has it; /etc/localtime is the other source
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        try:
            _zone(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue  # e.g. TZ="CET-1CEST" (POSIX rule, not a zone name): try the next source
        return name
    return "UTC"


def default_config_path(explicit: str | None = None) -> Path:
    """``--config``, else ``$CRONKEEPER_CONFIG``, else ./cronkeeper.toml, else /etc/cronkeeper/cronkeeper.toml."""
    from cronkeeper.cli_options import GlobalOptions

    return GlobalOptions(config=explicit).config_path()


def load_config(path: str | Path) -> Config:
    """Read and validate ``path``; raise ``ConfigError`` listing every problem.

    A missing or unreadable file and a TOML syntax error (with line and column) are single
    issues; otherwise see ``parse_config``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(f"configuration file {path} does not exist")], str(path)) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(f"cannot read {path}: {exc.strerror or exc}")], str(path)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(f"{path} is not UTF-8 text (byte {exc.start})")], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        at = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
        if at:
            text = f"invalid TOML in {path} at line {at[1]}, column {at[2]}: {text[:at.start()]}"
        else:
            text = f"invalid TOML in {path}: {text}"
        raise ConfigError([ConfigIssue(text)], str(path)) from None
    return parse_config(data, base_dir=path.absolute().parent, path=path)


def parse_config(data: Mapping[str, Any], *, base_dir: Path, path: Path | None = None) -> Config:
    """Validate a parsed TOML document; relative paths resolve against ``base_dir``.

    Raises ``ConfigError`` with every issue found, each naming its task/section and key.
    """
    return _Parser(Path(base_dir).absolute(), path).parse(data)


class _Parser:
    """One validation pass; collects issues instead of raising on the first."""

    def __init__(self, base_dir: Path, path: Path | None) -> None:
        self.base_dir = base_dir
        self.path = path
        self.issues: list[ConfigIssue] = []
        self._schedules: dict[tuple[str, str], Schedule | ScheduleError] = {}
        self._modules: dict[tuple[Path, str], str | None] = {}

    # -- helpers ---------------------------------------------------------------------------

    def issue(self, message: str, *, task: str | None = None, key: str | None = None,
              section: str | None = None) -> None:
        self.issues.append(ConfigIssue(message=message, task=task, key=key, section=section))

    def table(self, value: object, *, name: str, task: str | None = None,
              section: str | None = None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        self.issue(f"must be a table, got {_got(value)}", task=task, section=section,
                   key=None if task or section else name)
        return {}

    def unknown_keys(self, table: Mapping[str, Any], allowed: Iterable[str], *,
                     task: str | None = None, section: str | None = None,
                     hint: Callable[[str], str | None] | None = None) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key in allowed:
                continue
            special = hint(key) if hint else None
            if special:
                self.issue(special, task=task, section=section, key=key)
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            maybe = f" (did you mean {close[0]!r}?)" if close else ""
            self.issue(f"unknown key{maybe}; allowed keys: {', '.join(sorted(allowed))}",
                       task=task, section=section, key=key)

    def convert(self, table: Mapping[str, Any], key: str, converter: Callable[[object], Any],
                fallback: Any, *, task: str | None = None, section: str | None = None) -> Any:
        if key not in table:
            return fallback
        try:
            return converter(table[key])
        except ValueError as exc:
            self.issue(str(exc), task=task, section=section, key=key)
            return fallback

    # -- sections --------------------------------------------------------------------------

    def parse(self, data: Mapping[str, Any]) -> Config:
        self.unknown_keys(data, _TOP_KEYS)
        daemon = self.daemon(self.table(data.get("daemon", {}), name="daemon", section="daemon"))
        raw_tasks = self.table(data.get("tasks", {}), name="tasks")
        names = set(raw_tasks)
        defaults = self.defaults(self.table(data.get("defaults", {}), name="defaults",
                                            section="defaults"), daemon, names)
        tasks: dict[str, TaskConfig] = {}
        for name, raw in raw_tasks.items():
            task = self.task(name, raw, daemon, defaults, names)
            if task is not None:
                tasks[name] = task
        if self.issues:
            raise ConfigError(self.issues, str(self.path) if self.path else None)
        return Config(path=self.path, daemon=daemon, tasks=MappingProxyType(tasks))

    def daemon(self, raw: Mapping[str, Any]) -> DaemonConfig:
        d = DaemonConfig()
        self.unknown_keys(raw, DAEMON_KEYS, section="daemon")

        def get(key: str, converter: Callable[[object], Any], fallback: Any) -> Any:
            return self.convert(raw, key, converter, fallback, section="daemon")

        return DaemonConfig(
            socket=_resolve(self.base_dir, get("socket", _nonempty_string, DEFAULT_SOCKET)),
            database=self.database(get("database", _nonempty_string, DEFAULT_DATABASE)),
            socket_mode=get("socket_mode", _socket_mode, d.socket_mode),
            socket_group=get("socket_group", _string, d.socket_group),
            timezone=get("timezone", _timezone, None) or host_timezone(),
            max_concurrent_runs=get("max_concurrent_runs", _integer(1), d.max_concurrent_runs),
            output_limit=get("output_limit", _size, d.output_limit),
            keep_runs=get("keep_runs", _integer(1), d.keep_runs),
            keep_days=get("keep_days", _number(0, inclusive=False), d.keep_days),
            handlers_path=_resolve(self.base_dir, get("handlers_path", _nonempty_string, "handlers")),
            shell=get("shell", _nonempty_string, d.shell),
            shutdown_grace=get("shutdown_grace", _duration, d.shutdown_grace),
            env=MappingProxyType(get("env", _env, {})),
        )

    def database(self, value: str) -> str:
        if "://" not in value:
            return str(_resolve(self.base_dir, value))
        if value.startswith(("postgresql://", "postgres://")):
            return value
        self.issue(f"unsupported database URL {value!r}; use a SQLite file path or a "
                   "postgresql:// URL", section="daemon", key="database")
        return str(_resolve(self.base_dir, DEFAULT_DATABASE))

    def defaults(self, raw: Mapping[str, Any], daemon: DaemonConfig, names: set[str]) -> dict[str, Any]:
        """``[defaults]`` converted once; a bad value is reported here, not once per task."""
        def per_task(key: str) -> str | None:
            if key in TASK_KEYS:
                return (f"{key!r} is set per task and cannot be a default; "
                        f"[defaults] accepts: {', '.join(sorted(DEFAULTS_KEYS))}")
            return None

        self.unknown_keys(raw, DEFAULTS_KEYS, section="defaults", hint=per_task)
        builtin = TaskConfig(name="-")
        out: dict[str, Any] = {"timezone": daemon.timezone, "env": {}, "cwd": None, "user": None}
        for key in DEFAULTS_KEYS:
            if key in ("timezone", "env", "cwd", "user"):
                fallback = out[key]
            else:
                fallback = getattr(builtin, key)
            out[key] = self.convert(raw, key, _TASK_CONVERTERS[key], fallback, section="defaults")
        if isinstance(out["cwd"], str):
            out["cwd"] = _resolve(self.base_dir, out["cwd"])
        # Shared by every task that sets no env of its own: read-only, so sharing is safe.
        out["env"] = MappingProxyType(out["env"])
        for key in ("on_failure", "on_success"):
            missing = [n for n in out[key] if n not in names]
            if missing:
                self.issue(_unknown_tasks(missing, names), section="defaults", key=key)
                out[key] = tuple(n for n in out[key] if n in names)
        return out

    def task(self, name: str, raw: object, daemon: DaemonConfig, defaults: Mapping[str, Any],
             names: set[str]) -> TaskConfig | None:
        valid_name = bool(TASK_NAME_RE.fullmatch(name))
        if not valid_name:
            self.issue("invalid task name: use 1-64 letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit", task=name)
        if not isinstance(raw, dict):
            self.issue(f"must be a table ([tasks.{name}]), got {_got(raw)}", task=name)
            return None
        if not raw.keys() <= _TASK_KEY_SET:
            self.unknown_keys(raw, TASK_KEYS, task=name)

        # Start from the converted defaults and convert only the keys the task sets: most
        # tasks set three or four, and this loop runs 10,000 times for a big file.
        values = dict(defaults)
        for key, value in raw.items():
            converter = _TASK_CONVERTERS.get(key)
            if converter is not None:
                try:
                    values[key] = converter(value)
                except ValueError as exc:
                    self.issue(str(exc), task=name, key=key)
        if "env" in raw:
            values["env"] = MappingProxyType({**defaults["env"], **values["env"]})
        if "cwd" in raw and isinstance(values["cwd"], str):
            values["cwd"] = _resolve(self.base_dir, values["cwd"])
        for key in ("on_failure", "on_success"):
            if key in raw:
                missing = [n for n in values[key] if n not in names]
                if missing:
                    self.issue(_unknown_tasks(missing, names), task=name, key=key)
                elif name in values[key]:
                    self.issue("a task cannot trigger itself; use retries to run it again",
                               task=name, key=key)
            elif name in values[key]:
                values[key] = tuple(n for n in values[key] if n != name)  # never inherit a loop

        def get(key: str, converter: Callable[[object], Any], fallback: Any = None) -> Any:
            return self.convert(raw, key, converter, fallback, task=name)

        command = get("command", _command)
        handler = get("handler", _handler)
        if ("command" in raw) == ("handler" in raw):
            which = "both" if "command" in raw else "neither"
            self.issue(f"set exactly one of command or handler (this task has {which})",
                       task=name, key="command")
        params = _EMPTY
        if "params" in raw:
            params = MappingProxyType(get("params", _params, {}))
            if "command" in raw:
                self.issue("params are passed to handlers only; a command task cannot use them",
                           task=name, key="params")
        if handler is not None:
            self.check_handler(handler, daemon.handlers_path, name)

        schedule = None
        if "schedule" in raw:
            text = get("schedule", _nonempty_string)
            if text is not None:
                schedule = self.schedule(text, values["timezone"], name)
        if schedule is not None and schedule.is_one_shot and "catch_up" not in raw:
            values["catch_up"] = True

        description = get("description", _string, "")
        if not valid_name:
            return None
        return _new_task(name=name, description=description, schedule=schedule,
                         command=command, handler=handler, params=params, **values)

    def schedule(self, text: str, tz: str, task: str) -> Schedule | None:
        # Cached per load: 10,000 tasks often share a few dozen expressions.
        key = (text, tz)
        parsed = self._schedules.get(key)
        if parsed is None:
            try:
                parsed = parse_schedule(text, _zone(tz))
            except ScheduleError as exc:
                parsed = exc
            self._schedules[key] = parsed
        if isinstance(parsed, ScheduleError):
            self.issue(str(parsed), task=task, key="schedule")
            return None
        return parsed

    def check_handler(self, handler: str, handlers_path: Path, task: str) -> None:
        module = handler.split(":", 1)[0]
        key = (handlers_path, module)
        if key not in self._modules:
            self._modules[key] = _find_module(module, handlers_path)
        problem = self._modules[key]
        if problem:
            self.issue(problem, task=task, key="handler")


def _new_task(**fields: Any) -> TaskConfig:
    """``TaskConfig(**fields)`` without the frozen ``__init__``'s 22 ``object.__setattr__`` calls.

    Every field must be given (the parser always does). A third of the per-task validation
    time went into the generated ``__init__``; the result is the same frozen object
    (tests compare it with the regular constructor).
    """
    task = object.__new__(TaskConfig)
    task.__dict__.update(fields)
    return task


def _find_module(module: str, handlers_path: Path) -> str | None:
    """None when ``module`` can be imported from ``handlers_path``, else why not. Imports nothing."""
    if not handlers_path.is_dir():
        return f"handler module {module!r} not found: handlers_path {handlers_path} is not a folder"
    search: list[str] | None = [str(handlers_path)]
    parts = module.split(".")
    for depth in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: depth + 1]), search)
        if spec is None:
            return f"handler module {module!r} not found in handlers_path {handlers_path}"
        search = list(spec.submodule_search_locations or [])
        if depth + 1 < len(parts) and not search:
            return f"handler module {module!r} not found: {'.'.join(parts[: depth + 1])} is not a package"
    return None


def _unknown_tasks(missing: list[str], names: set[str]) -> str:
    listed = ", ".join(repr(n) for n in missing)
    noun = "task" if len(missing) == 1 else "tasks"
    if len(names) <= 20:
        return f"unknown {noun} {listed}; defined tasks: {', '.join(sorted(names)) or '(none)'}"
    # With thousands of tasks a full list helps nobody: suggest near spellings instead.
    close = sorted({c for n in missing for c in difflib.get_close_matches(n, names, n=3)})
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return f"unknown {noun} {listed}{hint}"


def _socket_mode(value: object) -> int:
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if re.fullmatch(r"[0-7]{3,4}", text) and int(text, 8) <= 0o777:
            return int(text, 8)
        raise ValueError(f"must be an octal file mode such as \"0660\", got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 0o777:
            return value
        # `socket_mode = 660` is decimal in TOML (0o1224): almost certainly meant as octal.
        raise ValueError(f"{value} is not a file mode; write it as a string \"0{value}\" or as 0o{value}")
    raise _expect("an octal file mode string such as \"0660\"", value)


_TASK_CONVERTERS: dict[str, Callable[[object], Any]] = {
    "timeout": _duration,
    "kill_grace": _duration,
    "retries": _integer(0),
    "retry_delay": _duration,
    "retry_backoff": _number(1),
    "retry_max_delay": _duration,
    "overlap": _overlap,
    "catch_up": _boolean,
    "jitter": _duration,
    "timezone": _timezone,
    "env": _env,
    "cwd": _nonempty_string,
    "user": _nonempty_string,
    "enabled": _boolean,
    "on_failure": _names,
    "on_success": _names,
}

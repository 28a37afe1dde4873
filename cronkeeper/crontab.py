"""Convert a crontab (user format, or ``/etc/crontab`` / ``/etc/cron.d`` format) to cronkeeper TOML.

Cron behaviours and how they are carried over:

- ``NAME=value`` lines (quotes stripped, as cron does) apply to the jobs *below* them and
  become each task's ``env``, exactly like cron's environment.
- ``CRON_TZ=Zone`` (cronie) sets ``timezone`` of the following tasks. ``TZ=`` only sets the
  job's environment, as in cron: the schedule stays in the daemon's zone (a warning says so).
- ``SHELL=/bin/bash`` makes the following tasks argv arrays ``["/bin/bash", "-c", COMMAND]``, so
  they run under that shell whatever the daemon's ``shell`` is.
- ``MAILTO`` becomes a comment: cronkeeper keeps output in its history instead of mailing it
  (a ``notify:email`` handler task in ``on_failure`` is the replacement).
- ``%`` in a command: the first unescaped ``%`` ends the command, the rest is the job's stdin
  with each further ``%`` turned into a newline, and ``\\%`` is a literal ``%``. cronkeeper has
  no stdin key, so the command becomes the exactly equivalent shell text::

      { COMMAND
      } <<'CRONKEEPER_STDIN'
      LINE1
      LINE2
      CRONKEEPER_STDIN

  (a quoted here-document: nothing in it is expanded; the delimiter is changed if a stdin line
  equals it). Like cron, the text always ends with a newline.
- Comments are kept as TOML comments above the next task; each task is preceded by its
  source line. Lines that cannot be converted stay in the output as comments and are
  returned as warnings with their line numbers.
- Task names come from the command's program name (``/usr/local/bin/backup.sh -q`` ->
  ``backup.sh``), sanitised to the task-name rule and made unique with ``-2``, ``-3`` ...
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli_w

from cronkeeper.config import TASK_NAME_RE
from cronkeeper.schedule import ScheduleError, parse_schedule

__all__ = ["CrontabConversion", "convert_crontab", "crontab_to_toml", "split_cron_command",
           "with_stdin", "is_system_crontab_path"]

MACROS = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_ENV_LINE = re.compile(r"\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1\s*=(.*)")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")
# Words that wrap the real program; the task is named after what they run.
_WRAPPERS = {"sudo", "nice", "ionice", "nohup", "env", "exec", "command", "time", "chronic",
             "if", "then", "!", "(", "{", "&&", "||", ";", "/usr/bin/env", "setsid", "cronic"}
_NOT_POSIX_SHELLS = {"csh", "tcsh", "fish"}
_STDIN_DELIMITER = "CRONKEEPER_STDIN"


@dataclass(frozen=True)
class CrontabConversion:
    """Result of ``convert_crontab``: the TOML text and what needs the user's attention."""

    toml: str
    """cronkeeper.toml text holding one ``[tasks.NAME]`` table per converted job."""
    warnings: tuple[str, ...] = ()
    """``SOURCE:LINE: message`` for every line not converted or converted with a caveat."""
    tasks: tuple[str, ...] = ()
    """Names of the generated tasks, in order."""
    system: bool = False
    """Whether the input was read as system format (a user column after the schedule)."""


def is_system_crontab_path(source: str) -> bool:
    """True for ``/etc/crontab`` and files under ``/etc/cron.d/``: they have a user column."""
    if source in ("", "-"):
        return False
    path = os.path.normpath(os.path.abspath(source))
    return path == "/etc/crontab" or path.startswith("/etc/cron.d/")


def split_cron_command(text: str) -> tuple[str, str | None]:
    """Split a crontab command at its first unescaped ``%``, as cron(5)/cronie does.

    Returns ``(command, stdin)``: ``\\%`` in the command becomes ``%``; in the stdin part
    unescaped ``%`` become newlines and a final newline is added unless present. ``stdin`` is
    None when there is no ``%`` or nothing after it (cron then writes no input either).
    """
    out: list[str] = []
    escaped = False
    for index, ch in enumerate(text):
        if escaped:
            escaped = False
            if ch == "%":
                out[-1] = "%"  # "\%" -> "%": the backslash goes
            else:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            out.append(ch)
        elif ch == "%":
            rest = text[index + 1:]
            return "".join(out), (_cron_stdin(rest) if rest else None)
        else:
            out.append(ch)
    return "".join(out), None


def _cron_stdin(rest: str) -> str:
    # A transcription of cronie's do_command.c loop, quirks included ("\\%" gives "\%").
    buf: list[str] = []
    escaped = False
    need_newline = False
    for ch in rest:
        if escaped:
            if ch != "%":
                buf.append("\\")
        elif ch == "%":
            ch = "\n"
        escaped = ch == "\\"
        if not escaped:
            buf.append(ch)
        need_newline = ch != "\n"
    if escaped:
        buf.append("\\")
    if need_newline:
        buf.append("\n")
    return "".join(buf)


def with_stdin(command: str, stdin: str) -> str:
    """Shell text running ``command`` with ``stdin`` (ending in a newline) as its input.

    A brace group keeps ``command`` in the current shell (``a; b`` both read the input, as
    under cron) and a quoted here-document passes the text byte for byte, unexpanded.
    """
    lines = set(stdin.split("\n"))
    delimiter = _STDIN_DELIMITER
    counter = 1
    while delimiter in lines:
        counter += 1
        delimiter = f"{_STDIN_DELIMITER}_{counter}"
    return f"{{ {command}\n}} <<'{delimiter}'\n{stdin}{delimiter}"


def crontab_to_toml(text: str, *, system: bool | None = None, source: str = "-") -> str:
    """The crontab ``text`` as cronkeeper.toml text; see ``convert_crontab`` for the warnings."""
    return convert_crontab(text, system=system, source=source).toml


def convert_crontab(text: str, *, system: bool | None = None, source: str = "-") -> CrontabConversion:
    """Convert crontab ``text`` read from ``source`` (a path, or ``"-"`` for stdin).

    ``system`` True: lines have a user column after the schedule (``/etc/crontab``,
    ``/etc/cron.d/*``); False: a user crontab; None: decided from ``source`` when it is one of
    those paths, else from the lines (system only if every job's sixth word is an existing
    user followed by a command).
    """
    lines = text.splitlines()
    notes: list[str] = []
    if system is None:
        system = _detect_system(lines, source, notes)
    converter = _Converter(source, system)
    converter.warnings.extend(notes)
    for number, line in enumerate(lines, 1):
        converter.line(number, line)
    return converter.finish()


def _detect_system(lines: list[str], source: str, notes: list[str]) -> bool:
    if is_system_crontab_path(source):
        return True
    verdicts = []
    for line in lines:
        body = line.strip()
        if not body or body.startswith("#") or _ENV_LINE.fullmatch(body):
            continue
        words = body.lstrip("-").split()
        skip = 1 if words[0].startswith("@") else 5
        if len(words) < skip + 2:
            verdicts.append(False)
            continue
        verdicts.append(_is_user(words[skip]))
    if verdicts and all(verdicts):
        notes.append(f"{source}: every job has an existing user name after its schedule, so this "
                     "is read as system format (/etc/crontab, /etc/cron.d); pass --user if it is not")
        return True
    return False


def _is_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class _Converter:
    source: str
    system: bool
    warnings: list[str] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)   # comments waiting for the next task
    env: dict[str, str] = field(default_factory=dict)
    timezone: str | None = None
    shell: str | None = None
    names: list[str] = field(default_factory=list)
    reboot: bool = False

    def warn(self, number: int, message: str) -> None:
        self.warnings.append(f"{self.source}:{number}: {message}")

    def comment(self, text: str) -> None:
        self.pending.append("# " + _comment_safe(text) if text else "#")

    def line(self, number: int, raw: str) -> None:
        body = raw.strip()
        if not body:
            return
        if body.startswith("#"):
            self.pending.append(_comment_safe(body))
            return
        env = _ENV_LINE.fullmatch(body)
        if env:
            self.assignment(number, body, env[2], _env_value(env[3]))
            return
        self.job(number, raw.lstrip(), body)

    def assignment(self, number: int, body: str, name: str, value: str) -> None:
        if name == "MAILTO":
            self.comment(f"{body}  (cronkeeper does not mail output: it keeps it in the run "
                         "history; for alerts add on_failure = [a notify:email handler task])")
            if value:
                self.warn(number, "MAILTO ignored: cronkeeper keeps output in its history "
                                  "instead of mailing it (see the notify:email handler)")
            return
        if name == "CRON_TZ":
            if value:
                try:
                    ZoneInfo(value)
                except (ZoneInfoNotFoundError, ValueError, OSError):
                    self.unconverted(number, body, f"unknown time zone {value!r}")
                    return
            self.timezone = value or None
            self.comment(f"{body}  (timezone of the tasks below)")
            return
        if name == "TZ":
            self.warn(number, "TZ only sets the jobs' environment, as in cron; their schedules "
                              "stay in the daemon's zone (use CRON_TZ or timezone = ... to move them)")
        if name == "SHELL":
            base = os.path.basename(value)
            self.shell = None if value in ("", "/bin/sh") else value
            if base in _NOT_POSIX_SHELLS:
                self.warn(number, f"SHELL={value}: commands that feed stdin with % cannot be converted for it")
        self.env[name] = value
        self.comment(f"{body}  (env of the tasks below)")

    def unconverted(self, number: int, body: str, reason: str) -> None:
        self.warn(number, f"not converted: {reason}: {body}")
        self.comment(f"cronkeeper: line {number} not converted: {reason}")
        self.comment(body)

    def job(self, number: int, line: str, body: str) -> None:
        work = line
        if work.startswith("-"):
            # cronie's "-" prefix only silences syslog for the job; nothing to carry over.
            work = work[1:]
        words = work.split(None, 1)
        if words[0].startswith("@"):
            schedule = words[0].lower()
            if schedule not in MACROS:
                self.unconverted(number, body, f"unknown macro {words[0]!r}; known: {', '.join(MACROS)}")
                return
            rest = words[1] if len(words) > 1 else ""
        else:
            parts = work.split(None, 5)
            if len(parts) < 6:
                self.unconverted(number, body, "expected five time fields and a command")
                return
            schedule, rest = " ".join(parts[:5]), parts[5]
        user = None
        if self.system:
            pieces = rest.split(None, 1)
            if len(pieces) < 2:
                self.unconverted(number, body, "expected a user name and a command after the schedule")
                return
            user, rest = pieces
        try:
            parse_schedule(schedule, self.timezone or "UTC")
        except ScheduleError as exc:
            self.unconverted(number, body, str(exc))
            return
        command, stdin = split_cron_command(rest)
        if not command.strip():
            self.unconverted(number, body, "empty command")
            return
        if stdin is not None:
            if (len(command) - len(command.rstrip("\\"))) % 2:
                self.unconverted(number, body, "a command ending in a backslash cannot be given stdin")
                return
            if self.shell and os.path.basename(self.shell) in _NOT_POSIX_SHELLS:
                self.unconverted(number, body, f"stdin (%) needs a POSIX shell, not {self.shell}")
                return
            command = with_stdin(command, stdin)
        name = self.unique(_task_name(command))
        table: dict[str, object] = {"schedule": schedule}
        if self.timezone:
            table["timezone"] = self.timezone
        table["command"] = [self.shell, "-c", command] if self.shell else command
        if user:
            table["user"] = user
        if self.env:
            table["env"] = dict(self.env)
        self.reboot = self.reboot or schedule == "@reboot"
        self.comment(f"crontab line {number}: {body}")
        self.flush()
        self.chunks.append(tomli_w.dumps({"tasks": {name: table}}, multiline_strings=True))
        self.names.append(name)

    def unique(self, base: str) -> str:
        taken = set(self.names)
        if base not in taken:
            return base
        counter = 2
        while f"{base[:60]}-{counter}" in taken:
            counter += 1
        return f"{base[:60]}-{counter}"

    def flush(self) -> None:
        if self.pending:
            self.chunks.append("\n".join(self.pending) + "\n")
            self.pending = []

    def finish(self) -> CrontabConversion:
        self.flush()
        header = [f"# cronkeeper tasks converted by `cronkeeper import-crontab` from {_comment_safe(self.source)}"
                  if self.source != "-" else
                  "# cronkeeper tasks converted by `cronkeeper import-crontab` from standard input",
                  "# Differences from cron worth a look:",
                  "# - output is kept in the run history, not mailed;",
                  "# - a job still running when it is due again is skipped (overlap = \"skip\");",
                  "#   cron would start a second copy: add overlap = \"allow\" for that;",
                  "# - jobs get the daemon's environment plus their env (cron's own default is",
                  "#   PATH=/usr/bin:/bin, SHELL=/bin/sh, HOME and LOGNAME of the crontab's user)."]
        if not self.system:
            header.append("# - they run as the daemon's user: add user = \"...\" when the daemon runs as root.")
        if self.reboot:
            header.append("# - @reboot tasks run each time the daemon starts, not only at boot.")
        if not self.names:
            header.append("# (no jobs were converted)")
        body = "\n".join(chunk.rstrip("\n") + "\n" for chunk in self.chunks)
        text = "\n".join(header) + "\n\n" + body
        return CrontabConversion(toml=text, warnings=tuple(self.warnings),
                                 tasks=tuple(self.names), system=self.system)


def _env_value(raw: str) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _comment_safe(text: str) -> str:
    # TOML comments may not hold control characters other than tab.
    return re.sub(r"[\x00-\x08\x0a-\x1f\x7f]", "?", text)


def _task_name(command: str) -> str:
    first_line = command.split("\n", 1)[0].lstrip("{ ")
    try:
        words = shlex.split(first_line, comments=True)
    except ValueError:
        words = first_line.split()
    skip_next = in_test = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        if in_test:
            # "test -x /usr/sbin/foo || run-parts ..." is named after what runs, not the test.
            in_test = word not in ("||", "&&", ";") and not word.endswith(";")
            continue
        if word in ("test", "[", "[["):
            in_test = True
            continue
        if word == "cd":
            skip_next = True  # "cd /srv && ./run" is named after ./run
            continue
        if (_ASSIGNMENT.fullmatch(word) or word in _WRAPPERS or word.startswith("-")
                or word.isdigit() or word in ("&&", "||", ";")):
            continue
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(word.rstrip("/;&|")).name)
        name = name.lstrip("._-")[:60].rstrip("-")
        if name and TASK_NAME_RE.fullmatch(name):
            return name
    return "task"

"""Logging for the daemon: stderr, in journald's dialect when systemd is listening.

Under systemd (``$JOURNAL_STREAM`` names our stderr) every line starts with the sd-daemon(3)
priority prefix (``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug) and carries no
timestamp, because journald stores its own and records the priority as the entry's level
(``journalctl -p warning`` then works). Anywhere else lines are timestamped for a human.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import IO

__all__ = ["JournalFormatter", "journal_stream_matches", "setup_logging"]

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"

# sd-daemon(3) priorities (syslog levels) for the logging levels.
_PRIORITIES: tuple[tuple[int, int], ...] = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_DEBUG_PRIORITY = 7

# Set on the handler we install so a second setup_logging() replaces it instead of doubling
# every line (the CLI and tests may call it more than once in one process).
_HANDLER_MARK = "_cronkeeper_handler"


def _priority(levelno: int) -> int:
    for threshold, priority in _PRIORITIES:
        if levelno >= threshold:
            return priority
    return _DEBUG_PRIORITY


class JournalFormatter(logging.Formatter):
    """Formats without a timestamp and prefixes *every* line with ``<priority>``.

    journald's stream transport turns each line into its own entry; a traceback's lines
    would otherwise be filed at the default priority (info) instead of the record's.
    """

    def __init__(self, fmt: str = JOURNAL_FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.split("\n"))


def journal_stream_matches(stream: IO[str], env: Mapping[str, str] | None = None) -> bool:
    """True when ``$JOURNAL_STREAM`` ("DEVICE:INODE") names ``stream``'s file.

    systemd.exec(5) says to compare the device and inode rather than trust the variable's
    mere presence: it is inherited by processes whose stderr was redirected elsewhere (a
    ``cronkeeper daemon 2>file`` started by hand from inside a service, for example).
    """
    env = os.environ if env is None else env
    raw = env.get("JOURNAL_STREAM", "")
    if not raw:
        return False
    device, sep, inode = raw.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        # No real fd behind the stream (io.StringIO raises io.UnsupportedOperation, an
        # OSError) or a malformed variable: not the journal.
        return False


def _parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(
            f"unknown log level {level!r}; use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
        )
    return value


def setup_logging(
    level: str | int = "INFO",
    *,
    stream: IO[str] | None = None,
    journal: bool | None = None,
) -> logging.Handler:
    """Send the root logger to ``stream`` (default ``sys.stderr``) at ``level``.

    ``journal`` forces the journald format on or off; by default it is used when
    ``$JOURNAL_STREAM`` matches the stream (see ``journal_stream_matches``). Calling it again
    replaces the handler it installed before. Returns the installed handler.
    """
    levelno = _parse_level(level)
    stream = sys.stderr if stream is None else stream
    if journal is None:
        journal = journal_stream_matches(stream)

    handler = logging.StreamHandler(stream)
    formatter: logging.Formatter = JournalFormatter() if journal else logging.Formatter(PLAIN_FORMAT)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(levelno)

    # APScheduler logs two INFO lines per fire ("Running job ...", "... executed
    # successfully"); with many tasks that drowns the daemon's own run log, which already
    # records every run. Keep them only when debugging.
    logging.getLogger("apscheduler").setLevel(
        logging.NOTSET if levelno <= logging.DEBUG else logging.WARNING
    )
    return handler

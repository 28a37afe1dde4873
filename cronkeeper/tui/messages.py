"""Messages the app posts to its screens.

Widget-level messages are nested in the widget that posts them (``RunTable.NeedMore``);
these are posted by the ``CronkeeperApp`` itself, which is not a widget, after it has
applied a batch of daemon events or (re)connected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class TasksChanged(Message):
    """Rows to repaint: ``names`` changed; ``rebuild`` means tasks were added or removed."""

    names: set[str] = field(default_factory=set)
    rebuild: bool = False


@dataclass
class RunsChanged(Message):
    """Run objects that were queued, started or finished, in event order."""

    runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StatusChanged(Message):
    """The daemon status (or the connection to it) changed."""

    def can_replace(self, message: Message) -> bool:
        # Each one redraws the whole table: connecting posts two in a row, draw once.
        return isinstance(message, StatusChanged)

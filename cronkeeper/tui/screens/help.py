"""The `?` screen: every key of every screen, with what it does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


@dataclass(frozen=True)
class HelpSection:
    """A titled group of bindings (one per screen)."""

    title: str
    bindings: Sequence[BindingType]


def key_label(binding: Binding) -> str:
    """How a binding's keys read in the help: its key_display, else every key joined."""
    if binding.key_display:
        return binding.key_display
    names = {"question_mark": "?", "slash": "/", "escape": "esc", "enter": "enter"}
    keys = []
    for key in binding.key.split(","):
        key = key.strip()
        if key.startswith("ctrl+"):
            keys.append("^" + key.removeprefix("ctrl+"))
        else:
            keys.append(names.get(key, key))
    return "/".join(keys)


def as_binding(binding: BindingType) -> Binding:
    """BINDINGS entries may be tuples; the help needs Binding objects."""
    return binding if isinstance(binding, Binding) else Binding(*binding)


class HelpScreen(ModalScreen[None]):
    """A modal listing each section's keys, descriptions and tooltips."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close",
                key_display="esc", tooltip="Close the help"),
    ]

    def __init__(self, sections: Sequence[HelpSection]) -> None:
        super().__init__()
        self.sections = list(sections)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="help-dialog"):
            yield Static("cronkeeper dashboard — keys  (esc or ? closes this help)",
                         classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                for section in self.sections:
                    yield Static(self._table(section), classes="help-section")

    def _table(self, section: HelpSection) -> Table:
        table = Table(title=section.title, title_justify="left", title_style="bold",
                      show_header=False, box=None, padding=(0, 2, 0, 0), expand=True)
        table.add_column("key", style="bold cyan", no_wrap=True, min_width=10)
        table.add_column("does", no_wrap=True, min_width=18)
        table.add_column("detail", style="dim", ratio=1)
        for entry in section.bindings:
            binding = as_binding(entry)
            table.add_row(key_label(binding), Text(binding.description), Text(binding.tooltip))
        return table

    def action_close(self) -> None:
        self.dismiss(None)

"""Small dialogs: confirm a cancel, enter run parameters, show reload errors."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


def parse_params(text: str) -> dict[str, Any]:
    """``k=v k2=v2`` as a dict, as the CLI's ``--param`` does (SPEC 2).

    Words are split like a shell does, so ``msg='hello world'`` and ``cfg='{"a": 1}'``
    work. Each value is parsed as JSON when it parses, else kept as a string.
    Raises ValueError naming the offending word.
    """
    params: dict[str, Any] = {}
    for word in shlex.split(text):
        key, sep, raw = word.partition("=")
        if not sep or not key:
            raise ValueError(f"{word!r} is not key=value")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


class ConfirmModal(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with True only on an explicit yes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes", tooltip="Confirm"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no", key_display="n/esc",
                tooltip="Keep things as they are"),
    ]

    def __init__(self, question: str, *, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Content(self.question), classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        # Focus "No" so a stray enter never confirms a destructive action.
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ParamsModal(ModalScreen[dict[str, Any] | None]):
    """Ask for ``k=v`` run parameters; dismisses with the dict, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="params.cancel", tooltip="Close the parameters dialog without running"),
    ]

    def __init__(self, task: str, defaults: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.task_name = task
        self.defaults = defaults or {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Content(f"Run {self.task_name} with parameters"), classes="dialog-title")
            yield Label(Content(
                "k=v k2=v2 — values are JSON when they parse (3, true, '{\"a\": 1}'), "
                "else strings; merged over the task's params"
            ), classes="dim")
            if self.defaults:
                current = " ".join(f"{k}={json.dumps(v)}" for k, v in self.defaults.items())
                yield Label(Content(f"task params: {current}"), classes="dim")
            yield Input(placeholder="k=v k2=v2", id="params-input")
            yield Label("", id="params-error", classes="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            params = parse_params(event.value)
        except ValueError as exc:
            self.query_one("#params-error", Label).update(Content(f"✗ {exc}"))
            return
        self.dismiss(params)

    def action_cancel(self) -> None:
        self.dismiss(None)


class MessageModal(ModalScreen[None]):
    """A titled list of lines (e.g. every issue of a rejected reload) with a close key."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "close", "Close", id="message.close", key_display="esc",
                tooltip="Close this message"),
    ]

    def __init__(self, title: str, lines: Sequence[str], *, error: bool = True) -> None:
        super().__init__()
        self.title_text = title
        self.items = list(lines)
        self.is_error = error

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide" + (" error-dialog" if self.is_error else "")):
            yield Static(Content(self.title_text), classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                for line in self.items:
                    yield Static(Content(f"• {line}"), classes="dialog-line")
            yield Label("Press esc to close", classes="dim")

    def action_close(self) -> None:
        self.dismiss(None)

"""Options every CLI command shares: ``--config`` and ``--socket``, before or after the subcommand.

Kept apart from ``cli.py`` so command modules (``cli.py``, ``cli_offline.py``) can share it
without importing each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

SYSTEM_CONFIG = Path("/etc/cronkeeper/cronkeeper.toml")


@dataclass
class GlobalOptions:
    """What ``--config``/``--socket`` said, wherever on the command line they stood."""

    config: str | None = None
    socket: str | None = None
    tried: list[str] = field(default_factory=list)

    def config_path(self) -> Path:
        """``--config``, else ``$CRONKEEPER_CONFIG``, else ./cronkeeper.toml, else /etc/cronkeeper."""
        if self.config:
            return Path(self.config)
        env = os.environ.get("CRONKEEPER_CONFIG")
        if env:
            return Path(env)
        local = Path("cronkeeper.toml")
        if local.exists() or not SYSTEM_CONFIG.exists():
            return local
        return SYSTEM_CONFIG

    def socket_path(self) -> Path:
        """``--socket``, else ``$CRONKEEPER_SOCKET``, else the config's ``[daemon] socket``."""
        from cronkeeper.paths import read_socket_path

        self.tried = []
        if self.socket:
            self.tried.append("--socket")
            return Path(self.socket)
        env = os.environ.get("CRONKEEPER_SOCKET")
        if env:
            self.tried.append("$CRONKEEPER_SOCKET")
            return Path(env)
        path = self.config_path()
        self.tried.append(f"the config {path}")
        return read_socket_path(path)


def get_options(ctx: click.Context | None = None) -> GlobalOptions:
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, GlobalOptions):
        root.obj = GlobalOptions()
    return root.obj


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(get_options(ctx), name, value)

    return callback


def global_options(func: F) -> F:
    """Accept ``--config``/``--socket`` on this (sub)command too; they land in ``GlobalOptions``."""
    func = click.option(
        "--socket", "socket_", metavar="PATH", expose_value=False, is_eager=True,
        callback=_store("socket"), help="The daemon's Unix socket.",
    )(func)
    func = click.option(
        "--config", "config_", metavar="PATH", expose_value=False, is_eager=True,
        callback=_store("config"), help="cronkeeper.toml to use.",
    )(func)
    return func


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the API's JSON objects.")(func)

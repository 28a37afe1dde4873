"""Where the daemon's files are, resolved cheaply: the CLI needs the socket before anything else.

This module imports nothing heavy, so ``cronkeeper history`` finds the socket without
loading the configuration machinery.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

try:
    import tomli as tomllib  # same parser as the standard library's, compiled
except ModuleNotFoundError:  # pragma: no cover - tomli is a dependency
    import tomllib  # type: ignore[no-redef]

DEFAULT_SOCKET = ".cronkeeper/cronkeeper.sock"


def resolve_path(base_dir: Path, value: str) -> Path:
    # normpath, not resolve(): no file-system access, and symlinked folders keep the names
    # the user wrote (messages then show paths as they know them).
    return Path(os.path.normpath(base_dir / Path(value).expanduser()))


def read_socket_path(config_path: Path) -> Path:
    """``[daemon] socket`` of ``config_path`` resolved against its folder, read cheaply.

    Only the ``[daemon]`` table is parsed when it can be cut out on its own, so a client does
    not pay for parsing 10,000 tasks. A missing or unreadable file, or a bad value, gives the
    default ``.cronkeeper/cronkeeper.sock`` next to the file: the caller then reports the
    socket it could not reach rather than a config error.
    """
    config_path = Path(config_path)
    base = config_path.absolute().parent
    default = resolve_path(base, DEFAULT_SOCKET)
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return default
    data: dict[str, Any] | None = None
    match = re.search(r"(?m)^[ \t]*\[[ \t]*daemon[ \t]*\][^\n]*\n((?:(?![ \t]*\[).*(?:\n|$))*)", text)
    if match:
        try:
            data = {"daemon": tomllib.loads(match.group(1))}
        except tomllib.TOMLDecodeError:
            data = None  # e.g. a multi-line string holding a "[": parse the whole file below
    if data is None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return default
    daemon = data.get("daemon")
    socket = daemon.get("socket") if isinstance(daemon, dict) else None
    if not isinstance(socket, str) or not socket:
        return default
    return resolve_path(base, socket)

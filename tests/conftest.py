"""Shared fixtures: a real daemon subprocess per test, on a config in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import DaemonProcess


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """``start_daemon(config_body, **kw)`` starts a daemon; all are stopped after the test."""
    started: list[DaemonProcess] = []

    def start(config_body: str, **kwargs: Any) -> DaemonProcess:
        workdir = tmp_path / f"d{len(started)}"
        workdir.mkdir()
        daemon = DaemonProcess(workdir, config_body, **kwargs)
        started.append(daemon)  # before start(): a daemon that never got ready is stopped too
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()

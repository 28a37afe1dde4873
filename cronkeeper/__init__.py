"""cronkeeper: the scheduler you reach for instead of crontab."""

from __future__ import annotations

__version__ = "0.1.0"

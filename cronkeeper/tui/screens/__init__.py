"""Screens of the cronkeeper dashboard."""

from __future__ import annotations

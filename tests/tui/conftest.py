"""Fixtures for the dashboard tests: a FakeClient and a FakeClock pinned to its "now"."""

from __future__ import annotations

import pytest
from fake_client import NOW, FakeClient

from cronkeeper.clock import FakeClock


@pytest.fixture
def fake() -> FakeClient:
    return FakeClient()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)

"""The engine's time decisions as pure functions: fixed datetimes, no daemon, no sleeping."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cronkeeper.config import parse_config
from cronkeeper.engine import MISFIRE_THRESHOLD, catch_up_due, retry_delay, split_misfires
from cronkeeper.schedule import parse_schedule

T0 = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)


def task(**keys: object):
    body = {"command": "true", **keys}
    return parse_config({"tasks": {"t": body}}, base_dir=Path("/tmp")).tasks["t"]


@pytest.mark.parametrize(("attempt", "expected"), [
    pytest.param(1, 30.0, id="first_retry_uses_retry_delay"),
    pytest.param(2, 60.0, id="second_doubles"),
    pytest.param(3, 120.0, id="third_doubles_again"),
    pytest.param(10, 600.0, id="capped_by_retry_max_delay"),
])
def test_retry_delay_backoff(attempt: int, expected: float) -> None:
    t = task(retries=10, retry_delay="30s", retry_backoff=2.0, retry_max_delay="10m")
    assert retry_delay(t, attempt) == expected


def test_retry_delay_without_backoff_is_constant() -> None:
    t = task(retries=3, retry_delay="5s", retry_backoff=1.0)
    assert [retry_delay(t, n) for n in (1, 2, 3)] == [5.0, 5.0, 5.0]


@pytest.mark.parametrize(("lateness", "count", "expected"), [
    pytest.param(timedelta(milliseconds=5), 1, (True, 0), id="on_time"),
    pytest.param(MISFIRE_THRESHOLD, 1, (True, 0), id="at_threshold_still_runs"),
    pytest.param(MISFIRE_THRESHOLD + timedelta(seconds=1), 1, (False, 1), id="too_late"),
    pytest.param(timedelta(seconds=1), 3, (True, 2), id="stall_coalesces_earlier"),
])
def test_split_misfires(lateness: timedelta, count: int, expected: tuple[bool, int]) -> None:
    now = T0 + lateness
    run_times = [T0 - timedelta(minutes=n) for n in reversed(range(count))]
    on_time, missed = split_misfires(run_times, now)
    assert (on_time is not None, missed) == expected
    if on_time is not None:
        assert on_time == run_times[-1]


def test_catch_up_names_newest_missed_fire() -> None:
    sched = parse_schedule("0 3 * * *", "Europe/Berlin")
    since = datetime(2026, 3, 20, 2, 0, tzinfo=UTC)  # Berlin 03:00 daily fires missed since
    due = catch_up_due(sched, since, T0)
    assert due == datetime(2026, 3, 28, 2, 0, tzinfo=UTC)


def test_catch_up_nothing_missed() -> None:
    sched = parse_schedule("0 3 * * *", "UTC")
    assert catch_up_due(sched, T0 - timedelta(hours=1), T0) is None


def test_catch_up_one_shot_due_once_past() -> None:
    sched = parse_schedule("at 2026-03-28T09:00", "UTC")
    assert catch_up_due(sched, None, T0) == datetime(2026, 3, 28, 9, 0, tzinfo=UTC)
    assert catch_up_due(sched, None, T0 - timedelta(days=1)) is None


def test_task_configs_compare_by_content() -> None:
    a = task(retries=1)
    assert a == task(retries=1)
    assert a != replace(a, retries=2)

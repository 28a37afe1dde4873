"""The APScheduler adapter: it must add nothing to the schedule's own answers."""

from __future__ import annotations

import asyncio
import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from cronkeeper.schedule import next_fire_times, parse_schedule
from cronkeeper.trigger import ScheduleTrigger

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(("text", "tz"), [
    pytest.param("30 2 * * *", "Europe/Berlin", id="fixed_time_over_spring_gap"),
    pytest.param("*/30 2 * * *", "Europe/Berlin", id="wildcard"),
    pytest.param("0 9 * * mon-fri", "America/New_York", id="weekdays"),
    pytest.param("every 15m", "UTC", id="interval"),
])
def test_fire_times_equal_schedule(text: str, tz: str) -> None:
    schedule = parse_schedule(text, tz)
    trigger = ScheduleTrigger(schedule)
    now = datetime(2026, 3, 28, 12, 0, 7, tzinfo=BERLIN)
    expected = next_fire_times(schedule, now, 5)
    got: list[datetime] = []
    previous = None
    for _ in range(5):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        got.append(fire)
        previous = fire
    assert got == expected


def test_result_is_in_the_zone_of_now() -> None:
    trigger = ScheduleTrigger(parse_schedule("30 2 * * *", "Europe/Berlin"))
    tokyo = ZoneInfo("Asia/Tokyo")
    fire = trigger.get_next_fire_time(None, datetime(2026, 3, 28, 12, tzinfo=tokyo))
    assert fire is not None and fire.tzinfo is tokyo
    # Tokyo noon is 04:00 in Berlin, so the next 02:30 is the one skipped by spring-forward.
    assert fire == datetime.fromisoformat("2026-03-29T03:00+02:00")


def test_fire_exactly_at_now_counts() -> None:
    trigger = ScheduleTrigger(parse_schedule("0 * * * *", "UTC"))
    now = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, now) == now
    # ... but once it has fired, the next one is an hour on.
    assert trigger.get_next_fire_time(now, now) == now + timedelta(hours=1)


def test_previous_fire_time_wins_over_now() -> None:
    trigger = ScheduleTrigger(parse_schedule("0 * * * *", "UTC"))
    previous = datetime(2026, 1, 1, 7, 0, tzinfo=UTC)
    now = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    # APScheduler walks missed fires itself (misfire handling) from the previous one.
    assert trigger.get_next_fire_time(previous, now) == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["@reboot", "at 2026-01-01T00:00"])
def test_no_next_fire_is_none(text: str) -> None:
    trigger = ScheduleTrigger(parse_schedule(text, "UTC"))
    assert trigger.get_next_fire_time(None, datetime(2026, 6, 1, tzinfo=UTC)) is None


def test_str_repr_and_pickle() -> None:
    trigger = ScheduleTrigger(parse_schedule("30 2 * * *", "Europe/Berlin"))
    assert str(trigger) == "schedule['30 2 * * *' in Europe/Berlin]"
    assert "at 02:30 every day" in repr(trigger) and "Europe/Berlin" in repr(trigger)
    clone = pickle.loads(pickle.dumps(trigger))
    assert clone.schedule == trigger.schedule


async def test_runs_in_a_real_asyncio_scheduler() -> None:
    fired: list[datetime] = []
    twice = asyncio.Event()

    async def job() -> None:
        fired.append(datetime.now(UTC))
        if len(fired) >= 2:
            twice.set()

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(job, ScheduleTrigger(parse_schedule("every 1s", "UTC")),
                      misfire_grace_time=5)
    scheduler.start()
    try:
        await asyncio.wait_for(twice.wait(), timeout=15)
    finally:
        scheduler.shutdown(wait=False)
    assert len(fired) >= 2


# --- FireQueue / QueueTrigger: one APScheduler job for every task --------------------------

def test_fire_queue_pops_due_tasks_with_all_their_missed_times() -> None:
    from cronkeeper.trigger import FireQueue

    start = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    queue = FireQueue()
    queue.set("minutely", parse_schedule("* * * * *", "UTC"), start)
    queue.set("hourly", parse_schedule("0 * * * *", "UTC"), start)
    assert queue.head() == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    due = queue.pop_due(datetime(2026, 1, 1, 0, 3, 30, tzinfo=UTC))
    assert due == [("minutely", [datetime(2026, 1, 1, 0, m, tzinfo=UTC) for m in (1, 2, 3)])]
    assert queue.next_fire("minutely") == datetime(2026, 1, 1, 0, 4, tzinfo=UTC)
    assert queue.head() == datetime(2026, 1, 1, 0, 4, tzinfo=UTC)
    queue.remove("minutely")
    assert queue.head() == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)  # stale entry skipped
    queue.set("hourly", parse_schedule("30 * * * *", "UTC"), start)  # rescheduled
    assert queue.next_fire("hourly") == datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    assert queue.pop_due(datetime(2026, 1, 1, 0, 29, tzinfo=UTC)) == []
    assert len(queue) == 1


def test_fire_queue_one_shot_leaves_after_firing() -> None:
    from cronkeeper.trigger import FireQueue

    queue = FireQueue()
    queue.set("once", parse_schedule("at 2026-01-01T10:00", "UTC"),
              datetime(2026, 1, 1, tzinfo=UTC))
    fired = queue.pop_due(datetime(2026, 1, 1, 10, 0, tzinfo=UTC))
    assert [name for name, _ in fired] == ["once"]
    assert queue.head() is None and queue.next_fire("once") is None


def test_queue_trigger_never_loops_on_unpopped_head() -> None:
    from cronkeeper.trigger import FireQueue, QueueTrigger

    queue = FireQueue()
    queue.set("t", parse_schedule("every 1s", "UTC"), datetime(2026, 1, 1, tzinfo=UTC))
    trigger = QueueTrigger(queue)
    head = queue.head()
    assert head is not None
    now = head + timedelta(seconds=5)
    assert trigger.get_next_fire_time(None, now) == head
    # APScheduler collecting run times before the engine popped them: point past now.
    assert trigger.get_next_fire_time(head, now) > now

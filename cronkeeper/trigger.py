"""A thin APScheduler 3 trigger that asks a cronkeeper ``Schedule`` for fire times.

All schedule semantics (cron(5) day rules, DST) live in ``schedule.py``; APScheduler's own
``CronTrigger`` numbers weekdays differently and AND-s the day fields, so it is not used.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger

from cronkeeper.schedule import Schedule

__all__ = ["FireQueue", "QueueTrigger", "ScheduleTrigger"]

_ONE_MICROSECOND = timedelta(microseconds=1)


class ScheduleTrigger(BaseTrigger):
    """Fires whenever ``schedule`` does; ``None`` (never again) when it has no next fire."""

    __slots__ = ("schedule",)

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """The first fire after ``previous_fire_time``, or at/after ``now`` on the first call.

        Stepping back one microsecond from ``now`` lets a fire due exactly now count. The
        result is in ``now``'s zone, as APScheduler compares and logs in the scheduler's zone.
        """
        after = previous_fire_time if previous_fire_time is not None else now - _ONE_MICROSECOND
        fire = self.schedule.next_after(after)
        return None if fire is None else fire.astimezone(now.tzinfo)

    def __str__(self) -> str:
        return f"schedule[{self.schedule.text!r} in {self.schedule.tz.key}]"

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} ({self.schedule.text!r}, "
                f"timezone={self.schedule.tz.key!r}: {self.schedule.describe()})>")


# Far enough to mean "nothing scheduled" without removing the job (None would remove it).
_NEVER = datetime(9999, 1, 1, tzinfo=UTC)
_DUE_CAP = 10_000  # fires collected per task per wake-up; beyond, older missed ones are dropped


class FireQueue:
    """The next fire of every scheduled task in one heap.

    APScheduler drives a single job (``QueueTrigger``) that wakes at the heap's head, instead
    of one job per task: its per-job bookkeeping (a sorted job list, events, locks) would
    dominate both the per-fire cost and start-up with 10,000 tasks. Entries are replaced
    lazily: a task's current entry is the one recorded in ``_current``.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._current: dict[str, tuple[float, int]] = {}
        self._schedules: dict[str, Schedule] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._current)

    def set(self, name: str, schedule: Schedule, after: datetime) -> None:
        """(Re)schedule ``name`` at its first fire strictly after ``after``."""
        self._schedules[name] = schedule
        self._push(name, schedule.next_after(after))

    def remove(self, name: str) -> None:
        self._schedules.pop(name, None)
        self._current.pop(name, None)

    def next_fire(self, name: str) -> datetime | None:
        entry = self._current.get(name)
        return datetime.fromtimestamp(entry[0], UTC) if entry else None

    def head(self) -> datetime | None:
        heap = self._heap
        while heap and self._current.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)  # a stale entry of a rescheduled or removed task
        return datetime.fromtimestamp(heap[0][0], UTC) if heap else None

    def pop_due(self, now: datetime) -> list[tuple[str, list[datetime]]]:
        """Every task due at ``now`` with its due fire times (oldest first); each is
        rescheduled at its first fire after ``now``."""
        due: list[tuple[str, list[datetime]]] = []
        limit = now.timestamp()
        heap = self._heap
        while heap and heap[0][0] <= limit:
            ts, seq, name = heapq.heappop(heap)
            if self._current.get(name) != (ts, seq):
                continue
            schedule = self._schedules[name]
            times = [datetime.fromtimestamp(ts, UTC)]
            following = schedule.next_after(times[-1])
            while following is not None and following <= now and len(times) < _DUE_CAP:
                times.append(following)
                following = schedule.next_after(following)
            if following is not None and following <= now:
                following = schedule.next_after(now)  # capped: skip the rest of the backlog
            self._push(name, following)
            due.append((name, times))
        return due

    def _push(self, name: str, when: datetime | None) -> None:
        if when is None:
            self._current.pop(name, None)  # a one-shot that has fired: nothing more
            return
        self._seq += 1
        entry = (when.timestamp(), self._seq)
        self._current[name] = entry
        heapq.heappush(self._heap, (*entry, name))


class QueueTrigger(BaseTrigger):
    """APScheduler trigger for the single job that fires whatever ``FireQueue`` has due."""

    __slots__ = ("queue",)

    def __init__(self, queue: FireQueue) -> None:
        self.queue = queue

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        head = self.queue.head() or _NEVER
        if previous_fire_time is not None and head <= previous_fire_time:
            # Asked while the due entries are not yet popped (APScheduler collecting run
            # times): one wake-up handles them all, so point past ``now``.
            return (now + _ONE_MICROSECOND).astimezone(now.tzinfo)
        return head.astimezone(now.tzinfo)

    def __str__(self) -> str:
        return f"fire-queue[{len(self.queue)} tasks]"

"""A thin APScheduler 3 trigger that asks a cronkeeper ``Schedule`` for fire times.

All schedule semantics (cron(5) day rules, DST) live in ``schedule.py``; APScheduler's own
``CronTrigger`` numbers weekdays differently and AND-s the day fields, so it is not used.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from apscheduler.triggers.base import BaseTrigger

from cronkeeper.schedule import Schedule

__all__ = ["ScheduleTrigger"]

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

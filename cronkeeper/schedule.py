"""Schedules: parse the SPEC's schedule forms and compute fire times.

Everything here is a pure function of its arguments: nothing reads the wall clock. A
``Schedule`` answers one question, ``next_after(instant)``, with an aware UTC datetime.

Cron semantics follow Vixie cron / cronie, cron(5), plus the SPEC's daylight-saving rules:

* day-of-month and day-of-week are OR-ed when both are restricted (neither starts with
  ``*``), AND-ed otherwise;
* a *fixed-time* task (neither minute nor hour starts with ``*``) whose wall-clock time is
  skipped by a forward change fires once at the first instant after the gap, and once (the
  first occurrence) when its time is repeated by a backward change;
* a *wildcard* task fires at every real instant whose local time matches.

The arithmetic is done on UTC instants; wall-clock times are only ever candidates that get
resolved through the zone. croniter and APScheduler's ``CronTrigger`` are deliberately not
used for the next-fire math: both get DST and weekday cases wrong.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "CronSchedule",
    "IntervalSchedule",
    "OneShotSchedule",
    "RebootSchedule",
    "Schedule",
    "ScheduleError",
    "next_fire_times",
    "parse_schedule",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_DAY = timedelta(days=1)
_ONE_MICROSECOND = timedelta(microseconds=1)
# The Gregorian calendar repeats every 400 years, so any day/weekday/month combination that
# can happen at all happens within that horizon; past it, a schedule never fires.
_HORIZON_YEARS = 400
_LAST_YEAR = 9998  # keeps date arithmetic clear of datetime.max

ACCEPTED_FORMS = (
    "'m h dom mon dow' (5-field crontab, e.g. '30 2 * * *')",
    "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly",
    "@reboot",
    "'every 15m' or '15m' (units s, m, h, d, w, combinable as in '1h30m'; or a number of seconds)",
    "'at 2026-12-01T09:00' (in the task's time zone; an offset such as +01:00 or Z wins)",
)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July",
                "August", "September", "October", "November", "December")
_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_WORDS = (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60),
                   ("second", 1))

_NUMBER = re.compile(r"[0-9]+")
_DURATION = re.compile(r"(?:\s*[0-9]+\s*[smhdw])+\s*", re.IGNORECASE)
_DURATION_TOKEN = re.compile(r"([0-9]+)\s*([smhdw])", re.IGNORECASE)
_CRONISH = re.compile(r"[0-9A-Za-z*,/\-?#]+")
_QUARTZ = re.compile(r"[?#]|^[0-9]*[LW]$", re.IGNORECASE)


class ScheduleError(ValueError):
    """A schedule text that cannot be used.

    The message names the field and the offending value and lists what is allowed, e.g.
    ``minute field '61': 61 is out of range 0-59``.
    """


# --------------------------------------------------------------------------- fields


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)
    hint: str = ""


_FIELDS = (
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day-of-month", 1, 31),
    _FieldSpec("month", 1, 12, {m[:3].lower(): i for i, m in enumerate(_MONTH_NAMES, 1)},
               " or a name jan-dec"),
    # cronie accepts 7 for Sunday, so the raw range is 0-7 and 7 folds into 0 afterwards.
    _FieldSpec("day-of-week", 0, 7, {d[:3].lower(): i for i, d in enumerate(_DAY_NAMES)},
               " or a name sun-sat (0 and 7 are Sunday)"),
)


@lru_cache(maxsize=4096)
def _expand_field(index: int, raw: str) -> tuple[int, ...]:
    """The sorted values a crontab field selects; ScheduleError naming the field otherwise."""
    spec = _FIELDS[index]

    def fail(problem: str) -> ScheduleError:
        return ScheduleError(f"{spec.name} field {raw!r}: {problem}")

    def value(token: str) -> int:
        if _NUMBER.fullmatch(token):
            number = int(token)
            if not spec.low <= number <= spec.high:
                raise fail(f"{number} is out of range {spec.low}-{spec.high}")
            return number
        if token.lower() in spec.names:
            return spec.names[token.lower()]
        if not token:
            raise fail("a value is missing (allowed: numbers, names, '*', lists, ranges, steps)")
        extra = " (Quartz-style ?, L, W and # are not supported)" if _QUARTZ.search(token) else ""
        raise fail(f"{token!r} is not a number {spec.low}-{spec.high}{spec.hint}{extra}")

    values: set[int] = set()
    for item in raw.split(","):
        if not item:
            raise fail("empty list item (a doubled comma, or a comma at an end)")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text):
                raise fail(f"step {step_text!r} in {item!r} is not a whole number 1-{spec.high}")
            step = int(step_text)
            if not 1 <= step <= spec.high:
                raise fail(f"step {step} in {item!r} is out of range 1-{spec.high}")
        if base == "*":
            low, high = spec.low, spec.high
        else:
            first, dash, last = base.partition("-")
            low = value(first)
            # "5/10" means "5-high/10", as in cronie and most crons that accept it.
            high = value(last) if dash else (spec.high if slash else low)
            if high < low:
                # Sunday ends a week that starts on any other day as 7, as cronie allows.
                fix = (f"{first}-7" if index == 4 and high == 0
                       else f"{first}-{spec.high},{spec.low}-{last}")
                raise fail(f"range {base!r} must be ascending (cron ranges do not wrap around; "
                           f"write '{fix}' instead)")
        values.update(range(low, high + 1, step))
    if index == 4 and 7 in values:
        values.discard(7)
        values.add(0)
    return tuple(sorted(values))


def _month_length(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


# --------------------------------------------------------------------------- zone helpers


def _to_utc(moment: datetime) -> datetime:
    """``moment`` as a naive UTC datetime (the internal representation of an instant)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"need a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC).replace(tzinfo=None)


def _offset_at(tz: ZoneInfo, instant: datetime) -> timedelta:
    """The zone's UTC offset at a naive UTC instant."""
    offset = tz.fromutc(instant.replace(tzinfo=tz)).utcoffset()
    assert offset is not None  # a ZoneInfo always has an offset
    return offset


@lru_cache(maxsize=256)
def _gap_end(tz: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The transition instant in (before, after]: the first real instant after a gap.

    ``before`` is on the old offset, ``after`` on the new one; bisect to the second (zone
    transitions are whole seconds). Only reached for wall times a forward change skips.
    """
    old = _offset_at(tz, before)
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(tz, before + timedelta(seconds=middle)) == old:
            low = middle
        else:
            high = middle
    return before + timedelta(seconds=high)


def _offsets(tz: ZoneInfo, wall: datetime) -> tuple[timedelta, timedelta]:
    """The offsets a naive wall time gets with fold=0 and fold=1 (PEP 495).

    fold=0 applies the offset in force before a transition and fold=1 the one after, so they
    differ only near one: first > second for a repeated time, first < second for a skipped one.
    ``tz.utcoffset`` on naive datetimes is several times faster than attaching the zone.
    """
    first = tz.utcoffset(wall)
    second = tz.utcoffset(datetime(wall.year, wall.month, wall.day, wall.hour, wall.minute,
                                   wall.second, wall.microsecond, fold=1))
    assert first is not None and second is not None  # a ZoneInfo always has an offset
    return first, second


def _resolve_fixed(wall: datetime, tz: ZoneInfo) -> datetime:
    """The one instant a fixed wall-clock time fires at (naive in, naive UTC out).

    Repeated times resolve to their first occurrence; skipped ones to the end of the gap.
    """
    before, after = _offsets(tz, wall)
    if before >= after:  # exists once (equal), or twice and fold=0 is the earlier instant
        return wall - before
    return _gap_end(tz, wall - after, wall - before)


# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule. Immutable; every method depends only on its arguments.

    ``text`` is the source as written and ``tz`` the zone its wall-clock times are read in.
    """

    text: str
    tz: ZoneInfo

    is_reboot: ClassVar[bool] = False
    is_one_shot: ClassVar[bool] = False

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire strictly after the aware ``after``, as an aware UTC datetime.

        None when there is none (``@reboot``; a one-shot already past).
        """
        raise NotImplementedError

    def describe(self) -> str:
        """The schedule in plain English, e.g. ``"at 02:30 every day"``."""
        raise NotImplementedError


@dataclass(frozen=True)
class RebootSchedule(Schedule):
    """``@reboot``: fires when the daemon starts, which the daemon handles; never by time."""

    is_reboot: ClassVar[bool] = True

    def next_after(self, after: datetime) -> datetime | None:
        return None

    def describe(self) -> str:
        return "at every reboot"


@dataclass(frozen=True)
class IntervalSchedule(Schedule):
    """``every 15m``: every ``seconds``, aligned to whole multiples since the Unix epoch.

    The alignment is on UTC instants, so the time zone plays no part.
    """

    seconds: int

    def next_after(self, after: datetime) -> datetime | None:
        elapsed = (_to_utc(after).replace(tzinfo=UTC) - _EPOCH) // _ONE_MICROSECOND
        step = self.seconds * 1_000_000
        try:
            return _EPOCH + timedelta(microseconds=(elapsed // step + 1) * step)
        except OverflowError:
            return None

    def describe(self) -> str:
        return "every " + _duration_words(self.seconds)


@dataclass(frozen=True)
class OneShotSchedule(Schedule):
    """``at 2026-12-01T09:00``: once. ``local`` is the time as written (naive = task zone)."""

    local: datetime
    when: datetime = field(init=False)

    is_one_shot: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.local.tzinfo is not None:
            when = self.local.astimezone(UTC)
        else:
            # Same DST rule as a fixed-time cron task: skipped -> end of gap, repeated -> first.
            try:
                when = _resolve_fixed(self.local, self.tz).replace(tzinfo=UTC)
            except OverflowError:
                raise ScheduleError(f"at-time {self.local.isoformat()!r} is out of range "
                                    "for the task's time zone") from None
        object.__setattr__(self, "when", when)

    def next_after(self, after: datetime) -> datetime | None:
        return self.when if self.when > _to_utc(after).replace(tzinfo=UTC) else None

    def describe(self) -> str:
        shown = self.local.strftime("%Y-%m-%d %H:%M" + (":%S" if self.local.second else ""))
        if self.local.tzinfo is None:
            return f"once at {shown} {self.tz.key}"
        offset = self.local.utcoffset()
        if not offset:
            return f"once at {shown} UTC"
        return f"once at {shown} UTC{_offset_text(offset)}"


@dataclass(frozen=True)
class CronSchedule(Schedule):
    """A 5-field crontab schedule (macros expand to one). ``fields`` holds the five texts."""

    fields: tuple[str, ...]
    minutes: tuple[int, ...] = field(init=False)
    hours: tuple[int, ...] = field(init=False)
    days: tuple[int, ...] = field(init=False)
    months: tuple[int, ...] = field(init=False)
    weekdays: tuple[int, ...] = field(init=False)  # 0 = Sunday ... 6 = Saturday
    day_or: bool = field(init=False)  # both day fields restricted: either may match
    fixed_time: bool = field(init=False)  # neither minute nor hour starts with '*'
    _month_ok: tuple[bool, ...] = field(init=False, repr=False, compare=False)
    _dom_ok: tuple[bool, ...] = field(init=False, repr=False, compare=False)
    _dow_ok: tuple[bool, ...] = field(init=False, repr=False, compare=False)  # by date.weekday()

    def __post_init__(self) -> None:
        if len(self.fields) != 5:
            raise ScheduleError(f"schedule {self.text!r}: a crontab schedule needs 5 fields: "
                                "minute hour day-of-month month day-of-week")
        expanded = [_expand_field(i, raw) for i, raw in enumerate(self.fields)]
        names = ("minutes", "hours", "days", "months", "weekdays")
        setattr_ = object.__setattr__
        for name, values in zip(names, expanded, strict=True):
            setattr_(self, name, values)
        setattr_(self, "day_or", not self.fields[2].startswith("*")
                 and not self.fields[4].startswith("*"))
        setattr_(self, "fixed_time", not self.fields[0].startswith("*")
                 and not self.fields[1].startswith("*"))
        setattr_(self, "_month_ok", _membership(self.months, 13))
        setattr_(self, "_dom_ok", _membership(self.days, 32))
        # date.weekday() counts Monday = 0; cron counts Sunday = 0.
        setattr_(self, "_dow_ok", _weekday_membership(self.weekdays))
        # Some selected day must exist in some selected month (leap years count).
        if not self.day_or and min(self.days) > _longest_month(self.months):
            raise ScheduleError(
                f"day-of-month field {self.fields[2]!r}: no selected month "
                f"({self.fields[3]!r}) has such a day, so this schedule would never fire")

    # -- next fire

    def next_after(self, after: datetime) -> datetime | None:
        start = _to_utc(after)
        tz = self.tz
        if self.fixed_time:
            # Resolving fixed wall times is monotonic (gaps collapse onto their end, repeats
            # onto the first pass), so the first candidate past `after` is the answer.
            local = after.astimezone(tz)
            wall = datetime(local.year, local.month, local.day, local.hour, local.minute)
            for candidate in self._walk(wall):
                instant = _resolve_fixed(candidate, tz)
                if instant > start:
                    return instant.replace(tzinfo=UTC)
            return None
        # A wildcard task fires at every real instant that matches, so a wall time a little
        # *before* local(after) can still recur after it if a backward change is near: start
        # the scan at the smallest offset in force over the next day.
        offset = min(_offset_at(tz, start), _offset_at(tz, start + _ONE_DAY))
        best: datetime | None = None
        for candidate in self._walk(start + offset):
            first_offset, second_offset = _offsets(tz, candidate)
            if first_offset < second_offset:
                continue  # skipped by a forward change: wildcard tasks do not fire
            first = candidate - first_offset
            if best is not None and first >= best:
                break  # first occurrences only grow from here
            if first > start:
                best = first
                break
            second = candidate - second_offset  # == first unless the time repeats
            if second > start and (best is None or second < best):
                best = second
        return None if best is None else best.replace(tzinfo=UTC)

    def _walk(self, start: datetime) -> Iterator[datetime]:
        """Matching naive wall-clock minutes from ``start`` (its minute included), ascending."""
        hours, minutes = self.hours, self.minutes
        start_day = start.date()
        last_year = min(start.year + _HORIZON_YEARS, _LAST_YEAR)
        day: date | None = start_day
        while day is not None:
            day = self._next_day(day, last_year)
            if day is None:
                return
            first_hour, first_minute = (start.hour, start.minute) if day == start_day else (0, 0)
            for hour in hours[bisect_left(hours, first_hour):]:
                skip = bisect_left(minutes, first_minute) if hour == first_hour else 0
                for minute in minutes[skip:]:
                    yield datetime(day.year, day.month, day.day, hour, minute)
            day += _ONE_DAY

    def _next_day(self, day: date, last_year: int) -> date | None:
        """The first date on or after ``day`` whose month and day fields match."""
        months, days = self.months, self.days
        month_ok, dom_ok, dow_ok = self._month_ok, self._dom_ok, self._dow_ok
        day_or = self.day_or
        # Under the AND rule a restricted day-of-month list can be jumped along directly.
        jump = not day_or and len(days) < 31
        while day.year <= last_year:
            if not month_ok[day.month]:
                later = bisect_right(months, day.month)
                if later < len(months):
                    day = date(day.year, months[later], 1)
                else:
                    day = date(day.year + 1, months[0], 1)
                continue
            if jump:
                index = bisect_left(days, day.day)
                if index == len(days) or days[index] > _month_length(day.year, day.month):
                    day = _next_month(day)
                    continue
                day = day.replace(day=days[index])
            dom_match, dow_match = dom_ok[day.day], dow_ok[day.weekday()]
            if (dom_match or dow_match) if day_or else (dom_match and dow_match):
                return day
            day += _ONE_DAY
        return None

    # -- words

    def describe(self) -> str:
        minute_raw, hour_raw, dom_raw, month_raw, dow_raw = self.fields
        times = len(self.minutes) * len(self.hours)
        if self.fixed_time and times <= 6:
            when = "at " + _join([f"{h:02d}:{m:02d}" for h in self.hours for m in self.minutes])
        else:
            when = self._describe_clock(minute_raw, hour_raw)
        days = self._describe_days(dom_raw, month_raw, dow_raw)
        if days:
            return f"{when} {days}"
        return f"{when} every day" if when.startswith("at ") and self.fixed_time else when

    def _describe_clock(self, minute_raw: str, hour_raw: str) -> str:
        minute_step, hour_step = _star_step(minute_raw), _star_step(hour_raw)
        if minute_step == 1:
            minutes = "every minute"
        elif minute_step is not None:
            minutes = (f"every {minute_step} minutes" if 60 % minute_step == 0
                       else f"at every {_ordinal(minute_step)} minute")
        else:
            plural = "minutes" if len(self.minutes) > 1 else "minute"
            minutes = f"at {plural} {_values(self.minutes, minute_raw)}"
        if minutes.startswith("every"):
            if hour_step == 1:
                return minutes
            if hour_step is not None:
                return f"{minutes} of every {_ordinal(hour_step)} hour"
            plural = "hours" if len(self.hours) > 1 else "hour"
            return f"{minutes} during {plural} {_values(self.hours, hour_raw)}"
        if hour_step == 1:
            return f"{minutes} past every hour"
        if hour_step is not None:
            return f"{minutes} past every {_ordinal(hour_step)} hour"
        plural = "hours" if len(self.hours) > 1 else "hour"
        return f"{minutes} past {plural} {_values(self.hours, hour_raw)}"

    def _describe_days(self, dom_raw: str, month_raw: str, dow_raw: str) -> str:
        in_month = ""
        if month_raw != "*":
            month_names = _values(self.months, month_raw, lambda m: _MONTH_NAMES[m - 1])
            in_month = f"in {month_names}"
        if (dom_raw != "*" and dow_raw == "*" and len(self.days) == 1
                and len(self.months) == 1):
            return f"on {_MONTH_NAMES[self.months[0] - 1]} {self.days[0]}"
        parts: list[str] = []
        dom = dow = ""
        if dom_raw != "*":
            noun = "days" if len(self.days) > 1 else "day"
            dom = f"{noun} {_values(self.days, dom_raw)} of the month"
        if dow_raw != "*":
            dow = _values(self.weekdays, dow_raw, lambda w: _DAY_NAMES[w])
        if dom and dow:
            # Both restricted is cron(5)'s OR rule; "*/2"-style day-of-month is the AND rule.
            parts.append(f"on {dom} or on {dow}" if self.day_or
                         else f"on {dow} when the day of the month matches {dom_raw!r}")
        elif dom or dow:
            parts.append(f"on {dom or dow}")
        if in_month:
            parts.append(in_month)
        return " ".join(parts)


# --------------------------------------------------------------------------- words


def _star_step(raw: str) -> int | None:
    """1 for ``*``, N for ``*/N``, None for anything else."""
    if raw == "*":
        return 1
    if raw.startswith("*/") and _NUMBER.fullmatch(raw[2:]):
        return int(raw[2:])
    return None


@lru_cache(maxsize=256)
def _longest_month(months: tuple[int, ...]) -> int:
    return max(_month_length(2000, m) for m in months)  # 2000 is a leap year: February has 29


@lru_cache(maxsize=4096)
def _membership(values: tuple[int, ...], size: int) -> tuple[bool, ...]:
    chosen = set(values)
    return tuple(v in chosen for v in range(size))


@lru_cache(maxsize=256)
def _weekday_membership(weekdays: tuple[int, ...]) -> tuple[bool, ...]:
    chosen = set(weekdays)
    return tuple((w + 1) % 7 in chosen for w in range(7))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _values(values: tuple[int, ...], raw: str, render: Callable[[int], str] = str) -> str:
    """``1, 3 and 5`` / ``Monday through Friday``; the raw field when the list is long."""
    parts: list[str] = []
    run_start = previous = values[0]
    for value in (*values[1:], None):
        if value is not None and value == previous + 1:
            previous = value
            continue
        if previous - run_start >= 2:
            parts.append(f"{render(run_start)} through {render(previous)}")
        else:
            parts.extend(render(v) for v in range(run_start, previous + 1))
        if value is not None:
            run_start = previous = value
    return _join(parts) if len(parts) <= 8 else f"matching {raw!r}"


def _duration_words(seconds: int) -> str:
    # The largest unit that divides evenly reads best: "90 minutes", not "1 hour and 30 minutes".
    word, size = next((w, n) for w, n in _DURATION_WORDS if seconds % n == 0)
    count = seconds // size
    return word if count == 1 else f"{count} {word}s"


def _offset_text(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


# --------------------------------------------------------------------------- parsing


def parse_schedule(text: str, tz: str | ZoneInfo) -> Schedule:
    """Parse any SPEC schedule form for a task in zone ``tz``; ScheduleError if invalid.

    Results are cached, so parsing the same text for thousands of tasks is cheap.
    """
    if not isinstance(tz, ZoneInfo):
        try:
            tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ScheduleError(
                f"unknown time zone {tz!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
            ) from None
    if not isinstance(text, str):
        raise ScheduleError(f"schedule {text!r} is not a string; accepted forms: "
                            + "; ".join(ACCEPTED_FORMS))
    return _parse(text, tz)


@lru_cache(maxsize=16384)
def _parse(text: str, tz: ZoneInfo) -> Schedule:
    source = text.strip()
    lowered = source.lower()
    if lowered == "@reboot":
        return RebootSchedule(text, tz)
    if lowered.startswith("@"):
        if lowered not in _MACROS:
            raise ScheduleError(f"unknown macro {source!r}: use one of "
                                + ", ".join([*_MACROS, "@reboot"]))
        return CronSchedule(text, tz, tuple(_MACROS[lowered].split()))
    head, _, rest = source.partition(" ")
    if head.lower() == "at" and rest.strip():
        return OneShotSchedule(text, tz, _parse_at(rest.strip()))
    if head.lower() == "every":
        return IntervalSchedule(text, tz, _parse_interval(rest.strip(), source))
    if _NUMBER.fullmatch(source) or _DURATION.fullmatch(source):
        return IntervalSchedule(text, tz, _parse_interval(source, source))
    fields = source.split()
    if len(fields) == 5:
        return CronSchedule(text, tz, tuple(fields))
    # Only talk about field counts when the text looks like a crontab line at all.
    cronish = all(_CRONISH.fullmatch(f) for f in fields) and any(
        c.isdigit() or c == "*" for c in source)
    if cronish and len(fields) in (6, 7):
        raise ScheduleError(
            f"schedule {source!r} has {len(fields)} fields: cron with seconds (or years) is "
            "not supported; use the 5 fields 'minute hour day-of-month month day-of-week', "
            "or 'every 30s' for sub-minute intervals")
    if cronish and 2 <= len(fields) <= 8:
        raise ScheduleError(
            f"schedule {source!r} has {len(fields)} fields; a crontab schedule needs 5: "
            "minute hour day-of-month month day-of-week")
    raise ScheduleError(f"unrecognised schedule {source!r}; accepted forms: "
                        + "; ".join(ACCEPTED_FORMS))


def _parse_interval(value: str, source: str) -> int:
    """Seconds in a duration such as ``15m``, ``1h30m`` or ``90``."""
    if _NUMBER.fullmatch(value):
        seconds = int(value)
    elif _DURATION.fullmatch(value):
        seconds, seen = 0, set()
        for count, unit in _DURATION_TOKEN.findall(value):
            unit = unit.lower()
            if unit in seen:
                raise ScheduleError(f"interval {source!r}: unit {unit!r} appears twice")
            seen.add(unit)
            seconds += int(count) * _DURATION_UNITS[unit]
    else:
        raise ScheduleError(
            f"interval {source!r}: {value!r} is not a duration; use a number with units s, m, "
            "h, d, w (combinable, e.g. '15m' or '1h30m') or a whole number of seconds")
    if seconds < 1:
        raise ScheduleError(f"interval {source!r}: the interval must be at least 1 second")
    return seconds


def _parse_at(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ScheduleError(
            f"at-time {value!r} is not an ISO 8601 date-time; write e.g. "
            "'at 2026-12-01T09:00' or 'at 2026-12-01T09:00+01:00'") from None
    if when.tzinfo is not None and when.utcoffset() is None:
        raise ScheduleError(f"at-time {value!r}: the offset is not usable")
    return when


def next_fire_times(schedule: Schedule, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` fires strictly after ``after`` (fewer when the schedule runs out)."""
    fires: list[datetime] = []
    moment = after
    while len(fires) < n:
        nxt = schedule.next_after(moment)
        if nxt is None:
            break
        fires.append(nxt)
        moment = nxt
    return fires

"""Schedule parsing and next-fire math: tables in named zones, field sweeps, and properties.

Expected fire times are written as local ISO 8601 strings with their offset, so a first and a
second pass through a repeated hour (``02:30+02:00`` vs ``02:30+01:00``) are told apart.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cronkeeper.schedule import (
    CronSchedule,
    IntervalSchedule,
    OneShotSchedule,
    RebootSchedule,
    ScheduleError,
    next_fire_times,
    parse_schedule,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _after(text: str, tz: str) -> datetime:
    """An ISO string as an aware datetime; a naive one is read in ``tz``."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(tz))


def fires(text: str, tz: str, after: str, n: int) -> list[str]:
    """The next ``n`` fires of ``text`` after ``after``, as local ISO strings in ``tz``."""
    zone = ZoneInfo(tz)
    schedule = parse_schedule(text, tz)
    return [t.astimezone(zone).isoformat() for t in next_fire_times(schedule, _after(after, tz), n)]


# --------------------------------------------------------------------------- DST tables

DST_CASES = [
    # Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
    pytest.param("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00", 2,
                 ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
                 id="spring_skip_fixed_time"),
    pytest.param("0,30 2 * * *", "Europe/Berlin", "2026-03-28T12:00", 3,
                 ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00",
                  "2026-03-30T02:30:00+02:00"],
                 id="spring_two_fixed_times_in_gap_fire_once"),
    pytest.param("30 2,3 * * *", "Europe/Berlin", "2026-03-28T12:00", 3,
                 ["2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00",
                  "2026-03-30T02:30:00+02:00"],
                 id="spring_gap_time_then_real_time"),
    pytest.param("0 2-3 * * *", "Europe/Berlin", "2026-03-28T12:00", 2,
                 ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"],
                 id="spring_gap_and_gap_end_coincide_once"),
    pytest.param("*/30 2 * * *", "Europe/Berlin", "2026-03-28T12:00", 2,
                 ["2026-03-30T02:00:00+02:00", "2026-03-30T02:30:00+02:00"],
                 id="spring_skip_wildcard_does_not_fire"),
    pytest.param("0 * * * *", "Europe/Berlin", "2026-03-29T01:30", 2,
                 ["2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"],
                 id="spring_hourly_skips_missing_hour"),
    pytest.param("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00", 2,
                 ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
                 id="fall_back_fixed_once"),
    pytest.param("30 2 * * *", "Europe/Berlin", "2026-10-25T02:45:00+02:00", 1,
                 ["2026-10-26T02:30:00+01:00"],
                 id="fall_back_fixed_not_on_second_pass"),
    pytest.param("*/30 2 * * *", "Europe/Berlin", "2026-10-25T00:00", 5,
                 ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00",
                  "2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00",
                  "2026-10-26T02:00:00+01:00"],
                 id="fall_back_wildcard_twice"),
    pytest.param("*/30 2 * * *", "Europe/Berlin", "2026-10-25T02:15:00+02:00", 3,
                 ["2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00",
                  "2026-10-25T02:30:00+01:00"],
                 id="fall_back_wildcard_from_first_pass"),
    pytest.param("0 * * * *", "Europe/Berlin", "2026-10-25T01:30", 3,
                 ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00",
                  "2026-10-25T03:00:00+01:00"],
                 id="fall_back_hourly_twice"),
    # America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
    pytest.param("30 2 * * *", "America/New_York", "2026-03-07T12:00", 2,
                 ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
                 id="new_york_spring_fixed"),
    pytest.param("30 1 * * *", "America/New_York", "2026-10-31T12:00", 2,
                 ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
                 id="new_york_fall_fixed_once"),
    pytest.param("*/30 1 * * *", "America/New_York", "2026-11-01T00:00", 4,
                 ["2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00",
                  "2026-11-01T01:00:00-05:00", "2026-11-01T01:30:00-05:00"],
                 id="new_york_fall_wildcard_twice"),
    # Australia/Sydney (southern hemisphere): spring forward in October, back in April.
    pytest.param("30 2 * * *", "Australia/Sydney", "2026-10-03T12:00", 2,
                 ["2026-10-04T03:00:00+11:00", "2026-10-05T02:30:00+11:00"],
                 id="sydney_october_spring_fixed"),
    pytest.param("30 2 * * *", "Australia/Sydney", "2026-04-04T12:00", 2,
                 ["2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"],
                 id="sydney_april_fall_fixed_once"),
    pytest.param("30 * * * *", "Australia/Sydney", "2026-04-05T01:45", 3,
                 ["2026-04-05T02:30:00+11:00", "2026-04-05T02:30:00+10:00",
                  "2026-04-05T03:30:00+10:00"],
                 id="sydney_april_wildcard_twice"),
    # Australia/Lord_Howe shifts by 30 minutes: 02:00 -> 02:30 in October, 02:00 -> 01:30 in April.
    pytest.param("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00", 2,
                 ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
                 id="lord_howe_half_hour_gap_fixed"),
    pytest.param("45 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00", 1,
                 ["2026-10-04T02:45:00+11:00"],
                 id="lord_howe_time_after_short_gap_is_real"),
    pytest.param("*/15 2 * * *", "Australia/Lord_Howe", "2026-10-04T00:00", 3,
                 ["2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00",
                  "2026-10-05T02:00:00+11:00"],
                 id="lord_howe_wildcard_skips_half_hour"),
    pytest.param("45 1 * * *", "Australia/Lord_Howe", "2026-04-04T12:00", 2,
                 ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
                 id="lord_howe_half_hour_repeat_fixed_once"),
    pytest.param("*/15 1 * * *", "Australia/Lord_Howe", "2026-04-05T00:30", 6,
                 ["2026-04-05T01:00:00+11:00", "2026-04-05T01:15:00+11:00",
                  "2026-04-05T01:30:00+11:00", "2026-04-05T01:45:00+11:00",
                  "2026-04-05T01:30:00+10:30", "2026-04-05T01:45:00+10:30"],
                 id="lord_howe_wildcard_half_hour_twice"),
    # America/Havana changes at midnight: 2026-03-08 00:00 -> 01:00; 2026-11-01 01:00 -> 00:00.
    pytest.param("0 0 * * *", "America/Havana", "2026-03-07T12:00", 2,
                 ["2026-03-08T01:00:00-04:00", "2026-03-09T00:00:00-04:00"],
                 id="havana_midnight_skipped_fixed"),
    pytest.param("* 0 * * *", "America/Havana", "2026-03-07T23:58", 2,
                 ["2026-03-09T00:00:00-04:00", "2026-03-09T00:01:00-04:00"],
                 id="havana_midnight_hour_skipped_wildcard"),
    pytest.param("@daily", "America/Havana", "2026-10-31T12:00", 2,
                 ["2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"],
                 id="havana_midnight_repeated_daily_once"),
    pytest.param("*/30 0 * * *", "America/Havana", "2026-10-31T12:00", 5,
                 ["2026-11-01T00:00:00-04:00", "2026-11-01T00:30:00-04:00",
                  "2026-11-01T00:00:00-05:00", "2026-11-01T00:30:00-05:00",
                  "2026-11-02T00:00:00-05:00"],
                 id="havana_midnight_repeated_wildcard_twice"),
    # America/Santiago: 2026-04-04 24:00 -> 23:00 (Saturday repeats); 2026-09-06 00:00 -> 01:00.
    pytest.param("30 23 * * sat", "America/Santiago", "2026-04-04T12:00", 2,
                 ["2026-04-04T23:30:00-03:00", "2026-04-11T23:30:00-04:00"],
                 id="santiago_saturday_late_repeat_fixed_once"),
    pytest.param("30 * * * *", "America/Santiago", "2026-04-04T23:00:00-03:00", 3,
                 ["2026-04-04T23:30:00-03:00", "2026-04-04T23:30:00-04:00",
                  "2026-04-05T00:30:00-04:00"],
                 id="santiago_wildcard_repeat_across_midnight"),
    pytest.param("0 0 * * sun", "America/Santiago", "2026-09-01T12:00", 2,
                 ["2026-09-06T01:00:00-03:00", "2026-09-13T00:00:00-03:00"],
                 id="santiago_sunday_midnight_skipped"),
    # Asia/Beirut: 2026-03-29 00:00 -> 01:00; 2026-10-24 24:00 -> 23:00.
    pytest.param("0 0 * * *", "Asia/Beirut", "2026-03-28T12:00", 2,
                 ["2026-03-29T01:00:00+03:00", "2026-03-30T00:00:00+03:00"],
                 id="beirut_midnight_skipped"),
    pytest.param("15 23 * * *", "Asia/Beirut", "2026-10-24T12:00", 2,
                 ["2026-10-24T23:15:00+03:00", "2026-10-25T23:15:00+02:00"],
                 id="beirut_late_evening_repeat_once"),
]


@pytest.mark.parametrize(("text", "tz", "after", "n", "expected"), DST_CASES)
def test_dst(text: str, tz: str, after: str, n: int, expected: list[str]) -> None:
    assert fires(text, tz, after, n) == expected


def test_daily_fires_exactly_once_on_fall_back_day() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    day = [t for t in next_fire_times(schedule, datetime(2026, 10, 24, tzinfo=berlin), 5)
           if t.astimezone(berlin).date().isoformat() == "2026-10-25"]
    assert len(day) == 1


def test_spec_example_spring_forward() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    after = datetime(2026, 3, 28, 12, tzinfo=ZoneInfo("Europe/Berlin"))
    assert next_fire_times(schedule, after, 2) == [
        datetime.fromisoformat("2026-03-29T03:00+02:00"),
        datetime.fromisoformat("2026-03-30T02:30+02:00"),
    ]


# --------------------------------------------------------------------------- calendar tables

CALENDAR_CASES = [
    pytest.param("0 0 13 * 5", "2026-01-01T00:00", 4,
                 ["2026-01-02T00:00:00+00:00", "2026-01-09T00:00:00+00:00",
                  "2026-01-13T00:00:00+00:00", "2026-01-16T00:00:00+00:00"],
                 id="dom_and_dow_restricted_either_matches"),
    pytest.param("0 0 13 * *", "2026-01-01T00:00", 2,
                 ["2026-01-13T00:00:00+00:00", "2026-02-13T00:00:00+00:00"],
                 id="dow_star_dom_only"),
    pytest.param("0 0 * * 5", "2026-01-01T00:00", 2,
                 ["2026-01-02T00:00:00+00:00", "2026-01-09T00:00:00+00:00"],
                 id="dom_star_dow_only"),
    pytest.param("0 0 */2 * 5", "2026-01-01T00:00", 3,
                 ["2026-01-09T00:00:00+00:00", "2026-01-23T00:00:00+00:00",
                  "2026-02-13T00:00:00+00:00"],
                 id="dom_star_step_means_both_must_match"),
    pytest.param("0 0 13 * */2", "2026-01-01T00:00", 2,
                 ["2026-01-13T00:00:00+00:00", "2026-06-13T00:00:00+00:00"],
                 id="dow_star_step_means_both_must_match"),
    pytest.param("0 0 * * 0", "2026-01-01T00:00", 2,
                 ["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"],
                 id="sunday_is_0"),
    pytest.param("0 0 * * 7", "2026-01-01T00:00", 2,
                 ["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"],
                 id="sunday_is_7"),
    pytest.param("0 0 * * SUN", "2026-01-01T00:00", 1, ["2026-01-04T00:00:00+00:00"],
                 id="sunday_by_name_any_case"),
    pytest.param("0 0 * * 5-7", "2026-01-01T00:00", 3,
                 ["2026-01-02T00:00:00+00:00", "2026-01-03T00:00:00+00:00",
                  "2026-01-04T00:00:00+00:00"],
                 id="range_ending_in_7_includes_sunday"),
    pytest.param("0 9 * jan,Jul mon-fri", "2026-01-30T12:00", 3,
                 ["2026-07-01T09:00:00+00:00", "2026-07-02T09:00:00+00:00",
                  "2026-07-03T09:00:00+00:00"],
                 id="month_and_weekday_names"),
    pytest.param("5/15 * * * *", "2026-01-01T00:00", 4,
                 ["2026-01-01T00:05:00+00:00", "2026-01-01T00:20:00+00:00",
                  "2026-01-01T00:35:00+00:00", "2026-01-01T00:50:00+00:00"],
                 id="start_with_step"),
    pytest.param("1-10/4 * * * *", "2026-01-01T00:00", 4,
                 ["2026-01-01T00:01:00+00:00", "2026-01-01T00:05:00+00:00",
                  "2026-01-01T00:09:00+00:00", "2026-01-01T01:01:00+00:00"],
                 id="range_with_step"),
    pytest.param("0 0 29 2 *", "2026-01-01T00:00", 2,
                 ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"],
                 id="leap_day_only"),
    pytest.param("0 0 31 * *", "2026-01-31T12:00", 2,
                 ["2026-03-31T00:00:00+00:00", "2026-05-31T00:00:00+00:00"],
                 id="day_31_skips_short_months"),
    pytest.param("0 0 29 2 1", "2026-01-01T00:00", 2,
                 ["2026-02-02T00:00:00+00:00", "2026-02-09T00:00:00+00:00"],
                 id="leap_day_or_monday_in_february"),
    pytest.param("59 23 31 12 *", "2026-12-31T23:59", 1, ["2027-12-31T23:59:00+00:00"],
                 id="year_end_strictly_after"),
    pytest.param("@yearly", "2026-06-01T00:00", 1, ["2027-01-01T00:00:00+00:00"], id="yearly"),
    pytest.param("@annually", "2026-06-01T00:00", 1, ["2027-01-01T00:00:00+00:00"],
                 id="annually"),
    pytest.param("@monthly", "2026-06-01T00:00", 1, ["2026-07-01T00:00:00+00:00"], id="monthly"),
    pytest.param("@weekly", "2026-01-01T00:00", 1, ["2026-01-04T00:00:00+00:00"], id="weekly"),
    pytest.param("@daily", "2026-01-01T00:00", 1, ["2026-01-02T00:00:00+00:00"], id="daily"),
    pytest.param("@midnight", "2026-01-01T00:00", 1, ["2026-01-02T00:00:00+00:00"],
                 id="midnight"),
    pytest.param("@HOURLY", "2026-01-01T00:30", 1, ["2026-01-01T01:00:00+00:00"],
                 id="hourly_any_case"),
]


@pytest.mark.parametrize(("text", "after", "n", "expected"), CALENDAR_CASES)
def test_calendar(text: str, after: str, n: int, expected: list[str]) -> None:
    assert fires(text, "UTC", after, n) == expected


def test_exact_match_is_not_after_itself() -> None:
    schedule = parse_schedule("30 2 * * *", "UTC")
    at = datetime(2026, 1, 1, 2, 30, tzinfo=UTC)
    assert schedule.next_after(at) == at + timedelta(days=1)
    assert schedule.next_after(at - timedelta(microseconds=1)) == at


def test_result_is_utc_for_any_input_zone() -> None:
    schedule = parse_schedule("0 9 * * *", "America/New_York")
    result = schedule.next_after(datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Tokyo")))
    assert result is not None and result.tzinfo is UTC
    # Tokyo midnight is 10:00 EST on 31 December, so the next 09:00 EST is on 1 January.
    assert result == datetime(2026, 1, 1, 14, 0, tzinfo=UTC)


def test_naive_after_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("* * * * *", "UTC").next_after(datetime(2026, 1, 1))


# --------------------------------------------------------------------------- field sweeps
# Every value of every field, as huey's test_crontab_* do.


@pytest.mark.parametrize("minute", range(60))
def test_sweep_every_minute_value(minute: int) -> None:
    after = datetime(2026, 5, 5, 10, 30, tzinfo=UTC)
    got = next_fire_times(parse_schedule(f"{minute} * * * *", "UTC"), after, 3)
    first = after.replace(minute=minute) + (timedelta(hours=1) if minute <= 30 else timedelta())
    assert got == [first + timedelta(hours=i) for i in range(3)]


@pytest.mark.parametrize("hour", range(24))
def test_sweep_every_hour_value(hour: int) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    after = datetime(2026, 5, 5, 12, 0, tzinfo=berlin)
    got = parse_schedule(f"0 {hour} * * *", berlin).next_after(after)
    day = 5 if hour > 12 else 6
    assert got == datetime(2026, 5, day, hour, 0, tzinfo=berlin)


@pytest.mark.parametrize("day", range(1, 32))
def test_sweep_every_day_of_month(day: int) -> None:
    got = parse_schedule(f"0 0 {day} * *", "UTC").next_after(datetime(2026, 1, 1, tzinfo=UTC))
    expected = datetime(2026, 1, day, tzinfo=UTC)
    assert got == (expected if day > 1 else datetime(2026, 2, 1, tzinfo=UTC))


@pytest.mark.parametrize("month", range(1, 13))
def test_sweep_every_month(month: int) -> None:
    name = ("jan feb mar apr may jun jul aug sep oct nov dec".split())[month - 1]
    after = datetime(2026, 1, 1, 12, tzinfo=UTC)
    for text in (f"0 0 1 {month} *", f"0 0 1 {name} *", f"0 0 1 {name.upper()} *"):
        got = parse_schedule(text, "UTC").next_after(after)
        assert got == datetime(2026 if month > 1 else 2027, month, 1, tzinfo=UTC), text


@pytest.mark.parametrize("weekday", range(8))
def test_sweep_every_weekday(weekday: int) -> None:
    # 2026-01-04 is a Sunday; cron weekday w (7 = Sunday too) falls on 4 + w % 7.
    got = parse_schedule(f"0 0 * * {weekday}", "UTC").next_after(
        datetime(2026, 1, 3, 12, tzinfo=UTC))
    assert got == datetime(2026, 1, 4 + weekday % 7, tzinfo=UTC)
    assert (got.isoweekday() % 7) == weekday % 7


@pytest.mark.parametrize("step", range(1, 60))
def test_sweep_minute_steps(step: int) -> None:
    after = datetime(2026, 1, 1, 0, 0, tzinfo=UTC) - timedelta(microseconds=1)
    got = next_fire_times(parse_schedule(f"*/{step} * * * *", "UTC"), after, 60)
    assert [t.minute for t in got if (t.day, t.hour) == (1, 0)] == list(range(0, 60, step))


@pytest.mark.parametrize("step", range(1, 24))
def test_sweep_hour_steps(step: int) -> None:
    after = datetime(2026, 1, 1, 0, 0, tzinfo=UTC) - timedelta(microseconds=1)
    got = next_fire_times(parse_schedule(f"0 */{step} * * *", "UTC"), after, 24)
    assert [t.hour for t in got if t.day == 1] == list(range(0, 24, step))


# --------------------------------------------------------------------------- intervals


@pytest.mark.parametrize(("text", "seconds"), [
    pytest.param("every 15m", 900, id="every_minutes"),
    pytest.param("15m", 900, id="bare_duration"),
    pytest.param("every 1h30m", 5400, id="combined_units"),
    pytest.param("1h 30m", 5400, id="combined_units_spaced"),
    pytest.param("every 90", 90, id="plain_seconds"),
    pytest.param("45", 45, id="bare_seconds"),
    pytest.param("every 2d", 172800, id="days"),
    pytest.param("every 1w", 604800, id="weeks"),
    pytest.param("EVERY 10S", 10, id="any_case"),
])
def test_interval_parse(text: str, seconds: int) -> None:
    schedule = parse_schedule(text, "Europe/Berlin")
    assert isinstance(schedule, IntervalSchedule) and schedule.seconds == seconds


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu"])
def test_interval_aligned_to_epoch_whatever_the_zone(tz: str) -> None:
    schedule = parse_schedule("every 1h", tz)
    after = datetime(2026, 1, 1, 10, 10, tzinfo=ZoneInfo("Asia/Kolkata"))  # 04:40 UTC
    assert schedule.next_after(after) == datetime(2026, 1, 1, 5, 0, tzinfo=UTC)


def test_interval_alignment_examples() -> None:
    every7 = parse_schedule("every 7m", "UTC")
    after = datetime(2026, 1, 1, tzinfo=UTC)
    got = every7.next_after(after)
    assert got is not None and (got - EPOCH) % timedelta(minutes=7) == timedelta(0)
    assert after < got <= after + timedelta(minutes=7)
    boundary = EPOCH + timedelta(minutes=7 * 4_000_000)
    assert every7.next_after(boundary) == boundary + timedelta(minutes=7)
    assert parse_schedule("every 15m", "Europe/Berlin").next_after(
        datetime(2026, 1, 1, 0, 7, tzinfo=ZoneInfo("Europe/Berlin"))
    ) == datetime(2026, 1, 1, 0, 15, tzinfo=ZoneInfo("Europe/Berlin"))


def test_interval_ignores_dst() -> None:
    schedule = parse_schedule("every 1h", "Europe/Berlin")
    got = next_fire_times(schedule, datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 3)
    assert [t - got[0] for t in got] == [timedelta(hours=h) for h in range(3)]


@given(seconds=st.integers(1, 10 * 86400),
       after=st.datetimes(datetime(1971, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_interval_property(seconds: int, after: datetime) -> None:
    got = IntervalSchedule(f"{seconds}", ZoneInfo("UTC"), seconds).next_after(after)
    assert got is not None
    assert (got - EPOCH) % timedelta(seconds=seconds) == timedelta(0)
    assert after < got <= after + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- one-shot, reboot


@pytest.mark.parametrize(("text", "tz", "expected_utc"), [
    pytest.param("at 2026-12-01T09:00", "Europe/Berlin", "2026-12-01T08:00:00+00:00",
                 id="at_in_task_zone"),
    pytest.param("at 2026-12-01 09:00", "America/New_York", "2026-12-01T14:00:00+00:00",
                 id="at_with_space"),
    pytest.param("at 2026-12-01T09:00+01:00", "America/New_York", "2026-12-01T08:00:00+00:00",
                 id="at_explicit_offset_wins"),
    pytest.param("at 2026-12-01T09:00Z", "Europe/Berlin", "2026-12-01T09:00:00+00:00",
                 id="at_zulu_wins"),
    pytest.param("at 2026-03-29T02:30", "Europe/Berlin", "2026-03-29T01:00:00+00:00",
                 id="at_in_spring_gap_fires_after_gap"),
    pytest.param("at 2026-10-25T02:30", "Europe/Berlin", "2026-10-25T00:30:00+00:00",
                 id="at_in_repeat_fires_on_first_pass"),
])
def test_one_shot(text: str, tz: str, expected_utc: str) -> None:
    schedule = parse_schedule(text, tz)
    assert isinstance(schedule, OneShotSchedule) and schedule.is_one_shot
    when = datetime.fromisoformat(expected_utc)
    assert schedule.next_after(when - timedelta(days=400)) == when
    assert schedule.next_after(when - timedelta(microseconds=1)) == when
    assert schedule.next_after(when) is None
    assert next_fire_times(schedule, when - timedelta(days=1), 5) == [when]


def test_reboot_never_fires_by_time() -> None:
    schedule = parse_schedule("@reboot", "UTC")
    assert isinstance(schedule, RebootSchedule)
    assert schedule.is_reboot and not schedule.is_one_shot
    assert schedule.next_after(datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert next_fire_times(schedule, datetime(2026, 1, 1, tzinfo=UTC), 3) == []


def test_kinds_and_attributes() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    assert isinstance(schedule, CronSchedule)
    assert schedule.text == "30 2 * * *" and schedule.tz == ZoneInfo("Europe/Berlin")
    assert not schedule.is_reboot and not schedule.is_one_shot and schedule.fixed_time
    assert not parse_schedule("*/5 2 * * *", "UTC").fixed_time  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.text = "other"  # type: ignore[misc]


def test_parse_is_cached_and_schedules_compare_by_value() -> None:
    assert parse_schedule("0 * * * *", "UTC") is parse_schedule("0 * * * *", ZoneInfo("UTC"))
    assert parse_schedule("0 * * * *", "UTC") != parse_schedule("0 * * * *", "Europe/Berlin")
    assert hash(parse_schedule("@daily", "UTC")) == hash(parse_schedule("@daily", "UTC"))


# --------------------------------------------------------------------------- describe

DESCRIBE_CASES = [
    pytest.param("30 2 * * *", "at 02:30 every day", id="daily_time"),
    pytest.param("*/15 * * * *", "every 15 minutes", id="every_15_minutes"),
    pytest.param("* * * * *", "every minute", id="every_minute"),
    pytest.param("0 * * * *", "at minute 0 past every hour", id="hourly"),
    pytest.param("@hourly", "at minute 0 past every hour", id="hourly_macro"),
    pytest.param("0 9 * * 1-5", "at 09:00 on Monday through Friday", id="weekdays"),
    pytest.param("0 9,17 * * *", "at 09:00 and 17:00 every day", id="two_times"),
    pytest.param("@weekly", "at 00:00 on Sunday", id="weekly"),
    pytest.param("@monthly", "at 00:00 on day 1 of the month", id="monthly"),
    pytest.param("@yearly", "at 00:00 on January 1", id="yearly"),
    pytest.param("0 0 13 * 5", "at 00:00 on day 13 of the month or on Friday", id="or_rule"),
    pytest.param("0 6 * 3-5 *", "at 06:00 in March through May", id="month_range"),
    pytest.param("0,30 * * * 1,3,5", "at minutes 0 and 30 past every hour on Monday, "
                 "Wednesday and Friday", id="minute_list_weekday_list"),
    pytest.param("*/5 9-17 * * *", "every 5 minutes during hours 9 through 17",
                 id="every_5_minutes_office_hours"),
    pytest.param("0 */2 * * *", "at minute 0 past every 2nd hour", id="every_2nd_hour"),
    pytest.param("every 15m", "every 15 minutes", id="interval_minutes"),
    pytest.param("every 1h", "every hour", id="interval_hour"),
    pytest.param("1h30m", "every 90 minutes", id="interval_combined"),
    pytest.param("at 2026-12-01T09:00", "once at 2026-12-01 09:00 Europe/Berlin", id="at"),
    pytest.param("at 2026-12-01T09:00+01:00", "once at 2026-12-01 09:00 UTC+01:00",
                 id="at_offset"),
    pytest.param("@reboot", "at every reboot", id="reboot"),
]


@pytest.mark.parametrize(("text", "expected"), DESCRIBE_CASES)
def test_describe(text: str, expected: str) -> None:
    assert parse_schedule(text, "Europe/Berlin").describe() == expected


@pytest.mark.parametrize("text", ["1,7,13,19,23,29,31,37,41,53 * * * *",
                                  "0 0 */2 * 1", "0-5,10-15/2 1,3,5-9 */3 1-6 *"])
def test_describe_complex_is_readable(text: str) -> None:
    words = parse_schedule(text, "UTC").describe()
    assert words and "None" not in words and "()" not in words


# --------------------------------------------------------------------------- parse errors

ERROR_CASES = [
    pytest.param("61 * * * *", ["minute field '61'", "out of range 0-59"], id="minute_range"),
    pytest.param("* 24 * * *", ["hour field '24'", "0-23"], id="hour_range"),
    pytest.param("* * 0 * *", ["day-of-month field '0'", "1-31"], id="dom_zero"),
    pytest.param("* * 32 * *", ["day-of-month field '32'", "1-31"], id="dom_range"),
    pytest.param("* * * 13 *", ["month field '13'", "1-12"], id="month_range"),
    pytest.param("* * * foo *", ["month field 'foo'", "jan-dec"], id="month_name"),
    pytest.param("* * * * 8", ["day-of-week field '8'", "0-7"], id="dow_range"),
    pytest.param("* * * * funday", ["day-of-week field 'funday'", "sun-sat"], id="dow_name"),
    pytest.param("* * * * fri-sun", ["day-of-week field 'fri-sun'", "ascending"],
                 id="dow_wrapping_range"),
    pytest.param("5-1 * * * *", ["minute field '5-1'", "ascending"], id="reversed_range"),
    pytest.param("*/0 * * * *", ["minute field '*/0'", "step 0", "1-59"], id="zero_step"),
    pytest.param("*/60 * * * *", ["minute field '*/60'", "step 60"], id="step_too_big"),
    pytest.param("*/x * * * *", ["minute field '*/x'", "step 'x'"], id="step_not_number"),
    pytest.param("1,,2 * * * *", ["minute field '1,,2'", "empty"], id="empty_list_item"),
    pytest.param("1- * * * *", ["minute field '1-'", "missing"], id="open_range"),
    pytest.param("* * * * mon#2", ["day-of-week field 'mon#2'", "not supported"],
                 id="quartz_hash"),
    pytest.param("* * L * *", ["day-of-month field 'L'", "not supported"], id="quartz_last"),
    pytest.param("0 0 ? * *", ["day-of-month field '?'", "not supported"], id="quartz_any"),
    pytest.param("0 0 30 2 *", ["day-of-month field '30'", "never fire"], id="never_fires"),
    pytest.param("0 0 0 * * *", ["6 fields", "seconds", "every 30s"], id="six_fields"),
    pytest.param("0 0 * * * 2026", ["6 fields", "not supported"], id="six_fields_year"),
    pytest.param("* * *", ["3 fields", "needs 5"], id="three_fields"),
    pytest.param("every 15x", ["'15x'", "units s, m, h, d, w"], id="bad_duration"),
    pytest.param("every 0m", ["at least 1 second"], id="zero_interval"),
    pytest.param("every 1h1h", ["'h' appears twice"], id="duplicate_unit"),
    pytest.param("@fortnightly", ["'@fortnightly'", "@daily", "@reboot"], id="unknown_macro"),
    pytest.param("at tomorrow", ["'tomorrow'", "ISO 8601", "2026-12-01T09:00"], id="bad_at"),
    pytest.param("hello world", ["'hello world'", "accepted forms", "@reboot", "every 15m"],
                 id="unknown_form"),
    pytest.param("", ["accepted forms"], id="empty"),
]


@pytest.mark.parametrize(("text", "needles"), ERROR_CASES)
def test_parse_errors(text: str, needles: list[str]) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(text, "UTC")
    for needle in needles:
        assert needle in str(caught.value)


def test_schedule_error_is_value_error_and_unknown_zone() -> None:
    assert issubclass(ScheduleError, ValueError)
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'"):
        parse_schedule("* * * * *", "Mars/Olympus")


# --------------------------------------------------------------------------- properties
# A brute-force reference: walk every UTC minute, look at the local time, apply the rules.

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe",
         "America/Havana", "America/Santiago", "Asia/Beirut", "Asia/Kathmandu",
         "Antarctica/Troll", "Pacific/Chatham"]


def _transitions(zone: str, year: int) -> list[datetime]:
    """UTC instants where ``zone`` changes offset during ``year`` (hourly scan, then bisect)."""
    tz, found = ZoneInfo(zone), []
    hour = datetime(year, 1, 1, tzinfo=UTC)
    while hour.year == year:
        nxt = hour + timedelta(hours=1)
        if hour.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            low, high = hour, nxt
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                same = middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset()
                low, high = (middle, high) if same else (low, middle)
            found.append(high)
        hour = nxt
    return found


# Start near each zone's own 2026 changes, where the interesting cases are.
TRANSITIONS = {zone: _transitions(zone, 2026) or [datetime(2026, 6, 1, tzinfo=UTC)]
               for zone in ZONES}
HORIZON = timedelta(days=3)


def reference_fires(sets: list[set[int]], fixed: bool, day_or: bool, tz: ZoneInfo,
                    after: datetime, n: int, horizon: timedelta = HORIZON) -> list[datetime]:
    """Up to ``n`` fires after ``after`` and within ``horizon``, by checking every UTC minute."""
    minutes, hours, doms, months, dows = sets
    dows = {d % 7 for d in dows}

    def matches(wall: datetime) -> bool:
        dom_ok, dow_ok = wall.day in doms, wall.isoweekday() % 7 in dows
        day_ok = (dom_ok or dow_ok) if day_or else (dom_ok and dow_ok)
        return (wall.minute in minutes and wall.hour in hours and wall.month in months
                and day_ok)

    minute = timedelta(minutes=1)
    instant = after.astimezone(UTC).replace(second=0, microsecond=0) + minute
    previous = (instant - minute).astimezone(tz)
    end = after + horizon
    found: list[datetime] = []
    while instant <= end and len(found) < n:
        local = instant.astimezone(tz)
        if fixed:
            fire = matches(local) and local.fold == 0  # repeated: only the first pass
            if not fire and local.utcoffset() > previous.utcoffset():  # type: ignore[operator]
                # A gap ends here: fire if any skipped wall time would have matched.
                wall = previous.replace(tzinfo=None) + minute
                while not fire and wall < local.replace(tzinfo=None):
                    fire, wall = matches(wall), wall + minute
        else:
            fire = matches(local)
        if fire:
            found.append(instant)
        previous, instant = local, instant + minute
    return found


@st.composite
def cron_field(draw: st.DrawFn, low: int, high: int, dense: bool) -> tuple[str, set[int]]:
    kinds = ["star", "step", "list", "range", "range_step"] if dense else ["list", "range"]
    kind = draw(st.sampled_from(kinds))
    if kind == "star":
        return "*", set(range(low, high + 1))
    if kind == "step":
        step = draw(st.integers(1, min(high, 13)))
        return f"*/{step}", set(range(low, high + 1, step))
    if kind == "list":
        values = draw(st.lists(st.integers(low, high), min_size=1, max_size=4))
        return ",".join(map(str, values)), set(values)
    first = draw(st.integers(low, high))
    last = draw(st.integers(first, min(high, first + 12)))
    if kind == "range":
        return f"{first}-{last}", set(range(first, last + 1))
    step = draw(st.integers(1, 5))
    return f"{first}-{last}/{step}", set(range(first, last + 1, step))


@st.composite
def cron_expression(draw: st.DrawFn, fixed: bool) -> tuple[str, list[set[int]]]:
    parts = [
        draw(cron_field(0, 59, dense=not fixed)),
        draw(cron_field(0, 23, dense=not fixed)),
        draw(st.one_of(st.just(("*", set(range(1, 32)))), cron_field(1, 31, dense=True))),
        draw(st.one_of(st.just(("*", set(range(1, 13)))), cron_field(1, 12, dense=True))),
        draw(st.one_of(st.just(("*", set(range(8)))), cron_field(0, 7, dense=True))),
    ]
    return " ".join(text for text, _ in parts), [values for _, values in parts]


near_shifts = st.one_of(st.timedeltas(timedelta(hours=-3), timedelta(hours=2)),
                       st.timedeltas(timedelta(days=-2), timedelta(days=1)))
zone_and_start = st.sampled_from(ZONES).flatmap(lambda zone: st.tuples(
    st.just(zone),
    st.builds(lambda base, shift: base + shift, st.sampled_from(TRANSITIONS[zone]), near_shifts),
))


def _check_against_reference(text: str, sets: list[set[int]], zone: str,
                             after: datetime) -> None:
    fields = text.split()
    try:
        schedule = parse_schedule(text, zone)
    except ScheduleError:
        return  # e.g. a day-of-month no selected month has; covered by the error table
    tz = ZoneInfo(zone)
    fixed = not fields[0].startswith("*") and not fields[1].startswith("*")
    day_or = not fields[2].startswith("*") and not fields[4].startswith("*")
    expected = reference_fires(sets, fixed, day_or, tz, after, 6)
    got = next_fire_times(schedule, after, 6)
    assert got[:len(expected)] == expected
    if len(expected) < 6 and len(got) > len(expected):
        assert got[len(expected)] > after + HORIZON


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=cron_expression(fixed=False), zone_start=zone_and_start)
def test_matches_brute_force_reference(expr: tuple[str, list[set[int]]],
                                       zone_start: tuple[str, datetime]) -> None:
    _check_against_reference(*expr, *zone_start)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=cron_expression(fixed=True), zone_start=zone_and_start)
def test_fixed_time_matches_brute_force_reference(expr: tuple[str, list[set[int]]],
                                                  zone_start: tuple[str, datetime]) -> None:
    _check_against_reference(*expr, *zone_start)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(minute=cron_field(0, 59, dense=True), hour=st.sampled_from(["*", "*/2", "0-5", "22-23,0-3"]),
       zone=st.sampled_from([z for z in ZONES if len(TRANSITIONS[z]) > 1]), data=st.data())
def test_every_pass_through_a_change_matches_reference(
        minute: tuple[str, set[int]], hour: str, zone: str, data: st.DataObject) -> None:
    # Repeated and skipped wall times with several matches an hour, from just around a change.
    hours = {"*": set(range(24)), "*/2": set(range(0, 24, 2)), "0-5": set(range(6)),
             "22-23,0-3": {22, 23, 0, 1, 2, 3}}[hour]
    base = data.draw(st.sampled_from(TRANSITIONS[zone]))
    after = base + data.draw(st.timedeltas(timedelta(hours=-2), timedelta(hours=1)))
    text = f"{minute[0]} {hour} * * *"
    sets = [minute[1], hours, set(range(1, 32)), set(range(1, 13)), set(range(8))]
    _check_against_reference(text, sets, zone, after)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=st.one_of(cron_expression(fixed=True), cron_expression(fixed=False)),
       zone=st.sampled_from(sorted(available_timezones())),
       after=st.datetimes(datetime(1990, 1, 1), datetime(2037, 12, 31), timezones=st.just(UTC)))
def test_any_zone_any_year_matches_reference(expr: tuple[str, list[set[int]]], zone: str,
                                             after: datetime) -> None:
    _check_against_reference(*expr, zone, after)


@settings(max_examples=50, deadline=None)
@given(expr=cron_expression(fixed=False), zone_start=zone_and_start)
def test_next_fire_times_strictly_increasing(expr: tuple[str, list[set[int]]],
                                             zone_start: tuple[str, datetime]) -> None:
    zone, after = zone_start
    try:
        schedule = parse_schedule(expr[0], zone)
    except ScheduleError:
        return
    got = next_fire_times(schedule, after, 5)
    assert all(t.tzinfo is UTC for t in got)
    assert [after, *got] == sorted({after, *got})

"""The engine under an injected FakeClock: jitter, retry delays, pause holding a retry, misfires.

Real store (SQLite in tmp_path), real child processes; only time is fake, so nothing here
sleeps for wall time and no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cronkeeper.clock import FakeClock
from cronkeeper.config import parse_config
from cronkeeper.engine import Engine
from cronkeeper.events import Event, EventBus
from cronkeeper.executor import install_child_watcher
from cronkeeper.store import Store

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DEADLINE = 30.0


class Harness:
    def __init__(self, engine: Engine, clock: FakeClock, events: list[Event]) -> None:
        self.engine = engine
        self.clock = clock
        self.events = events
        self._changed = asyncio.Event()

    def note(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, predicate: Any, what: str) -> list[Event]:
        async def loop() -> list[Event]:
            while True:
                found = [e for e in self.events if predicate(e)]
                if found:
                    return found
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(loop(), DEADLINE)
        except TimeoutError:
            raise AssertionError(
                f"no {what}; saw {[(e.kind, dict(e.data)) for e in self.events]}") from None

    def kinds(self, task: str) -> list[tuple[str, Any, Any]]:
        return [(e.kind, e.data.get("trigger"), e.data.get("attempt")) for e in self.events
                if e.kind.startswith("run.") and e.data.get("task") == task]

    async def settle(self) -> None:
        """Let the loop run callbacks that are already due (no wall-clock wait)."""
        for _ in range(5):
            await asyncio.sleep(0)


@pytest.fixture
async def make_engine(tmp_path: Path) -> AsyncIterator[Any]:
    install_child_watcher()
    made: list[tuple[Engine, Store]] = []

    async def make(tasks: dict[str, dict[str, Any]]) -> Harness:
        config = parse_config({"daemon": {"database": str(tmp_path / "ck.db"),
                                          "timezone": "UTC"}, "tasks": tasks},
                              base_dir=tmp_path)
        store = Store(tmp_path / "ck.db")
        clock = FakeClock(T0)
        bus = EventBus()
        engine = Engine(config, store, bus, clock)
        harness = Harness(engine, clock, [])
        bus.add_listener(harness.note)
        await engine.start(reboot=False)
        made.append((engine, store))
        return harness

    yield make
    for engine, store in made:
        await engine.shutdown(1.0)
        store.close()


async def test_jitter_delays_the_fire_until_the_clock_moves(make_engine: Any) -> None:
    h = await make_engine({"j": {"schedule": "0 3 1 1 *", "command": "true", "jitter": "10s"}})
    h.engine.on_fire("j", [T0])
    await h.settle()
    assert h.kinds("j") == []  # waiting out its random delay
    h.clock.advance(timedelta(seconds=10))
    await h.wait_for(lambda e: e.kind == "run.finished" and e.data["task"] == "j", "jittered run")
    assert h.kinds("j") == [("run.queued", "schedule", 1), ("run.started", "schedule", 1),
                            ("run.finished", "schedule", 1)]


async def test_retry_waits_for_its_backoff_delay(make_engine: Any) -> None:
    h = await make_engine({"f": {"command": "exit 1", "retries": 2, "retry_delay": "30s",
                                 "retry_backoff": 3.0}})
    h.engine.run_now("f")
    await h.wait_for(lambda e: e.kind == "run.finished" and e.data["attempt"] == 1, "attempt 1")
    assert h.engine.tasks["f"].state(False).value == "retry-scheduled"
    h.clock.advance(timedelta(seconds=29))
    await h.settle()
    assert not [e for e in h.events if e.data.get("attempt") == 2]
    h.clock.advance(timedelta(seconds=1))
    await h.wait_for(lambda e: e.kind == "run.finished" and e.data["attempt"] == 2, "attempt 2")
    h.clock.advance(timedelta(seconds=89))  # second retry: 30s x 3
    await h.settle()
    assert not [e for e in h.events if e.data.get("attempt") == 3]
    h.clock.advance(timedelta(seconds=1))
    done = await h.wait_for(lambda e: e.kind == "run.finished" and e.data["attempt"] == 3,
                            "attempt 3")
    assert done[0].data["trigger"] == "retry" and done[0].data["status"] == "failed"
    assert h.engine.tasks["f"].retry_count == 2


async def test_retry_due_while_paused_waits_for_resume(make_engine: Any) -> None:
    h = await make_engine({"f": {"command": "exit 1", "retries": 1, "retry_delay": "5s"}})
    h.engine.run_now("f")
    await h.wait_for(lambda e: e.kind == "run.finished" and e.data["attempt"] == 1, "attempt 1")
    h.engine.pause("f")
    h.clock.advance(timedelta(seconds=5))
    await h.settle()
    assert h.engine.tasks["f"].held_retry is not None
    assert not [e for e in h.events if e.data.get("attempt") == 2]
    h.engine.resume("f")
    await h.wait_for(lambda e: e.kind == "run.finished" and e.data["attempt"] == 2, "retry")


async def test_missed_fire_without_catch_up_is_recorded_skipped(make_engine: Any) -> None:
    h = await make_engine({"m": {"schedule": "0 3 1 1 *", "command": "true"},
                           "c": {"schedule": "0 3 1 1 *", "command": "true", "catch_up": True}})
    late = [T0 - timedelta(minutes=5)]
    h.engine.on_fire("m", late)
    h.engine.on_fire("c", late)
    skipped = await h.wait_for(lambda e: e.kind == "run.finished" and e.data["task"] == "m",
                               "skipped record")
    assert skipped[0].data["status"] == "skipped"
    assert "missed" in skipped[0].data["error"]
    caught = await h.wait_for(lambda e: e.kind == "run.finished" and e.data["task"] == "c",
                              "catch-up run")
    assert (caught[0].data["trigger"], caught[0].data["status"]) == ("catch-up", "succeeded")


async def test_new_scheduled_fire_supersedes_pending_retry(make_engine: Any) -> None:
    h = await make_engine({"s": {"schedule": "0 3 1 1 *", "command": "exit 2", "retries": 3,
                                 "retry_delay": "1h"}})
    h.engine.run_now("s")
    await h.wait_for(lambda e: e.kind == "run.finished" and e.data["attempt"] == 1, "attempt 1")
    assert h.engine.tasks["s"].retry_timer is not None
    h.engine.on_fire("s", [T0])
    assert h.engine.tasks["s"].retry_timer is None
    await h.wait_for(lambda e: e.kind == "run.finished" and e.data["trigger"] == "schedule",
                     "the scheduled run")

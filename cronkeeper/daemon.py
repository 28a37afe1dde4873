"""The daemon's lifecycle: start-up, the socket, signals, reload, housekeeping, shutdown.

Signal handlers only set state; the main loop acts on it; ``finally`` always cleans up
(records unfinished runs, removes the socket, tells systemd we are stopping).
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from cronkeeper import __version__
from cronkeeper.api import make_app
from cronkeeper.clock import Clock, SystemClock
from cronkeeper.config import Config, load_config
from cronkeeper.engine import Engine
from cronkeeper.errors import ConfigError, CronkeeperError
from cronkeeper.events import ConfigReloaded, EventBus
from cronkeeper.executor import enable_subreaper, install_child_watcher, reap_orphans
from cronkeeper.metrics import Metrics
from cronkeeper.sdnotify import Notifier
from cronkeeper.store import Store

log = logging.getLogger("cronkeeper.daemon")

REAP_INTERVAL = 30.0  # orphaned grandchildren are reaped this often (zombies are harmless meanwhile)
PRUNE_INTERVAL = 3600.0  # retention (keep_runs/keep_days) runs hourly, and once at start-up
HOUSEKEEPING_CAP = 60.0


class SocketInUse(CronkeeperError):
    exit_code = 1

    def __init__(self, path: Path) -> None:
        super().__init__(f"another cronkeeper daemon is already serving {path}; "
                         "stop it first or set a different [daemon] socket")


class Daemon:
    def __init__(self, config_path: str | Path, clock: Clock | None = None) -> None:
        self.config_path = Path(config_path).resolve()
        self.clock: Clock = clock or SystemClock()
        self.config: Config = load_config(self.config_path)
        self.tz = ZoneInfo(self.config.daemon.timezone)
        self.bus = EventBus()
        self.store: Store
        self.engine: Engine
        self.metrics: Metrics
        self.notifier = Notifier()
        self.started_at = self.clock.now()
        self._stop = asyncio.Event()
        self._hard_stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # ---- views ----

    def status(self) -> dict[str, Any]:
        engine = self.engine
        running = sum(1 for ar in engine.runs.values() if ar.record["status"] == "running")
        return {
            "version": __version__,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": self.started_at.astimezone(self.tz).isoformat(timespec="seconds"),
            "config": str(self.config_path),
            "socket": str(self.config.daemon.socket),
            "database": self.config.daemon.database,
            "tasks": len(engine.tasks),
            "running": running,
            "queued": len(engine.runs) - running,
            "paused_all": engine.paused_all,
        }

    def _status_line(self) -> str:
        s = self.status()
        paused = ", all paused" if s["paused_all"] else ""
        return f"{s['tasks']} tasks, {s['running']} running, {s['queued']} queued{paused}"

    # ---- lifecycle ----

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        install_child_watcher()
        enable_subreaper()
        daemon_cfg = self.config.daemon
        self.store = Store(daemon_cfg.database)
        self.engine = Engine(self.config, self.store, self.bus, self.clock)
        self.metrics = Metrics(self)
        self.bus.add_listener(self.metrics.on_event)
        try:
            interrupted = await self.engine.start(reboot=True)
            if interrupted:
                log.warning("marked %d run(s) left over from the last daemon as interrupted: %s",
                            len(interrupted), ", ".join(map(str, interrupted[:20])))
            await self._bind()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_stop_signal)
            loop.add_signal_handler(signal.SIGHUP, self._reload.set)
            log.info("cronkeeper %s ready: %d tasks, socket %s", __version__,
                     len(self.engine.tasks), daemon_cfg.socket)
            self.notifier.ready(self._status_line())
            await self._main_loop()
        finally:
            await self._shutdown()

    def _on_stop_signal(self) -> None:
        if self._stop.is_set():
            log.warning("second stop signal: killing running tasks now")
            self._hard_stop.set()
        self._stop.set()

    async def _bind(self) -> None:
        cfg = self.config.daemon
        path = Path(cfg.socket)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if await _socket_alive(path):
                raise SocketInUse(path)
            path.unlink()  # stale: left by a daemon that died
        runner = web.AppRunner(make_app(self), handle_signals=False, access_log=None)
        await runner.setup()
        self._runner = runner
        # umask so the socket never exists, even briefly, with wider permissions than asked.
        old_umask = os.umask(0o777 & ~cfg.socket_mode)
        try:
            await web.UnixSite(runner, str(path)).start()
        finally:
            os.umask(old_umask)
        os.chmod(path, cfg.socket_mode)
        if cfg.socket_group:
            os.chown(path, -1, grp.getgrnam(cfg.socket_group).gr_gid)

    async def _main_loop(self) -> None:
        mono = self.clock.monotonic
        watchdog = self.notifier.watchdog_interval()
        next_watchdog = mono()
        next_reap = mono() + REAP_INTERVAL
        next_prune = mono() + 60.0  # first prune shortly after start, off the start-up path
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                try:
                    await self.reload()
                except ConfigError:
                    pass  # already logged by reload(); the running configuration stays
            now = mono()
            if watchdog is not None and now >= next_watchdog:
                self.notifier.watchdog()
                next_watchdog = now + watchdog / 2
            if now >= next_reap:
                reap_orphans()
                next_reap = now + REAP_INTERVAL
            if now >= next_prune:
                self._prune()
                next_prune = now + PRUNE_INTERVAL
            due = [next_reap, next_prune] + ([next_watchdog] if watchdog is not None else [])
            wait = min(max(0.0, min(due) - mono()), HOUSEKEEPING_CAP)
            await _wait_any((self._stop, self._reload), wait)

    def _prune(self) -> None:
        cfg = self.config.daemon
        self.store.prune(cfg.keep_runs, cfg.keep_days, self.clock.now().timestamp())

    async def reload(self) -> dict[str, list[str]]:
        """Re-read the file; an invalid one is rejected whole and the running config stays."""
        self.notifier.reloading()
        started = time.perf_counter()
        try:
            config = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration:\n%s", exc.message)
            self.notifier.ready(self._status_line())
            raise
        old = self.config.daemon
        for key in ("socket", "database", "socket_mode", "socket_group"):
            if getattr(old, key) != getattr(config.daemon, key):
                log.warning("reload: [daemon] %s changed; it takes effect at the next restart", key)
        self.config = config
        self.tz = ZoneInfo(config.daemon.timezone)
        diff = self.engine.apply_config(config)
        log.info("reloaded %s in %.0f ms: %d added, %d removed, %d changed", self.config_path,
                 (time.perf_counter() - started) * 1000, len(diff["added"]),
                 len(diff["removed"]), len(diff["changed"]))
        self.bus.publish(ConfigReloaded(diff))
        self.notifier.ready(self._status_line())
        return diff

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        engine = getattr(self, "engine", None)
        try:
            if engine is not None:
                grace = self.config.daemon.shutdown_grace
                graceful = asyncio.ensure_future(engine.shutdown(grace))
                hard = asyncio.ensure_future(self._hard_stop.wait())
                await asyncio.wait([graceful, hard], return_when=asyncio.FIRST_COMPLETED)
                if not graceful.done():
                    await engine.kill_all("the daemon was stopped twice: killed")
                    await graceful
                hard.cancel()
        finally:
            self.bus.close()
            if self._runner is not None:
                await self._runner.cleanup()
            if self._runner is not None:  # only a socket we bound is ours to remove
                Path(self.config.daemon.socket).unlink(missing_ok=True)
            store = getattr(self, "store", None)
            if store is not None:
                await asyncio.to_thread(store.close)
            self.notifier.close()
            log.info("cronkeeper stopped")


async def _socket_alive(path: Path) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2.0)
    except (TimeoutError, OSError):
        return False
    writer.close()
    return True


async def _wait_any(events: tuple[asyncio.Event, ...], seconds: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def run_daemon(config_path: str | Path) -> None:
    """``cronkeeper daemon``: run in the foreground until SIGTERM/SIGINT."""
    daemon = Daemon(config_path)  # a ConfigError here is reported by the CLI (exit 2)
    asyncio.run(daemon.run())


__all__ = ["Daemon", "run_daemon"]

"""The systemd notification protocol (sd_notify(3)), without libsystemd.

``Notifier`` talks to the socket systemd names in ``$NOTIFY_SOCKET`` for ``Type=notify``
services. Without that variable (a foreground ``make run``, tests, another supervisor) every
method is a no-op, so the daemon calls it unconditionally. A failed send never raises: a
notification is advice to the service manager, and losing one must not take the scheduler
down with it (systemd's own ``sd_notify`` behaves the same way).

Message contract used by the daemon:

- ``ready()`` once the API socket is bound and the scheduler is running (STYLE 10), and again
  after each reload;
- ``reloading()`` when a reload starts, ``stopping()`` when shutdown starts;
- ``status(text)`` for the one-line summary ``systemctl status`` shows;
- ``watchdog()`` every ``watchdog_interval() / 2`` seconds while the event loop is healthy.

``child_environment`` removes the variables that describe the daemon's own relationship with
systemd, so that a task cannot impersonate the daemon or misread where its output goes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["CHILD_ENV_STRIP", "Notifier", "child_environment"]

log = logging.getLogger(__name__)

#: Variables systemd sets for the daemon that must not reach task processes.
CHILD_ENV_STRIP: frozenset[str] = frozenset(
    {
        # A task that finds NOTIFY_SOCKET could send READY=1/STOPPING=1/WATCHDOG=1 in our
        # name (NotifyAccess=main rejects it, but a tool that sees the variable still tries,
        # and with NotifyAccess=all it would succeed).
        "NOTIFY_SOCKET",
        # The watchdog belongs to the daemon: a long-running task that pings it would keep a
        # hung scheduler alive.
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        # Socket activation fds are the daemon's; a child that honours LISTEN_FDS would try to
        # use fds it does not have (LISTEN_PID would not match anyway).
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        # A task's stdout/stderr is a pipe to the daemon, not the journal stream this names;
        # a program trusting it would write journald priority prefixes into the captured
        # output (or, worse, log to the journal directly and leave the output empty).
        "JOURNAL_STREAM",
        # The PID systemd executed, i.e. the daemon; it is false for every child.
        "SYSTEMD_EXEC_PID",
    }
)
# INVOCATION_ID is deliberately kept: tasks run in the service's cgroup as part of the same
# invocation, so the value is true for them and lets a task tag its own logs with it.
# RUNTIME_DIRECTORY, STATE_DIRECTORY and CREDENTIALS_DIRECTORY are kept too: tasks may use
# those directories under the sandbox.


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """Return a copy of ``env`` without the systemd variables in ``CHILD_ENV_STRIP``.

    Used to build every task's environment from the daemon's own.
    """
    return {key: value for key, value in env.items() if key not in CHILD_ENV_STRIP}


def _socket_address(raw: str) -> str | bytes | None:
    """Translate ``$NOTIFY_SOCKET`` into an ``AF_UNIX`` address, or None if unsupported.

    ``@name`` is a Linux abstract socket: the leading ``@`` stands for a NUL byte.
    """
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # systemd >= 254 may also hand out "vsock:CID:PORT" (VMs); a host daemon never sees it,
    # so it is reported instead of being half-supported.
    return None


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; does nothing when it is unset.

    ``env`` defaults to ``os.environ``; tests pass their own mapping. The socket is opened
    once, with ``SOCK_CLOEXEC`` so task processes never inherit it.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env
        self._sock: socket.socket | None = None
        self._address: str | bytes | None = None
        raw = self._env.get("NOTIFY_SOCKET", "")
        if not raw:
            return
        address = _socket_address(raw)
        if address is None:
            log.debug("sd_notify: unsupported NOTIFY_SOCKET %r, notifications disabled", raw)
            return
        try:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        except OSError as exc:
            log.debug("sd_notify: cannot create socket: %s", exc)
            return
        self._address = address

    @property
    def enabled(self) -> bool:
        """True when a notification socket is configured and usable."""
        return self._sock is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments as one datagram; True if it was sent.

        A value must not contain a newline (the protocol is newline-separated); ``status``
        flattens its text for that reason.
        """
        if self._sock is None or self._address is None or not assignments:
            return False
        message = "\n".join(assignments).encode("utf-8", "replace")
        try:
            self._sock.sendto(message, self._address)
        except OSError as exc:
            # Typical causes: systemd restarted and the socket path is gone, or the unit has
            # NotifyAccess=none. Neither is a reason to stop scheduling.
            log.debug("sd_notify: sending %r failed: %s", assignments, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up (or a reload) has finished."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", _status_line(status))

    def status(self, text: str) -> bool:
        """``STATUS=...``: the one-line state shown by ``systemctl status``."""
        return self.notify(_status_line(text))

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC``; send ``ready()`` when the reload is done.

        systemd >= 253 requires ``MONOTONIC_USEC`` (CLOCK_MONOTONIC, microseconds) next to
        ``RELOADING=1`` for ``Type=notify-reload`` so it can tell this reload from an older
        one; older versions and ``Type=notify`` ignore the extra field.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown has begun (sent from the daemon's ``finally``)."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the keep-alive ping for ``WatchdogSec=``."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """The watchdog timeout in seconds, or None when no watchdog is expected from us.

        Read from ``$WATCHDOG_USEC``; ignored when ``$WATCHDOG_PID`` names another process
        (the variable was inherited, the watchdog is not ours), as sd_watchdog_enabled(3)
        does. Ping at half this interval, as systemd recommends.
        """
        raw_usec = self._env.get("WATCHDOG_USEC", "")
        if not raw_usec:
            return None
        raw_pid = self._env.get("WATCHDOG_PID", "")
        if raw_pid:
            try:
                if int(raw_pid) != os.getpid():
                    return None
            except ValueError:
                log.debug("sd_notify: ignoring malformed WATCHDOG_PID=%r", raw_pid)
                return None
        try:
            usec = int(raw_usec)
        except ValueError:
            log.debug("sd_notify: ignoring malformed WATCHDOG_USEC=%r", raw_usec)
            return None
        if usec <= 0:
            return None
        return usec / 1_000_000

    def close(self) -> None:
        """Close the socket; later calls become no-ops."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _status_line(text: str) -> str:
    # A newline would start a new assignment in the datagram; keep STATUS one line.
    return "STATUS=" + " ".join(text.splitlines())

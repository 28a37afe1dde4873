"""Shared helpers for the built-in handlers: parameter checking and one HTTP POST.

Not a handler module itself (the leading underscore says so). The built-ins import it as a
sibling, which works because the runner puts ``handlers_path`` on ``sys.path``; copy it
along with them when you copy the built-ins elsewhere.

Every check raises ``ValueError`` whose message starts with the handler's name and names the
parameter, e.g. ``cleanup_files: 'path' is required``; the runner turns it into a failed
run with that message.
"""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cronkeeper import __version__

__all__ = [
    "HttpAnswer",
    "Params",
    "http_request",
    "json_body",
    "run_context",
    "summary_line",
]

_MISSING = object()

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# Keys the daemon itself adds to a handler's params: accepted by every handler so that any of
# them can be chained with on_failure/on_success.
_DAEMON_KEYS = frozenset({"upstream"})


class Params:
    """Typed access to a handler's params dict that rejects what it does not know.

    Construct with the handler name, the dict and the allowed keys; ``Params`` raises at once
    for unknown keys (listing the allowed ones), then each getter checks one key's type.
    """

    def __init__(self, handler: str, params: Mapping[str, Any] | None, allowed: set[str]) -> None:
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ValueError(f"{handler}: params must be a table/object, not {type(params).__name__}")
        self.handler = handler
        self._params = params
        unknown = sorted(set(params) - allowed - _DAEMON_KEYS)
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            choices = ", ".join(sorted(allowed))
            raise ValueError(f"{handler}: unknown parameter {names}; allowed: {choices}")

    def error(self, key: str, message: str) -> ValueError:
        """A ValueError in the house format, for checks the getters do not cover."""
        return ValueError(f"{self.handler}: {key!r} {message}")

    def _get(self, key: str, default: Any) -> Any:
        value = self._params.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise ValueError(f"{self.handler}: {key!r} is required")
            return default
        return value

    def string(self, key: str, default: Any = _MISSING, *, empty: bool = False) -> Any:
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {type(value).__name__}")
        if not empty and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        # Only real booleans: "false" as a string is truthy and would invert the intent.
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {value!r}")
        return value

    def number(self, key: str, default: Any = _MISSING, *, minimum: float = 0.0) -> Any:
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        # bool is an int subclass; `older_than_days = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {value!r}")
        if value < minimum:
            raise self.error(key, f"must be at least {minimum:g}, not {value!r}")
        return float(value)

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int, maximum: int) -> Any:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {value!r}")
        if not minimum <= value <= maximum:
            raise self.error(key, f"must be between {minimum} and {maximum}, not {value}")
        return value

    def duration(self, key: str, default: float) -> float:
        """Seconds as a positive number or a string such as "10s", "1m30s" (units s m h d w)."""
        value = self._get(key, default)
        if isinstance(value, str):
            text = value.strip().replace(" ", "")
            if text and _DURATION_RE.sub("", text) == "":
                seconds = sum(
                    float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(text)
                )
            else:
                raise self.error(key, f"must be a number of seconds or a duration like '10s', not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number of seconds or a duration like '10s', not {value!r}")
        else:
            seconds = float(value)
        if seconds <= 0:
            raise self.error(key, f"must be greater than zero, not {value!r}")
        return seconds

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    def string_list(self, key: str, default: Any = _MISSING) -> list[str]:
        """A string or a non-empty list of strings, always returned as a list."""
        value = self._get(key, default)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise self.error(key, "must be a string or a non-empty list of strings")
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise self.error(key, f"must contain only non-empty strings, not {item!r}")
        return list(items)

    def string_map(self, key: str) -> dict[str, str]:
        value = self._get(key, {})
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.error(key, "must be a table of string values")
        return dict(value)

    def url(self, key: str) -> str:
        value = str(self.string(key))
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise self.error(key, f"must be an http:// or https:// URL, not {value!r}")
        return value

    def upstream(self) -> dict[str, Any] | None:
        """The upstream run object of an on_failure/on_success run, or None."""
        value = self._params.get("upstream")
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.error("upstream", "must be a run object")
        return dict(value)


def run_context(upstream: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a notification is about: the upstream run if there is one, else this run.

    Falls back to the ``CRONKEEPER_*`` environment the daemon gives every run, so a
    notification handler run by hand still says which task it is.
    """
    env = os.environ
    if upstream is not None:
        return {
            "task": upstream.get("task") or env.get("CRONKEEPER_UPSTREAM_TASK"),
            "run_id": upstream.get("id") or _int_or_none(env.get("CRONKEEPER_UPSTREAM_RUN_ID")),
            "status": upstream.get("status") or env.get("CRONKEEPER_UPSTREAM_STATUS"),
        }
    return {
        "task": env.get("CRONKEEPER_UPSTREAM_TASK") or env.get("CRONKEEPER_TASK"),
        "run_id": _int_or_none(
            env.get("CRONKEEPER_UPSTREAM_RUN_ID") or env.get("CRONKEEPER_RUN_ID")
        ),
        "status": env.get("CRONKEEPER_UPSTREAM_STATUS"),
    }


def summary_line(context: Mapping[str, Any], upstream: Mapping[str, Any] | None) -> str:
    """One human line: ``backup-db failed (exit 1) on host: <error>``."""
    task = context.get("task") or "(unknown task)"
    status = context.get("status") or "notification"
    text = f"{task} {status}"
    if upstream is not None:
        details = []
        if upstream.get("exit_code") is not None:
            details.append(f"exit {upstream['exit_code']}")
        if upstream.get("signal"):
            details.append(f"signal {upstream['signal']}")
        if upstream.get("duration_ms") is not None:
            details.append(f"{upstream['duration_ms'] / 1000:.1f}s")
        if details:
            text += f" ({', '.join(details)})"
    text += f" on {socket.gethostname()}"
    if upstream is not None and upstream.get("error"):
        text += f": {upstream['error']}"
    return text


def _int_or_none(value: str | None) -> int | str | None:
    if not value:
        return None
    return int(value) if value.isdigit() else value


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    reason: str
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would replay a redirected POST as a body-less GET; for a webhook or a ping that is
    # a silent misconfiguration, so the 3xx is reported as the answer instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_request(
    handler: str,
    url: str,
    *,
    body: bytes | None,
    content_type: str,
    headers: Mapping[str, str],
    timeout: float,
    method: str = "POST",
) -> HttpAnswer:
    """Send one request; return the answer if it is 2xx, else raise RuntimeError.

    The error names the handler, the URL and the HTTP status (plus the start of the body,
    which is where services explain themselves).
    """
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("User-Agent", f"cronkeeper/{__version__}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            answer = HttpAnswer(response.status, response.reason, response.read(65536))
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip()
        exc.close()
        suffix = f": {detail}" if detail else ""
        raise RuntimeError(
            f"{handler}: {url} answered HTTP {exc.code} {exc.reason}{suffix}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"{handler}: cannot reach {url}: {reason}") from exc
    if not 200 <= answer.status < 300:
        raise RuntimeError(f"{handler}: {url} answered HTTP {answer.status} {answer.reason}")
    return answer


def json_body(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; non-JSON values (should not occur) become strings."""
    return json.dumps(payload, separators=(",", ":"), default=str).encode()

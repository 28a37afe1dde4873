"""Built-in ``http_ping:ping``: healthchecks.io-style dead-man's-switch pings.

Why the module is ``http_ping`` and not ``http`` (so the handler is ``http_ping:ping``, not
``http:ping``): handler modules are imported from ``handlers_path``, which the runner puts
on ``sys.path``. A file ``handlers/http.py`` would then *be* the top-level module ``http``:

- with ``handlers_path`` in front of the standard library, it shadows the stdlib package,
  and the next ``import urllib.request`` anywhere in the child (this very handler,
  ``notify:webhook``, any user handler, or the runner itself) fails with
  "No module named 'http.client'; 'http' is not a package";
- with ``handlers_path`` behind the standard library, ``http:ping`` resolves to the stdlib
  package and fails with "module 'http' has no attribute 'ping'".

Either way ``http:ping`` cannot work without the runner special-casing module names, and the
same trap awaits any user handler named after a stdlib module (``email``, ``logging``,
``json``, ``test``...). A distinct name is the only choice that works with every runner and
every ``sys.path`` order, so the built-ins avoid every name in ``sys.stdlib_module_names``
(tests enforce it). The function keeps the intended name, ``ping``.

```toml
[tasks.backup-db]
on_success = ["ping-backup"]
on_failure = ["ping-backup"]

[tasks.ping-backup]
handler = "http_ping:ping"
params = { url = "https://hc-ping.com/<uuid>" }      # signal = "auto"
```
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from _handler_common import Params, http_request, run_context, summary_line

__all__ = ["ping"]

SIGNALS = ("auto", "start", "success", "fail")
# healthchecks.io's endpoints: the check URL itself means success, /start and /fail the rest.
_SUFFIX = {"start": "/start", "success": "", "fail": "/fail"}


def ping(params: dict[str, Any]) -> dict[str, Any]:
    """Ping a monitoring URL, healthchecks.io style.

    Params:
        url (str, required): the check's ping URL (http:// or https://).
        signal (str, default "auto"): "start" appends /start, "fail" appends /fail,
            "success" pings the URL itself; "auto" means "fail" when the upstream run (this
            task being an on_failure/on_success target) did not succeed, else "success".
        timeout (seconds or duration string, default 10).

    The request is a POST whose body is a one-line summary of the upstream run (healthchecks
    shows it in the check's log). A non-2xx answer fails the run with the status.
    Returns ``{"url", "status_code", "signal"}`` with the URL actually requested.
    """
    p = Params("ping", params, {"url", "signal", "timeout"})
    url = p.url("url")
    signal = p.choice("signal", "auto", SIGNALS)
    timeout = p.duration("timeout", 10.0)
    upstream = p.upstream()
    context = run_context(upstream)
    if signal == "auto":
        status = context.get("status")
        # No upstream status at all (run by hand or on a schedule as a heartbeat): the task
        # running is itself the good news.
        signal = "success" if status in (None, "succeeded") else "fail"

    target = _with_suffix(url, _SUFFIX[signal])
    body = summary_line(context, upstream).encode() if upstream is not None else b""
    answer = http_request(
        "ping", target, body=body, content_type="text/plain; charset=utf-8",
        headers={}, timeout=timeout,
    )
    return {"url": target, "status_code": answer.status, "signal": signal}


def _with_suffix(url: str, suffix: str) -> str:
    """Append ``suffix`` to the URL's path, before any query string."""
    if not suffix:
        return url
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))

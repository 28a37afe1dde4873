"""Built-in notification handlers: ``notify:webhook`` and ``notify:email``.

Meant as ``on_failure`` / ``on_success`` targets. The run they report on is the *upstream*
run, which the daemon passes as ``params["upstream"]`` (a SPEC run object) and as
``CRONKEEPER_UPSTREAM_TASK/RUN_ID/STATUS`` in the environment. Run by hand, they report on
their own task instead, which is handy to test a webhook or a mail relay.

```toml
[tasks.alert-ops]
handler = "notify:webhook"
params = { url = "https://hooks.example.com/cron", headers = { Authorization = "Bearer ..." } }

[tasks.mail-ops]
handler = "notify:email"
params = { to = ["ops@example.com"], smtp_host = "mail.example.com", starttls = true }
```
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from _handler_common import Params, http_request, json_body, run_context, summary_line

__all__ = ["email", "webhook"]

DEFAULT_SUBJECT = "[cronkeeper] {task} {status}"
SUBJECT_FIELDS = ("task", "status", "run_id", "host", "exit_code")


def webhook(params: dict[str, Any]) -> dict[str, Any]:
    """POST a JSON description of the (upstream) run to ``url``.

    Params:
        url (str, required): http:// or https:// endpoint.
        timeout (seconds or duration string, default 10): for connecting and for the answer.
        headers (table of strings, optional): extra request headers (authentication).

    Body: ``{"task", "run_id", "status", "upstream", "host", "text"}`` where ``upstream`` is the
    full upstream run object (or null) and ``text`` a one-line summary, which chat services
    with Slack-compatible incoming webhooks display as the message. Any answer other than
    2xx (redirects are not followed) fails the run with the HTTP status in the error.
    Returns ``{"url", "status_code"}``.
    """
    p = Params("webhook", params, {"url", "timeout", "headers"})
    url = p.url("url")
    timeout = p.duration("timeout", 10.0)
    headers = p.string_map("headers")
    upstream = p.upstream()
    context = run_context(upstream)
    payload = {
        **context,
        "upstream": upstream,
        "host": socket.gethostname(),
        "text": "cronkeeper: " + summary_line(context, upstream),
    }
    answer = http_request(
        "webhook",
        url,
        body=json_body(payload),
        content_type="application/json",
        headers=headers,
        timeout=timeout,
    )
    return {"url": url, "status_code": answer.status}


def email(params: dict[str, Any]) -> dict[str, Any]:
    """Send a plain-text mail about the (upstream) run through an SMTP server.

    Params:
        to (str or list of str, required): recipients.
        from (str, default "cronkeeper@<host's FQDN>"): sender address.
        subject (str, default "[cronkeeper] {task} {status}"): a template with the fields
            {task}, {status}, {run_id}, {host}, {exit_code}.
        smtp_host (str, default "localhost"), smtp_port (int, default 25, or 465 with ssl).
        starttls (bool, default false): upgrade the connection with STARTTLS (port 587).
        ssl (bool, default false): implicit TLS from the first byte (port 465).
        username, password (str, optional, together): SMTP AUTH after TLS.
        timeout (seconds or duration string, default 30).

    TLS uses the system's CA store and verifies the host name. The body summarises the run
    (task, status, exit code, error, times, duration) and says how to read its output.
    Returns ``{"to", "subject", "smtp_host"}``.
    """
    p = Params(
        "email",
        params,
        {
            "to", "from", "subject", "smtp_host", "smtp_port", "starttls", "ssl",
            "username", "password", "timeout",
        },
    )
    recipients = p.string_list("to")
    sender = str(p.string("from", f"cronkeeper@{socket.getfqdn()}"))
    template = str(p.string("subject", DEFAULT_SUBJECT))
    host = str(p.string("smtp_host", "localhost"))
    use_ssl = p.boolean("ssl", False)
    starttls = p.boolean("starttls", False)
    if use_ssl and starttls:
        raise p.error("starttls", "cannot be combined with 'ssl' (pick one kind of TLS)")
    port = int(p.integer("smtp_port", 465 if use_ssl else 25, minimum=1, maximum=65535))
    username = p.string("username", None)
    password = p.string("password", None, empty=True)
    if (username is None) != (password is None):
        raise p.error("username", "and 'password' must be given together")
    timeout = p.duration("timeout", 30.0)
    upstream = p.upstream()
    context = run_context(upstream)

    fields = {
        "task": context.get("task") or "",
        "status": context.get("status") or "notification",
        "run_id": "" if context.get("run_id") is None else str(context["run_id"]),
        "host": socket.gethostname(),
        "exit_code": "" if not upstream or upstream.get("exit_code") is None
        else str(upstream["exit_code"]),
    }
    try:
        subject = template.format_map(fields)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise p.error(
            "subject", f"is not a valid template ({exc}); fields: {', '.join(SUBJECT_FIELDS)}"
        ) from None

    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=socket.getfqdn())
    message.set_content(_mail_body(context, upstream))

    tls = ssl.create_default_context()
    try:
        smtp: smtplib.SMTP
        if use_ssl:
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=tls)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            if starttls:
                smtp.starttls(context=tls)
            if username is not None:
                smtp.login(str(username), str(password))
            smtp.send_message(message, from_addr=sender, to_addrs=recipients)
    except (smtplib.SMTPException, OSError) as exc:
        raise RuntimeError(f"email: sending through {host}:{port} failed: {exc}") from exc
    return {"to": recipients, "subject": subject, "smtp_host": host}


def _mail_body(context: Mapping[str, Any], upstream: Mapping[str, Any] | None) -> str:
    lines = [summary_line(context, upstream), ""]
    if upstream is not None:
        for label, key in (
            ("Task", "task"),
            ("Run", "id"),
            ("Trigger", "trigger"),
            ("Attempt", "attempt"),
            ("Status", "status"),
            ("Exit code", "exit_code"),
            ("Signal", "signal"),
            ("Error", "error"),
            ("Scheduled for", "scheduled_for"),
            ("Started", "started_at"),
            ("Finished", "finished_at"),
        ):
            if upstream.get(key) is not None:
                lines.append(f"{label + ':':<15}{upstream[key]}")
        if upstream.get("duration_ms") is not None:
            lines.append(f"{'Duration:':<15}{upstream['duration_ms'] / 1000:.1f}s")
        if upstream.get("output_bytes") is not None:
            truncated = " (truncated)" if upstream.get("output_truncated") else ""
            lines.append(f"{'Output:':<15}{upstream['output_bytes']} bytes{truncated}")
    lines.append(f"{'Host:':<15}{socket.gethostname()}")
    if context.get("run_id") is not None:
        lines += ["", f"Read the output with:  cronkeeper logs {context['run_id']}"]
    return "\n".join(lines) + "\n"

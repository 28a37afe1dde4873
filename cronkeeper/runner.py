"""Run one Python handler in a fresh child process.

``python -m cronkeeper.runner MODULE:FUNC HANDLERS_PATH`` reads the params as JSON on stdin
(empty = ``{}``), imports MODULE with HANDLERS_PATH first on ``sys.path``, calls
``FUNC(params)`` (an ``async def`` handler, or any returned awaitable, runs under
``asyncio.run``) and writes one JSON message to the file descriptor named by
``$CRONKEEPER_RESULT_FD`` (stdout when unset, for trying a handler by hand):

* ``{"ok": true, "result": <value>}``, exit 0;
* ``{"ok": false, "error": "ExcType: message", "result": null}``, exit 1, when the handler
  raised (its traceback goes to stderr, i.e. into the run's output);
* ``{"ok": false, "error": "handler returned success=false: <its error/message>",
  "result": <the dict>}``, exit 1, for a returned dict with ``"success": false``;
* ``{"ok": false, "error": "<which module/function is missing, from where>"}``, exit 2,
  when the handler cannot be found.

A result that is not JSON-serialisable is stored as its ``repr()``, with a note on stderr.
This module starts for every handler run: it imports only what it needs, when it needs it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

# typing costs ~4 ms at every handler start; the annotations never need it at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # the handler ran and failed
EXIT_USAGE = 2  # the handler could not be found or called

_MISSING = object()


def _report(message: dict[str, Any]) -> None:
    try:
        data = json.dumps(message, allow_nan=False)
    except (TypeError, ValueError):
        data = json.dumps({**message, "result": repr(message.get("result"))})
    fd_text = os.environ.get("CRONKEEPER_RESULT_FD", "")
    if not fd_text.isdigit():
        sys.stdout.write(data + "\n")
        return
    fd = int(fd_text)
    view = memoryview(data.encode())
    while view:
        view = view[os.write(fd, view):]
    os.close(fd)


def _fail(error: str, code: int) -> int:
    sys.stderr.write(f"cronkeeper.runner: {error}\n")
    _report({"ok": False, "error": error, "result": None})
    return code


def _summary(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _crash(exc: BaseException, prefix: str = "") -> int:
    import traceback

    # Drop the runner's own frames: the traceback starts in the handler's code.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    sys.stdout.flush()
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
    _report({"ok": False, "error": prefix + _summary(exc), "result": None})
    return EXIT_FAILED


async def _await(value: Any) -> Any:
    return await value


def main(argv: list[str] | None = None) -> int:
    """Run the handler named on the command line; returns the process exit status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or ":" not in args[0]:
        return _fail("usage: python -m cronkeeper.runner MODULE:FUNC HANDLERS_PATH", EXIT_USAGE)
    target, handlers_path = args[0], os.path.abspath(args[1])
    module_name, _, func_name = target.partition(":")
    # Line-buffered, so the handler's prints stay in order with a traceback on stderr.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.path.insert(0, handlers_path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            return _fail(f"handler module {module_name!r} not found in handlers path "
                         f"{handlers_path}", EXIT_USAGE)
        return _crash(exc, f"importing handler module {module_name!r} failed: ")
    except Exception as exc:  # the module's own code raised while importing
        return _crash(exc, f"importing handler module {module_name!r} failed: ")
    func: Any = module
    for part in func_name.split("."):
        func = getattr(func, part, _MISSING)
        if func is _MISSING:
            break
    if func is _MISSING or not callable(func):
        what = "no function" if func is _MISSING else "a non-callable"
        return _fail(f"handler module {module_name!r} ({getattr(module, '__file__', '?')}) has "
                     f"{what} {func_name!r}; handlers path {handlers_path}", EXIT_USAGE)
    try:
        raw = sys.stdin.buffer.read() if sys.stdin is not None else b""
        params = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        return _fail(f"the params on stdin are not valid JSON: {exc}", EXIT_USAGE)
    try:
        value = func(params)
        if hasattr(value, "__await__"):
            import asyncio

            value = asyncio.run(_await(value))
    except Exception as exc:
        return _crash(exc)
    sys.stdout.flush()
    if isinstance(value, dict) and value.get("success") is False:
        detail = value.get("error") or value.get("message")
        error = "handler returned success=false" + (f": {detail}" if detail else "")
        sys.stderr.write(f"cronkeeper.runner: {error}\n")
        _report({"ok": False, "error": error, "result": value})
        return EXIT_FAILED
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        sys.stderr.write(f"cronkeeper.runner: the result of {target} is not JSON-serialisable "
                         f"({type(value).__name__}); its repr() is stored instead\n")
        value = repr(value)
    _report({"ok": True, "result": value})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

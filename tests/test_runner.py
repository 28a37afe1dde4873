"""The handler runner, driven the way the daemon drives it: a ProcessRun of
``python -m cronkeeper.runner MODULE:FUNC HANDLERS_PATH`` with params on stdin and the result
on the ``$CRONKEEPER_RESULT_FD`` pipe. Handler modules are written to ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cronkeeper.executor import ProcessOutcome, ProcessRun, ProcessSpec

DEADLINE = 60.0
_run_ids = itertools.count(os.getpid() * 1000 + 500)

HANDLERS = '''
import asyncio

def greet(params):
    print("hello", params["name"])
    return {"greeting": "hi " + params["name"], "n": params.get("n", 0) + 1}

async def slow_double(params):
    await asyncio.sleep(0)
    return params["x"] * 2

def nothing(params):
    return None

def echo_params(params):
    return params

def boom(params):
    print("about to fail")
    raise ValueError("bad thing")

def refuse(params):
    return {"success": False, "error": "disk full", "freed": 0}

def refuse_quietly(params):
    return {"success": False}

def refuse_oddly(params):
    return {"success": False, "when": object()}

def odd(params):
    return {1, 2}

class Tools:
    @staticmethod
    def ping(params):
        return "pong"

not_callable = 42
'''


@pytest.fixture
def handlers(tmp_path: Path) -> Path:
    (tmp_path / "jobs.py").write_text(textwrap.dedent(HANDLERS))
    (tmp_path / "broken.py").write_text("import no_such_dependency_ck\n")
    return tmp_path


async def call(handlers: Path, target: str, params: Any = None,
               stdin: bytes | None = None) -> ProcessOutcome:
    run_id = next(_run_ids)
    env = {**os.environ, "CRONKEEPER_RUN_ID": str(run_id)}
    spec = ProcessSpec(
        argv=(sys.executable, "-m", "cronkeeper.runner", target, str(handlers)),
        cwd=str(handlers), env=env, run_id=run_id, kill_grace=5.0, output_limit=1 << 20,
        stdin=stdin if stdin is not None else json.dumps(params or {}).encode(),
        want_result=True)
    proc = ProcessRun(spec)
    await proc.start()
    return await asyncio.wait_for(proc.wait(), DEADLINE)


async def test_sync_handler(handlers: Path) -> None:
    out = await call(handlers, "jobs:greet", {"name": "ada", "n": 1})
    assert out.ok and out.exit_code == 0 and out.error is None
    assert out.result == {"greeting": "hi ada", "n": 2}
    assert out.output == b"hello ada\n"


async def test_async_handler(handlers: Path) -> None:
    out = await call(handlers, "jobs:slow_double", {"x": 21})
    assert out.ok and out.result == 42


async def test_none_result_and_empty_stdin(handlers: Path) -> None:
    out = await call(handlers, "jobs:nothing", stdin=b"")
    assert out.ok and out.result is None
    out = await call(handlers, "jobs:echo_params", stdin=b"")
    assert out.ok and out.result == {}


async def test_dotted_function(handlers: Path) -> None:
    out = await call(handlers, "jobs:Tools.ping")
    assert out.ok and out.result == "pong"


async def test_exception_fails_with_traceback(handlers: Path) -> None:
    out = await call(handlers, "jobs:boom")
    assert not out.ok and out.exit_code == 1
    assert out.error == "ValueError: bad thing"
    text = out.output.decode()
    assert text.startswith("about to fail\nTraceback (most recent call last):\n")
    assert "jobs.py" in text and 'raise ValueError("bad thing")' in text
    assert text.rstrip().endswith("ValueError: bad thing")
    assert "cronkeeper/runner.py" not in text  # the traceback starts in the handler


async def test_success_false_fails(handlers: Path) -> None:
    out = await call(handlers, "jobs:refuse")
    assert not out.ok and out.exit_code == 1
    assert out.error == "handler returned success=false: disk full"
    assert out.result == {"success": False, "error": "disk full", "freed": 0}
    out = await call(handlers, "jobs:refuse_quietly")
    assert not out.ok and out.error == "handler returned success=false"
    out = await call(handlers, "jobs:refuse_oddly")  # still a failure, stored as its repr
    assert not out.ok and out.exit_code == 1 and isinstance(out.result, str)


async def test_non_json_result_is_stored_as_repr(handlers: Path) -> None:
    out = await call(handlers, "jobs:odd")
    assert out.ok and out.result == "{1, 2}"
    assert b"not JSON-serialisable (set)" in out.output


async def test_missing_module(handlers: Path) -> None:
    out = await call(handlers, "nosuchmod:run")
    assert not out.ok and out.exit_code == 2
    assert out.error == f"handler module 'nosuchmod' not found in handlers path {handlers}"
    assert out.error.encode() in out.output


@pytest.mark.parametrize("func", ["missing", "not_callable", "Tools.nope"])
async def test_missing_function(handlers: Path, func: str) -> None:
    out = await call(handlers, f"jobs:{func}")
    assert not out.ok and out.exit_code == 2
    assert out.error is not None
    assert "'jobs'" in out.error and repr(func) in out.error and str(handlers) in out.error


async def test_module_that_fails_to_import(handlers: Path) -> None:
    out = await call(handlers, "broken:run")
    assert not out.ok and out.exit_code == 1
    assert out.error == ("importing handler module 'broken' failed: "
                         "ModuleNotFoundError: No module named 'no_such_dependency_ck'")
    assert b"Traceback" in out.output


async def test_bad_params_and_usage(handlers: Path) -> None:
    out = await call(handlers, "jobs:greet", stdin=b"{not json")
    assert not out.ok and out.exit_code == 2 and "not valid JSON" in (out.error or "")
    out = await call(handlers, "jobs-without-colon")
    assert not out.ok and out.exit_code == 2 and "usage" in (out.error or "")

"""The OpenAPI 3 description of the socket API, served at ``/openapi.json``.

A test walks the aiohttp router and fails if a route is missing here, so the two stay in step.
"""

from __future__ import annotations

from typing import Any

_NULLABLE_STR = {"type": "string", "nullable": True}
_NULLABLE_INT = {"type": "integer", "nullable": True}
_TIME = {"type": "string", "format": "date-time", "nullable": True}

RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "task": {"type": "string"},
        "trigger": {"type": "string", "enum": ["schedule", "manual", "retry", "catch-up",
                                               "reboot", "on_failure", "on_success"]},
        "attempt": {"type": "integer"},
        "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed",
                                              "timed_out", "skipped", "interrupted",
                                              "cancelled"]},
        "scheduled_for": _TIME, "queued_at": _TIME, "started_at": _TIME, "finished_at": _TIME,
        "duration_ms": _NULLABLE_INT, "exit_code": _NULLABLE_INT, "signal": _NULLABLE_INT,
        "error": _NULLABLE_STR, "result": {"nullable": True},
        "params": {"type": "object", "nullable": True},
        "output_bytes": {"type": "integer"}, "output_truncated": {"type": "boolean"},
        "pid": _NULLABLE_INT,
    },
    "required": ["id", "task", "trigger", "attempt", "status"],
}

TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"}, "description": {"type": "string"},
        "schedule": _NULLABLE_STR, "schedule_text": {"type": "string"},
        "timezone": {"type": "string"}, "kind": {"type": "string", "enum": ["command", "handler"]},
        "command": {"nullable": True}, "handler": _NULLABLE_STR, "params": {"type": "object"},
        "enabled": {"type": "boolean"},
        "state": {"type": "string", "enum": ["active", "paused", "running", "retry-scheduled",
                                             "completed", "disabled"]},
        "paused": {"type": "boolean"}, "next_run": _TIME,
        "last_run": {"allOf": [{"$ref": "#/components/schemas/Run"}], "nullable": True},
        "active_runs": {"type": "array", "items": {"type": "integer"}},
        "retry_count": {"type": "integer"}, "overlap": {"type": "string"},
        "timeout": {"type": "number"}, "retries": {"type": "integer"},
    },
    "required": ["name", "state", "kind"],
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = {"$ref": "#/components/responses/Error"}
_TASK_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "integer"}}


def _task_action(summary: str) -> dict[str, Any]:
    return {"post": {"summary": summary, "parameters": [_TASK_NAME],
                     "responses": {"200": _json(_ref("Task"), "the task"), "404": _ERR}}}


def openapi_document(version: str) -> dict[str, Any]:
    status_schema = {"type": "object", "properties": {
        "version": {"type": "string"}, "pid": {"type": "integer"},
        "started_at": {"type": "string", "format": "date-time"}, "config": {"type": "string"},
        "tasks": {"type": "integer"}, "running": {"type": "integer"},
        "queued": {"type": "integer"}, "paused_all": {"type": "boolean"}}}
    reload_schema = {"type": "object", "properties": {
        k: {"type": "array", "items": {"type": "string"}} for k in ("added", "removed", "changed")}}
    paths: dict[str, Any] = {
        "/v1/status": {"get": {"summary": "Daemon status",
                               "responses": {"200": _json(status_schema, "status")}}},
        "/v1/tasks": {"get": {"summary": "All tasks", "responses": {"200": _json(
            {"type": "object", "properties": {"tasks": {"type": "array", "items": _ref("Task")}}},
            "tasks")}}},
        "/v1/tasks/{name}": {"get": {"summary": "One task", "parameters": [_TASK_NAME],
                                     "responses": {"200": _json(_ref("Task"), "the task"),
                                                   "404": _ERR}}},
        "/v1/tasks/{name}/run": {"post": {
            "summary": "Run a task now", "parameters": [_TASK_NAME],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"params": {"type": "object"}},
                "additionalProperties": False}}}},
            "responses": {"202": _json(_ref("Run"), "the new run"), "400": _ERR, "404": _ERR,
                          "409": _ERR}}},
        "/v1/tasks/{name}/pause": _task_action("Pause a task"),
        "/v1/tasks/{name}/resume": _task_action("Resume a task"),
        "/v1/tasks/{name}/reset-retries": _task_action("Clear a task's retry count"),
        "/v1/pause-all": {"post": {"summary": "Stop all scheduled fires",
                                   "responses": {"200": _json(status_schema, "status")}}},
        "/v1/resume-all": {"post": {"summary": "Resume scheduled fires",
                                    "responses": {"200": _json(status_schema, "status")}}},
        "/v1/runs": {"get": {
            "summary": "Run history, newest first, cursor paging",
            "parameters": [
                {"name": "task", "in": "query", "schema": {"type": "string"}},
                {"name": "status", "in": "query", "schema": RUN_SCHEMA["properties"]["status"]},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            ],
            "responses": {"200": _json({"type": "object", "properties": {
                "runs": {"type": "array", "items": _ref("Run")},
                "next": _NULLABLE_INT}}, "a page of runs"), "400": _ERR, "404": _ERR}}},
        "/v1/runs/{run_id}": {"get": {"summary": "One run", "parameters": [_RUN_ID],
                                      "responses": {"200": _json(_ref("Run"), "the run"),
                                                    "404": _ERR}}},
        "/v1/runs/{run_id}/output": {"get": {
            "summary": "Captured output; with follow=1 streams until the run ends",
            "parameters": [_RUN_ID, {"name": "follow", "in": "query",
                                     "schema": {"type": "integer", "enum": [0, 1]}}],
            "responses": {"200": {"description": "output",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "404": _ERR}}},
        "/v1/runs/{run_id}/cancel": {"post": {
            "summary": "Cancel a queued or running run", "parameters": [_RUN_ID],
            "responses": {"200": _json(_ref("Run"), "the run"), "404": _ERR, "409": _ERR}}},
        "/v1/reload": {"post": {"summary": "Re-read the configuration file", "responses": {
            "200": _json(reload_schema, "applied"),
            "422": _json({"type": "object", "properties": {
                "error": {"type": "string"}, "errors": {"type": "array"}}}, "rejected")}}},
        "/v1/events": {"get": {"summary": "Server-sent events: run.queued, run.started, "
                                          "run.finished, task.updated, config.reloaded",
                               "responses": {"200": {"description": "event stream", "content": {
                                   "text/event-stream": {"schema": {"type": "string"}}}}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3 document"}}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "cronkeeper", "version": version,
                 "description": "The cronkeeper daemon's API on its Unix socket."},
        "servers": [{"url": "http://localhost"}],
        "paths": paths,
        "components": {
            "schemas": {"Run": RUN_SCHEMA, "Task": TASK_SCHEMA},
            "responses": {"Error": _json({"type": "object", "properties": {
                "error": {"type": "string"}}, "required": ["error"]}, "error")},
        },
    }

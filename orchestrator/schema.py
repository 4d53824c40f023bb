"""The job file as a JSON Schema (draft 2020-12) for editors, built from the loader's key lists."""

from __future__ import annotations

from typing import Any

from orchestrator.loader import _DEFAULT_KEYS, _JOB_KEYS, _TOP_KEYS
from orchestrator.model import NAME_PATTERN

Schema = dict[str, Any]

NAME: Schema = {"type": "string", "pattern": f"^{NAME_PATTERN.pattern}$"}
# A list item or a variable's value: any scalar but null, read as written; no NUL (no
# command or variable can hold one). Patterns apply to strings only.
WORD: Schema = {"type": ["string", "number", "boolean"], "pattern": r"^[^\x00]*$"}
NAMES: Schema = {**WORD, "pattern": f"^{NAME_PATTERN.pattern}$"}
ENV_NAME = r"^[^=\x00]+$"
LARGEST = 1.7976931348623157e308  # YAML's .inf is a number too; no duration is infinite
# parse_duration: a number of seconds, or parts like 1h30m, 250ms.
DURATION_TEXT: Schema = {
    "type": "string",
    "pattern": r"^\s*(\+?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|(\d+(\.\d+)?(ms|s|m|h))+)\s*$",
}
DURATION: Schema = {
    "anyOf": [{"type": "number", "minimum": 0, "maximum": LARGEST}, DURATION_TEXT],
    "description": "250ms, 30s, 5m, 1h30m, or a number of seconds",
}
TIMEOUT: Schema = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": LARGEST},
        {"allOf": [DURATION_TEXT, {"pattern": "[1-9]"}]},  # more than zero
        {"type": "null"},
    ],
    "description": "250ms, 30s, 5m, 1h30m, or a number of seconds; null for no limit",
}
COMMAND: Schema = {
    "anyOf": [
        {"type": "string", "pattern": r"^[^\x00]*[^\s\x00][^\x00]*$"},
        {"type": "array", "items": WORD, "minItems": 1},
    ]
}
ENV: Schema = {
    "type": "object",
    "propertyNames": {"pattern": ENV_NAME},
    "additionalProperties": WORD,
    "description": "variables exported to the job, on top of the caller's environment",
}

# One entry per key of a job (and of defaults, which take the same keys but run/needs/matrix).
JOB_KEY_SCHEMAS: dict[str, Schema] = {
    "run": {**COMMAND, "description": "a string runs with /bin/sh -c (or shell:); a list is an argv"},
    "needs": {"type": "array", "items": WORD, "description": "jobs that must succeed first"},
    "resources": {
        "anyOf": [
            {"type": "array", "items": NAMES, "uniqueItems": True},
            {
                "type": "object",
                "propertyNames": NAME,
                "additionalProperties": {"type": "integer", "minimum": 1},
            },
        ],
        "description": "a list takes 1 unit of each; a mapping takes N",
    },
    "host_resources": {
        "type": "object",
        "additionalProperties": {"type": "integer", "minimum": 1},
        "description": "what one Dask worker must offer, e.g. {gpu: 1}",
    },
    "timeout": TIMEOUT,
    "retries": {"type": "integer", "minimum": 0},
    "retry_delay": DURATION,
    "env": ENV,
    "dotenv": {
        "type": "array",
        "items": {**WORD, "minLength": 1},
        "description": "KEY=VALUE files relative to the job file; a missing file is skipped",
    },
    "inputs": {
        "type": "array",
        "items": {**WORD, "minLength": 1},
        "uniqueItems": True,
        "description": "paths and globs (** recursive) relative to the job's cwd: what it reads; "
        "$NAME and ${NAME} are the job's env and matrix values, $$ is $",
    },
    "outputs": {
        "type": "array",
        "items": {**WORD, "minLength": 1},
        "uniqueItems": True,
        "description": "what the job makes: with outputs it is skipped while up to date; "
        "$NAME and ${NAME} are the job's env and matrix values, $$ is $",
    },
    "cwd": {"type": "string", "minLength": 1, "description": "relative to the job file's folder"},
    "allow_failure": {"type": "boolean"},
    "tags": {"type": "array", "items": NAMES},
    "description": {"type": "string"},
    "shell": {**COMMAND, "description": 'e.g. bash or "bash -eu"; the command follows -c'},
    "matrix": {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": ENV_NAME},
        "additionalProperties": {"type": "array", "items": WORD, "minItems": 1, "uniqueItems": True},
        "description": "expands to one job per combination, e.g. build[ARCH=arm64]",
    },
}


def _top_key_schemas() -> dict[str, Schema]:
    return {
        "version": {"const": 1},
        "env": ENV,
        "dotenv": JOB_KEY_SCHEMAS["dotenv"],
        "resources": {
            "type": "object",
            "propertyNames": NAME,
            "additionalProperties": {"type": "integer", "minimum": 1},
            "description": "named concurrency caps: at most N units in use at once",
        },
        "defaults": {"$ref": "#/$defs/defaults"},
        "jobs": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": NAME,
            "additionalProperties": {"$ref": "#/$defs/job"},
        },
    }


def job_file_schema() -> Schema:
    """The schema; a KeyError here means a loader key has no schema yet: add it above."""
    top = _top_key_schemas()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "orchestrate job file",
        "type": "object",
        "required": ["jobs"],
        "properties": {key: top[key] for key in _TOP_KEYS},
        "additionalProperties": False,
        "$defs": {
            "job": {
                "type": "object",
                "required": ["run"],
                "properties": {key: JOB_KEY_SCHEMAS[key] for key in _JOB_KEYS},
                "additionalProperties": False,
            },
            "defaults": {
                "type": "object",
                "properties": {key: JOB_KEY_SCHEMAS[key] for key in _DEFAULT_KEYS},
                "additionalProperties": False,
            },
        },
    }

"""Log lines as text (the default) or JSON lines (``FLOWGUARD_LOG_FORMAT=json``).

A JSON line has ``time`` (ISO 8601 UTC with ``Z``), ``level``, ``logger`` and ``message``,
then every field the call passed in ``extra=`` (a line about an execution carries
``execution_id``, ``workflow_id``, ``cluster`` and ``task_id``: see :func:`execution_fields`),
and ``exc`` with the traceback when there is one.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal

import orjson

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: The attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName",
}  # fmt: skip


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = record.created
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int(seconds % 1 * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str, log_format: LogFormat) -> None:
    """Root logging to stderr in the chosen format (the bridge and the API)."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler])


def faust_logging_config(level: str, log_format: LogFormat) -> dict[str, Any] | None:
    """The ``logging_config`` for Faust's worker: None keeps Faust's own (text) lines."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def execution_fields(
    execution_id: str | None, workflow_id: str | None, cluster: str | None, task_id: str | None
) -> dict[str, str | None]:
    """The ``extra=`` of a log line about an execution: the same four names everywhere."""
    return {
        "execution_id": execution_id,
        "workflow_id": workflow_id,
        "cluster": cluster,
        "task_id": task_id,
    }


def record_fields(record: Any) -> dict[str, str | None]:
    """:func:`execution_fields` of an execution record (``topics.execution.ExecutionRecord``)."""
    task = record.task
    return execution_fields(
        record.execution_id,
        record.workflow.id,
        task.cluster if task is not None else getattr(record.worker, "cluster", None),
        task.id if task is not None else None,
    )

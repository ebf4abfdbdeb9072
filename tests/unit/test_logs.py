"""flowguard/logs.py: JSON lines with the standard fields and whatever ``extra=`` gave."""

from __future__ import annotations

import json
import logging
import sys

from flowguard.logs import JsonFormatter, execution_fields, faust_logging_config


def test_a_json_line_has_time_level_logger_message_and_the_extra_fields() -> None:
    logger = logging.getLogger("flowguard.test")
    record = logger.makeRecord(
        "flowguard.test", logging.INFO, __file__, 1, "execution %s: %s", ("e1", "success"),
        None, extra=execution_fields("e1", "wf", "prod", "t1"),
    )  # fmt: skip
    record.created = 1_800_000_000.25
    line = json.loads(JsonFormatter().format(record))
    assert line == {
        "time": "2027-01-15T08:00:00.250Z", "level": "INFO", "logger": "flowguard.test",
        "message": "execution e1: success", "execution_id": "e1", "workflow_id": "wf",
        "cluster": "prod", "task_id": "t1",
    }  # fmt: skip


def test_a_json_line_carries_the_traceback_and_stays_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    text = JsonFormatter().format(record)
    assert "\n" not in text
    assert "ValueError: bad" in json.loads(text)["exc"]


def test_faust_keeps_its_own_text_lines_unless_json_is_asked() -> None:
    assert faust_logging_config("info", "text") is None
    config = faust_logging_config("info", "json")
    assert config is not None
    assert config["root"] == {"level": "INFO", "handlers": ["default"]}

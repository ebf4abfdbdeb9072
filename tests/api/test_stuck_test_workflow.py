"""Test Workflow knows the new triggers: a task.stuck or task.duplicate_start draft over a real
recorded stream fires where replay does, and says why it did not where it did not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.server import Served

pytestmark = pytest.mark.integration
STREAMS = Path(__file__).resolve().parents[2] / "tests" / "data" / "streams"
HOOK = {"type": "webhook", "url": "https://ops.example.com/hook"}


def _test(served: Served, trigger: dict[str, Any], stream: str) -> dict[str, Any]:
    draft = {"name": "New trigger", "trigger": trigger, "action": HOOK}
    with served.client("editor") as api:
        answer = api.post(
            "/api/test",
            json={"definition": draft, "events_jsonl": (STREAMS / f"{stream}.jsonl").read_text()},
        )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_a_stuck_draft_fires_on_the_prefetched_task(served: Served) -> None:
    result = _test(
        served, {"event": "task.stuck", "threshold_seconds": 2, "stage": "unstarted"},
        "stuck_prefetched",
    )  # fmt: skip
    (record,) = result["records"]
    assert record["task"]["id"] == "prefetched-add"
    assert record["trigger"]["event"] == "task.stuck"
    fired = [v for v in result["verdicts"] if v["fired"]]
    assert [v["event"] for v in fired] == ["task.stuck"]


def test_a_duplicate_start_draft_fires_on_the_redelivered_task(served: Served) -> None:
    result = _test(served, {"event": "task.duplicate_start"}, "worker_sigkill_redelivered")
    (record,) = result["records"]
    assert record["task"]["id"] == "redelivered-task"
    assert record["actions"][0]["status"] == "planned"

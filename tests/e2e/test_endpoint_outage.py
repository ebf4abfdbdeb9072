"""An endpoint down delays only its own deliveries (issue 15.7).

One webhook answers 503 to everything; another workflow's webhook and a retry workflow share
the worker. Failures for the dead endpoint come first, then failures for the others: those
are delivered and their retries sent at once, while the dead endpoint's deliveries retry
(bounded by ``FLOWGUARD_ACTIONS_MAX_TOTAL_SECONDS``, here 15 s instead of minutes) and then
settle ``failed`` with the reason. Nothing waits behind them, and nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_notifications_once import Flow, failure
from tests.helpers import wait_until
from tests.httpserver import RecordingServer, Reply
from tests.processes import TopicReader, produce, tail

BOUND_SECONDS = 15.0
EACH = 8


def workflows(hooks: RecordingServer) -> list[dict[str, Any]]:
    def tell(name: str, pattern: str, path: str) -> dict[str, Any]:
        return {
            "name": name,
            "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": pattern}},
            "action": {"type": "webhook", "url": hooks.url_for(path)},
        }

    return [
        tell("Tell the dead endpoint", "app.down*", "/down"),
        tell("Tell the team", "app.up*", "/up"),
        {
            "name": "Retry the team's tasks",
            "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "app.up*"}},
            "action": {"type": "retry", "delay_seconds": 0, "max_attempts": 1},
        },
    ]


@pytest.fixture
def flow(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str) -> Iterator[Flow]:
    with (
        RecordingServer() as hooks,
        Flow(tmp_path, kafka_bootstrap, topic_prefix, hooks, workflows(hooks)) as running,
    ):
        yield running


def latest(flow: Flow, workflow: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for record in flow.log.poll():
        if record["workflow"]["id"] == workflow:
            known = found.get(record["execution_id"])
            if known is None or record["seq"] > known["seq"]:
                found[record["execution_id"]] = record
    return found


@pytest.mark.integration
def test_a_dead_endpoint_delays_only_its_own_deliveries(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow.hooks.script("/down", Reply(503))
    worker = flow.worker(
        "fg1", monkeypatch, FLOWGUARD_ACTIONS_MAX_TOTAL_SECONDS=str(BOUND_SECONDS),
        FLOWGUARD_ACTIONS_BACKOFF_MAX_SECONDS="2",
    )  # fmt: skip
    try:
        now = time.time()
        for n in range(EACH):
            produce(flow.kafka, f"{flow.prefix}.events", failure(f"d-{n}", now, "app.down"))
        flow.hooks.wait_for_requests(EACH, path="/down", timeout_seconds=60)
        started = time.monotonic()
        for n in range(EACH):
            produce(flow.kafka, f"{flow.prefix}.events", failure(f"u-{n}", time.time(), "app.up"))
        flow.hooks.wait_for_requests(EACH, path="/up", timeout_seconds=30)
        commands = TopicReader(flow.kafka, f"{flow.prefix}.commands")
        commands.wait_for(
            lambda rs: rs if len(rs) >= EACH else None, timeout=30, what="the team's retries"
        )
        waited = time.monotonic() - started
        # The others were served while the dead endpoint was still being retried.
        down = latest(flow, "tell-the-dead-endpoint")
        assert [r["actions"][0]["status"] for r in down.values()] == ["planned"] * EACH
        assert waited < BOUND_SECONDS / 2, f"the team waited {waited:.1f}s"
        wait_until(
            lambda: [r["actions"][0]["status"] for r in latest(flow, "tell-the-team").values()]
            == ["succeeded"] * EACH,
            timeout_seconds=30, what="the team's notices settled",
        )  # fmt: skip
        # The dead endpoint's deliveries end within their bound, failed with the reason.
        settled = wait_until(
            lambda: (rs := latest(flow, "tell-the-dead-endpoint"))
            and all(r["actions"][0]["status"] == "failed" for r in rs.values())
            and rs,
            timeout_seconds=BOUND_SECONDS + 30, what="the dead endpoint's notices failed",
        )  # fmt: skip
        for record in settled.values():
            assert "HTTP 503" in record["actions"][0]["detail"]
            assert record["outcome"] == "failure"
        assert len(flow.hooks.requests("/down")) > EACH, "each was tried more than once"
    except BaseException:
        print(f"--- worker log:\n{tail(worker.log_path, 60)}")
        raise

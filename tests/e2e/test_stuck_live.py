"""task.stuck on the real stack: a real Celery worker (2 pool slots, prefetch 1) busy with two
slow tasks prefetches a third; the flowguard worker fires task.stuck (stage unstarted) for it
once, exactly the execution replay decides from the same events read back from Kafka."""

from __future__ import annotations

from typing import Any

import orjson

from flowguard.engine.core import Engine, EngineConfig
from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published
from tests.e2e.conftest import Stack, stays
from tests.e2e.test_live_equals_replay import by_execution, first_difference
from tests.e2e.test_live_flow import task_event
from tests.helpers import wait_until
from tests.httpserver import RecordingServer
from topics.events import EVENT_ADAPTER

WORKFLOW_ID = "stuck-behind-a-full-pool"


def stuck(url: str) -> dict[str, Any]:
    return {
        "name": "Stuck behind a full pool",
        "trigger": {"event": "task.stuck", "threshold_seconds": 1.5, "stage": "unstarted"},
        "action": {"type": "webhook", "url": url},
    }


def test_a_prefetched_task_is_stuck_live_exactly_as_replay_decides(
    stack: Stack, slack: RecordingServer
) -> None:
    definition = stuck(slack.url_for("/stuck"))
    stack.apply(definition)
    for i in (1, 2):
        stack.client.send_task("demo.tasks.slow", (4,), queue="celery", task_id=f"busy-{i}")
    for i in (1, 2):
        task_event(stack, "task.started", f"busy-{i}")
    stack.client.send_task("demo.tasks.add", (2, 2), queue="celery", task_id="prefetched-add")

    (record,) = wait_until(
        lambda: [r for r in stack.records(WORKFLOW_ID) if r["seq"] == 0] or None,
        timeout_seconds=30, what="the task.stuck execution",
    )  # fmt: skip
    assert record["trigger"]["event"] == "task.stuck"
    assert record["task"]["id"] == "prefetched-add"
    assert record["trigger"]["reason"].startswith("received by w1@flowguard 1.5s ago")
    [post] = slack.wait_for_requests(1, path="/stuck", timeout_seconds=30)
    assert b"prefetched-add" in post.body
    received = task_event(stack, "task.received", "prefetched-add")
    started = task_event(stack, "task.started", "prefetched-add")
    assert started["timestamp"] - received["timestamp"] > 3, "it really waited behind the pool"
    stays(
        lambda: [
            r for r in stack.records(WORKFLOW_ID) if r["execution_id"] != record["execution_id"]
        ],
        2.0, what="a second task.stuck execution",
    )  # fmt: skip

    # Replay: the same events, as the bridge published them, through the engine replay runs.
    events = sorted(
        (EVENT_ADAPTER.validate_python(e) for e in stack.events.poll()),
        key=lambda e: e.timestamp,
    )
    version = record["workflow"]["version"]
    published = Published.of(parse_workflow(definition, source="test"), version)
    engine = Engine([published], EngineConfig())
    expected = [orjson.loads(r.to_json()) for e in events for r in engine.feed(e).records]
    replay = by_execution(expected)
    live = by_execution(stack.records(WORKFLOW_ID))
    assert len(replay) == 1
    assert first_difference(live, replay) is None, first_difference(live, replay)

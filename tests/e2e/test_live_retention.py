"""State that nothing needs any more is forgotten: a failed chain after its retention, a settled
execution after its own. Both show as tombstones on their tables' changelogs, so a restarted
worker does not recover them either; the execution log keeps every record."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Stack
from tests.httpserver import RecordingServer
from tests.processes import TopicReader


@pytest.fixture
def forgetful(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Stack:
    """The stack, its flowguard worker keeping chains 2 s and executions 3 s (scan every 1 s)."""
    monkeypatch.setenv("FLOWGUARD_CHAIN_RETENTION_SECONDS", "2")
    monkeypatch.setenv("FLOWGUARD_EXECUTION_RETENTION_SECONDS", "3")
    monkeypatch.setenv("FLOWGUARD_EXPIRY_SCAN_SECONDS", "1")
    stack: Stack = request.getfixturevalue("stack")
    return stack


def tombstoned(reader: TopicReader, wanted: str) -> bool:
    """Whether the changelog's latest record for a key naming ``wanted`` is a tombstone."""
    reader.poll()
    latest: dict[bytes, dict[str, object]] = {}
    for key, value, _, _ in reader.records:
        if key is not None and wanted in key.decode():
            latest[key] = value
    return bool(latest) and all(value == {} for value in latest.values())


def test_a_failed_chain_and_its_settled_execution_are_forgotten_after_their_retention(
    forgetful: Stack, slack: RecordingServer
) -> None:
    stack = forgetful
    stack.apply(
        {
            "name": "Tell ops",
            "trigger": {"event": "task.failed"},
            "action": {"type": "slack", "webhook_url": slack.url_for("/ops"), "message": "x"},
        }
    )
    stack.client.send_task("demo.tasks.always_fails", ("c-9",), task_id="t-forget")
    slack.wait_for_requests(1, path="/ops", timeout_seconds=60)

    log = stack.log.wait_for(
        lambda records: [
            r for r in records
            if r["task"]["id"] == "t-forget" and r["actions"][0]["status"] == "succeeded"
        ],
        timeout=30, what="the settled execution on the log",
    )  # fmt: skip
    execution_id = log[0]["execution_id"]

    app = f"{stack.prefix}-app"
    chains = TopicReader(stack.kafka, f"{app}-chains-changelog")
    executions = TopicReader(stack.kafka, f"{app}-executions-changelog")
    # Written first (the chain failed, so it was kept past the write-behind window) ...
    chains.wait_for(lambda _: any(
        k and b"t-forget" in k and v for k, v, _, _ in chains.records
    ), timeout=30, what="the chain written to its changelog")  # fmt: skip
    # ... then forgotten, each after its retention.
    chains.wait_for(lambda _: tombstoned(chains, "t-forget"), timeout=30,
                    what="a tombstone for the chain")  # fmt: skip
    executions.wait_for(lambda _: tombstoned(executions, execution_id), timeout=30,
                        what="a tombstone for the execution")  # fmt: skip
    # The history is the log: every record of the execution is still there.
    assert [r["seq"] for r in stack.records("tell-ops") if r["execution_id"] == execution_id] == [
        0,
        1,
    ]

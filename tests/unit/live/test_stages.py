"""The live stages without Kafka: replayed input changes nothing and re-sends the same effects."""

from __future__ import annotations

import copy
from typing import Any

from flowguard.engine.documents import parse_workflow
from flowguard.engine.execute import execution_id
from flowguard.engine.matching import Published, WorkflowIndex
from flowguard.live import detect, execute
from topics.events import EVENT_ADAPTER
from topics.triggers import ActionOutcome, CancelExecution

CLUSTER = "prod"
KEY = f"{CLUSTER}/t1"
RETRY = parse_workflow(
    {
        "name": "Retry",
        "trigger": {"event": "task.failed"},
        "actions": [{"type": "retry", "delay_seconds": 30, "max_attempts": 2}],
    },
    source="test",
)


def event(kind: str, ts: float, **fields: Any) -> Any:
    return EVENT_ADAPTER.validate_python(
        {"kind": kind, "version": 1, "cluster": CLUSTER, "task_id": "t1", "timestamp": ts,
         "hostname": "w1@h", **fields}
    )  # fmt: skip


def never_offline(cluster: str, hostname: str) -> bool:
    return False


def fail_once(index: WorkflowIndex) -> tuple[detect.Slot | None, detect.Out]:
    slot, _ = detect.on_task_event(
        None, KEY, event("task.received", 1.0, name="app.t", args="(1,)", kwargs="{}",
                         root_id="t1"),
        0, index, never_offline,
    )  # fmt: skip
    slot, _ = detect.on_task_event(slot, KEY, event("task.started", 2.0), 1, index, never_offline)
    return detect.on_task_event(
        slot, KEY, event("task.failed", 3.0, exception="ConnectionError('x')"), 2, index,
        never_offline,
    )  # fmt: skip


def test_a_failure_matches_and_a_replayed_event_resends_the_same_match_without_reapplying() -> None:
    index = WorkflowIndex([Published.of(RETRY, 1)])
    slot, out = fail_once(index)
    [matched] = out.matched
    assert matched.workflow_id == "retry"
    assert matched.trigger.task is not None
    assert matched.trigger.task.failure_count == 1

    again_slot, again = detect.on_task_event(
        slot, KEY, event("task.failed", 3.0, exception="ConnectionError('x')"), 2, index,
        never_offline,
    )  # fmt: skip
    assert again.matched == out.matched
    assert again_slot == slot  # not applied twice: the failure count is still 1


def test_deciding_twice_resends_instead_of_deciding_again() -> None:
    published = Published.of(RETRY, 1)
    _, out = fail_once(WorkflowIndex([published]))
    [matched] = out.matched
    wf_slot, entry, first = execute.on_matched(None, None, matched, published)
    [scheduled] = first.scheduled
    assert scheduled.due_at == 33.0
    assert first.records[0].actions[0].status == "scheduled"

    same_slot, same_entry, again = execute.on_matched(wf_slot, entry, matched, published)
    assert (same_slot, same_entry) == (wf_slot, entry)
    assert again.scheduled == first.scheduled
    assert again.records == first.records
    assert entry["record"]["execution_id"] == execution_id(published, matched.trigger)


def test_a_due_retry_is_sent_unless_the_chain_recovered() -> None:
    published = Published.of(RETRY, 1)
    index = WorkflowIndex([published])
    slot, out = fail_once(index)
    _, _, decided = execute.on_matched(None, None, out.matched[0], published)
    [scheduled] = decided.scheduled
    slot, _ = detect.on_scheduled(slot, scheduled, CLUSTER)

    early, nothing = detect.on_chain_tick(slot, index, now=32.0)
    assert (nothing.commands, nothing.outcomes) == ([], [])
    # Slots are owned by whoever holds them (the functions change them in place): branch here.
    recovered = copy.deepcopy(early)
    _, due = detect.on_chain_tick(early, index, now=33.5)
    assert due.commands == [scheduled.command]
    assert [o.status for o in due.outcomes] == ["sent"]

    # Another task of the chain (someone retried it by hand) succeeded meanwhile.
    for offset, (kind, ts) in enumerate([("task.received", 8.0), ("task.succeeded", 10.0)], 3):
        recovered, _ = detect.on_task_event(
            recovered, KEY, event(kind, ts, task_id="t2", root_id="t1"), offset, index,
            never_offline,
        )  # fmt: skip
    _, skipped = detect.on_chain_tick(recovered, index, now=40.0)
    assert skipped.commands == []
    [outcome] = skipped.outcomes
    assert (outcome.status, outcome.recovered) == ("skipped", True)


def test_outcomes_make_the_next_record_and_cancel_records_once() -> None:
    published = Published.of(RETRY, 1)
    _, out = fail_once(WorkflowIndex([published]))
    _, entry, decided = execute.on_matched(None, None, out.matched[0], published)
    record = decided.records[0]
    cancel = CancelExecution(
        workflow_id="retry", execution_id=record.execution_id, requested_by="ana",
        requested_at="2026-11-25T00:00:00Z",
    )  # fmt: skip
    cancelled_entry, cancelled = execute.on_cancel(entry, cancel)
    [after] = cancelled.records
    assert (after.seq, after.outcome, after.reason) == (1, "skipped", "cancelled")
    assert after.actions[0].status == "cancelled"
    assert [c.command_id for c in cancelled.cancels] == [record.actions[0].action_id]
    _, twice = execute.on_cancel(cancelled_entry, cancel)
    assert twice.records == []

    outcome = ActionOutcome(
        workflow_id="retry", execution_id=record.execution_id,
        action_id=record.actions[0].action_id, status="sent", at="2026-11-25T00:00:00Z",
    )  # fmt: skip
    sent_entry, sent = execute.on_outcome(entry, outcome)
    assert [(r.seq, r.actions[0].status) for r in sent.records] == [(1, "sent")]
    _, repeated = execute.on_outcome(sent_entry, outcome)
    assert repeated.records == []

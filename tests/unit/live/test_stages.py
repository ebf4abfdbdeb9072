"""The live stages without Kafka: replayed input changes nothing and re-sends the same effects."""

from __future__ import annotations

import copy
from typing import Any

from flowguard.engine.documents import parse_workflow
from flowguard.engine.execute import execution_id
from flowguard.engine.matching import Published, WorkflowIndex
from flowguard.live import detect, execute
from topics.commands import CommandResult
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


def test_a_bridge_result_settles_the_retry_and_an_older_status_never_moves_it_back() -> None:
    published = Published.of(RETRY, 1)
    _, out = fail_once(WorkflowIndex([published]))
    _, entry, decided = execute.on_matched(None, None, out.matched[0], published)
    record = decided.records[0]
    action_id = record.actions[0].action_id

    def result(status: str, detail: str = "") -> CommandResult:
        return CommandResult(
            command_id=action_id, cluster=CLUSTER, at="2026-11-25T00:00:01Z", status=status,
            detail=detail, workflow_id="retry", execution_id=record.execution_id,
        )  # fmt: skip

    done = execute.command_outcome(result("done", "sent app.t[r1] on queue q"))
    assert done is not None
    assert (done.workflow_id, done.action_id, done.status) == ("retry", action_id, "succeeded")
    assert done.detail == "prod: sent app.t[r1] on queue q"
    assert execute.command_outcome(result("duplicate", "already carried out")) is None
    failed = execute.command_outcome(result("failed", "args not recoverable: ..."))
    assert failed is not None
    assert failed.status == "failed"
    # An older bridge (no workflow on its results) is not followed.
    assert execute.command_outcome(result("done").model_copy(update={"workflow_id": None})) is None

    succeeded, settled = execute.on_outcome(entry, done)
    assert [(r.seq, r.actions[0].status, r.outcome) for r in settled.records] == [
        (1, "succeeded", "success")
    ]
    late_sent = ActionOutcome(
        workflow_id="retry", execution_id=record.execution_id, action_id=action_id,
        status="sent", at="2026-11-25T00:00:00Z",
    )  # fmt: skip
    _, nothing = execute.on_outcome(succeeded, late_sent)
    assert nothing.records == []
    _, failed_out = execute.on_outcome(entry, failed)
    assert [(r.actions[0].status, r.outcome) for r in failed_out.records] == [("failed", "failure")]


def test_a_tick_forgets_a_finished_chain_after_its_retention_not_before() -> None:
    index = WorkflowIndex([Published.of(RETRY, 1)])
    slot, out = fail_once(index)  # t1 failed at 3.0: every task final
    assert slot is not None
    _, quiet = detect.on_task_event(
        copy.deepcopy(slot), KEY, event("task.failed", 3.0, exception="x"), 9, index,
        never_offline, 600.0,
    )  # fmt: skip
    assert 603.0 in quiet.deadlines  # the tick that may forget it is asked for

    kept, _ = detect.on_chain_tick(copy.deepcopy(slot), index, now=500.0, retention=600.0)
    assert kept is not None
    forgotten, _ = detect.on_chain_tick(copy.deepcopy(slot), index, now=604.0, retention=600.0)
    assert forgotten is None

    # A delayed retry held on the chain keeps it, whatever the retention.
    _, _, decided = execute.on_matched(None, None, out.matched[0], Published.of(RETRY, 1))
    [scheduled] = decided.scheduled
    held, _ = detect.on_scheduled(copy.deepcopy(slot), scheduled, CLUSTER)
    still, _ = detect.on_chain_tick(held, index, now=30.0, retention=1.0)
    assert still is not None


def test_an_execution_expires_once_settled_and_old_and_a_stuck_one_only_after_a_week() -> None:
    published = Published.of(RETRY, 1)
    _, out = fail_once(WorkflowIndex([published]))
    _, entry, decided = execute.on_matched(None, None, out.matched[0], published)
    record = decided.records[0]  # its retry is scheduled: not settled
    day = 24 * 3600.0
    assert entry["at"] == 3.0
    assert not execute.expired(entry, now=3.0 + 2 * day, retention=day)
    assert execute.expired(entry, now=3.0 + 8 * day, retention=day)

    outcome = ActionOutcome(
        workflow_id="retry", execution_id=record.execution_id,
        action_id=record.actions[0].action_id, status="succeeded", at="2026-11-25T00:00:00Z",
    )  # fmt: skip
    settled, _ = execute.on_outcome(entry, outcome)
    assert settled is not None
    assert not execute.expired(settled, now=3.0 + day / 2, retention=day)
    assert execute.expired(settled, now=3.0 + day + 1, retention=day)
    alias = {"alias": record.execution_id, "at": 3.0, "workflow_id": "retry"}
    assert execute.expired(alias, now=3.0 + day + 1, retention=day)
    assert not execute.expired(alias, now=3.0 + 10, retention=day)


def test_a_goodbye_defers_the_orphan_broadcast_until_its_grace_has_passed() -> None:
    index = WorkflowIndex([Published.of(RETRY, 1)])

    def worker_event(kind: str, ts: float) -> Any:
        return EVENT_ADAPTER.validate_python(
            {"kind": kind, "version": 1, "cluster": CLUSTER, "hostname": "w1@h", "timestamp": ts,
             "freq": 2.0}
        )  # fmt: skip

    slot, _ = detect.on_worker_event(None, worker_event("worker.heartbeat", 1.0), 0, index, 2.0)
    slot, bye = detect.on_worker_event(
        slot, worker_event("worker.offline", 2.0), 1, index, 2.0, grace=30.0
    )
    assert bye.gone == []
    assert 32.0 in bye.deadlines
    slot_, early = detect.on_worker_tick(slot, index, now=31.0, factor=2.0, grace=30.0)
    assert early.gone == []
    _, due = detect.on_worker_tick(slot_, index, now=32.5, factor=2.0, grace=30.0)
    [gone] = due.gone
    assert (gone.hostname, gone.at, gone.started_before) == ("w1@h", 32.5, 2.0)
    _, once = detect.on_worker_tick(slot_, index, now=40.0, factor=2.0, grace=30.0)
    assert once.gone == []

    # Silence (a SIGKILL) broadcasts at once.
    quiet, _ = detect.on_worker_event(None, worker_event("worker.heartbeat", 1.0), 0, index, 2.0)
    _, expired = detect.on_worker_tick(quiet, index, now=6.0, factor=2.0, grace=30.0)
    [gone] = expired.gone
    assert gone.started_before == 5.0  # last heartbeat + 2 x 2 s

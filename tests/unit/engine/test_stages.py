"""The decision core's stages, one step at a time: replayed input changes nothing and re-sends
the same effects; retries settle from their own tasks' events."""

from __future__ import annotations

import copy
from typing import Any

from flowguard.engine import detect, executions
from flowguard.engine.decision import execution_id
from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published, WorkflowIndex
from topics.commands import CommandResult, RetryCommand
from topics.events import EVENT_ADAPTER
from topics.triggers import ActionOutcome, CancelExecution, Matched

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


TIMING = detect.Timing()


def never_offline(cluster: str, hostname: str, at: float) -> bool:
    return False


def decide(
    slot: executions.WorkflowSlot | None,
    entries: dict[str, executions.Entry],
    matched: Matched,
    published: Published,
) -> tuple[executions.WorkflowSlot | None, executions.Execution, executions.Out]:
    """Decide as the live stage does, keeping entries in ``entries``; the execution's entry."""
    slot, out = executions.on_matched(slot, entries.get, matched, published)
    entries.update(out.writes)
    eid = execution_id(published, matched.trigger)
    entry = entries[eid]
    assert isinstance(entry, executions.Execution)
    return slot, entry, out


def fail_once(index: WorkflowIndex) -> tuple[detect.ChainSlot | None, detect.Out]:
    slot, _ = detect.on_task_event(
        None, KEY, event("task.received", 1.0, name="app.t", args="(1,)", kwargs="{}",
                         root_id="t1"),
        0, index, never_offline, TIMING,
    )  # fmt: skip
    slot, _ = detect.on_task_event(
        slot, KEY, event("task.started", 2.0), 1, index, never_offline, TIMING
    )
    return detect.on_task_event(
        slot, KEY, event("task.failed", 3.0, exception="ConnectionError('x')"), 2, index,
        never_offline, TIMING,
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
        never_offline, TIMING,
    )  # fmt: skip
    assert again.matched == out.matched
    assert again_slot == slot  # not applied twice: the failure count is still 1


def test_deciding_twice_resends_instead_of_deciding_again() -> None:
    published = Published.of(RETRY, 1)
    _, out = fail_once(WorkflowIndex([published]))
    [matched] = out.matched
    entries: dict[str, executions.Entry] = {}
    wf_slot, entry, first = decide(None, entries, matched, published)
    [scheduled] = first.scheduled
    assert scheduled.due_at == 33.0
    assert first.records[0].actions[0].status == "scheduled"

    snapshot = copy.deepcopy((wf_slot, entries))
    same_slot, again = executions.on_matched(wf_slot, entries.get, matched, published)
    assert again.writes == {}
    assert (same_slot, entries) == snapshot
    assert again.scheduled == first.scheduled
    assert again.records == first.records
    assert entry.record.execution_id == execution_id(published, matched.trigger)


def test_a_due_retry_is_sent_unless_the_chain_recovered() -> None:
    published = Published.of(RETRY, 1)
    index = WorkflowIndex([published])
    slot, out = fail_once(index)
    _, _, decided = decide(None, {}, out.matched[0], published)
    [scheduled] = decided.scheduled
    slot, _ = detect.on_scheduled(slot, scheduled, CLUSTER)

    early, nothing = detect.on_chain_tick(slot, index, 32.0, TIMING)
    assert (nothing.commands, nothing.outcomes) == ([], [])
    # Slots are owned by whoever holds them (the functions change them in place): branch here.
    recovered = copy.deepcopy(early)
    _, due = detect.on_chain_tick(early, index, 33.5, TIMING)
    assert due.commands == [scheduled.command]
    assert [o.status for o in due.outcomes] == ["sent"]

    # Another task of the chain (someone retried it by hand) succeeded meanwhile.
    for offset, (kind, ts) in enumerate([("task.received", 8.0), ("task.succeeded", 10.0)], 3):
        recovered, _ = detect.on_task_event(
            recovered, KEY, event(kind, ts, task_id="t2", root_id="t1"), offset, index,
            never_offline, TIMING,
        )  # fmt: skip
    _, skipped = detect.on_chain_tick(recovered, index, 40.0, TIMING)
    assert skipped.commands == []
    [outcome] = skipped.outcomes
    assert (outcome.status, outcome.recovered) == ("skipped", True)


def test_outcomes_make_the_next_record_and_cancel_records_once() -> None:
    published = Published.of(RETRY, 1)
    _, out = fail_once(WorkflowIndex([published]))
    _, entry, decided = decide(None, {}, out.matched[0], published)
    record = decided.records[0]
    cancel = CancelExecution(
        workflow_id="retry", execution_id=record.execution_id, requested_by="ana",
        requested_at="2026-11-25T00:00:00Z",
    )  # fmt: skip
    # Entries are owned by whoever holds them (changed in place): branch here.
    cancelled_entry, cancelled = executions.on_cancel(copy.deepcopy(entry), cancel)
    [after] = cancelled.records
    assert (after.seq, after.outcome, after.reason) == (1, "skipped", "cancelled")
    assert after.actions[0].status == "cancelled"
    assert [c.command_id for c in cancelled.cancels] == [record.actions[0].action_id]
    _, twice = executions.on_cancel(cancelled_entry, cancel)
    assert twice.records == []

    outcome = ActionOutcome(
        workflow_id="retry", execution_id=record.execution_id,
        action_id=record.actions[0].action_id, status="sent", at="2026-11-25T00:00:00Z",
    )  # fmt: skip
    sent_entry, sent = executions.on_outcome(entry, outcome)
    assert [(r.seq, r.actions[0].status) for r in sent.records] == [(1, "sent")]
    _, repeated = executions.on_outcome(sent_entry, outcome)
    assert repeated.records == []


def test_a_bridge_result_settles_the_retry_and_an_older_status_never_moves_it_back() -> None:
    published = Published.of(RETRY, 1)
    _, out = fail_once(WorkflowIndex([published]))
    _, entry, decided = decide(None, {}, out.matched[0], published)
    record = decided.records[0]
    action_id = record.actions[0].action_id

    def result(status: str, detail: str = "") -> CommandResult:
        return CommandResult(
            command_id=action_id, cluster=CLUSTER, at="2026-11-25T00:00:01Z", status=status,
            detail=detail, workflow_id="retry", execution_id=record.execution_id,
        )  # fmt: skip

    done = executions.command_outcome(result("done", "sent app.t[r1] on queue q"))
    assert done is not None
    # Published is not ran: the retried task's own events settle it (see the watch tests).
    assert (done.workflow_id, done.action_id, done.status) == ("retry", action_id, "sent")
    assert done.detail == "published by the bridge (prod: sent app.t[r1] on queue q)"
    assert executions.command_outcome(result("duplicate", "already carried out")) is None
    failed = executions.command_outcome(result("failed", "args not recoverable: ..."))
    assert failed is not None
    assert failed.status == "failed"
    # An older bridge (no workflow on its results) is not followed.
    assert (
        executions.command_outcome(result("done").model_copy(update={"workflow_id": None})) is None
    )

    fresh = copy.deepcopy(entry)  # entries change in place: keep one as decided
    succeeded, settled = executions.on_outcome(
        entry, done.model_copy(update={"status": "succeeded", "detail": "ran"})
    )
    assert [(r.seq, r.actions[0].status, r.outcome) for r in settled.records] == [
        (1, "succeeded", "success")
    ]
    late_sent = ActionOutcome(
        workflow_id="retry", execution_id=record.execution_id, action_id=action_id,
        status="sent", at="2026-11-25T00:00:00Z",
    )  # fmt: skip
    _, nothing = executions.on_outcome(succeeded, late_sent)
    assert nothing.records == []
    # Settled is final: a later word (a delivery found marked after a crash) changes nothing.
    _, after = executions.on_outcome(succeeded, failed)
    assert after.records == []
    _, failed_out = executions.on_outcome(fresh, failed)
    assert [(r.actions[0].status, r.outcome) for r in failed_out.records] == [("failed", "failure")]


def test_a_tick_forgets_a_finished_chain_after_its_retention_not_before() -> None:
    index = WorkflowIndex([Published.of(RETRY, 1)])
    slot, out = fail_once(index)  # t1 failed at 3.0: every task final
    assert slot is not None
    _, quiet = detect.on_task_event(
        copy.deepcopy(slot), KEY, event("task.failed", 3.0, exception="x"), 9, index,
        never_offline, detect.Timing(chain_retention_seconds=600.0),
    )  # fmt: skip
    assert 603.0 in quiet.deadlines  # the tick that may forget it is asked for

    kept, _ = detect.on_chain_tick(
        copy.deepcopy(slot), index, 500.0, detect.Timing(chain_retention_seconds=600.0)
    )
    assert kept is not None
    forgotten, _ = detect.on_chain_tick(
        copy.deepcopy(slot), index, 604.0, detect.Timing(chain_retention_seconds=600.0)
    )
    assert forgotten is None

    # A delayed retry held on the chain keeps it, whatever the retention.
    _, _, decided = decide(None, {}, out.matched[0], Published.of(RETRY, 1))
    [scheduled] = decided.scheduled
    held, _ = detect.on_scheduled(copy.deepcopy(slot), scheduled, CLUSTER)
    still, _ = detect.on_chain_tick(held, index, 30.0, detect.Timing(chain_retention_seconds=1.0))
    assert still is not None


def test_an_execution_expires_once_settled_and_old_and_a_stuck_one_only_after_a_week() -> None:
    published = Published.of(RETRY, 1)
    _, out = fail_once(WorkflowIndex([published]))
    _, entry, decided = decide(None, {}, out.matched[0], published)
    record = decided.records[0]  # its retry is scheduled: not settled
    day = 24 * 3600.0
    assert entry.at == 3.0

    def expired(entry: executions.Execution, now: float) -> bool:
        statuses = [a.status for a in entry.record.actions]
        return executions.expired(entry.at, statuses, now=now, retention=day)

    assert not expired(entry, now=3.0 + 2 * day)
    assert expired(entry, now=3.0 + 8 * day)

    outcome = ActionOutcome(
        workflow_id="retry", execution_id=record.execution_id,
        action_id=record.actions[0].action_id, status="succeeded", at="2026-11-25T00:00:00Z",
    )  # fmt: skip
    settled, _ = executions.on_outcome(entry, outcome)
    assert settled is not None
    assert not expired(settled, now=3.0 + day / 2)
    assert expired(settled, now=3.0 + day + 1)
    # An alias (a match's own id, decided under another version) only ages.
    assert executions.expired(3.0, None, now=3.0 + day + 1, retention=day)
    assert not executions.expired(3.0, None, now=3.0 + 10, retention=day)


def test_a_goodbye_defers_the_orphan_broadcast_until_its_grace_has_passed() -> None:
    index = WorkflowIndex([Published.of(RETRY, 1)])

    def worker_event(kind: str, ts: float) -> Any:
        return EVENT_ADAPTER.validate_python(
            {"kind": kind, "version": 1, "cluster": CLUSTER, "hostname": "w1@h", "timestamp": ts,
             "freq": 2.0}
        )  # fmt: skip

    timing = detect.Timing(offline_grace_seconds=30.0)
    slot, _ = detect.on_worker_event(None, worker_event("worker.heartbeat", 1.0), 0, index, timing)
    slot, bye = detect.on_worker_event(slot, worker_event("worker.offline", 2.0), 1, index, timing)
    assert bye.gone == []
    assert 32.0 in bye.deadlines
    slot_, early = detect.on_worker_tick(slot, index, 31.0, timing)
    assert early.gone == []
    _, due = detect.on_worker_tick(slot_, index, 32.5, timing)
    [gone] = due.gone
    # Stamped when it came due, not when the tick noticed: live and replay agree.
    assert (gone.hostname, gone.at, gone.started_before) == ("w1@h", 32.0, 2.0)
    _, once = detect.on_worker_tick(slot_, index, 40.0, timing)
    assert once.gone == []

    # Silence (a SIGKILL) broadcasts at once.
    quiet, _ = detect.on_worker_event(None, worker_event("worker.heartbeat", 1.0), 0, index, timing)
    _, expired = detect.on_worker_tick(quiet, index, 6.0, timing)
    [gone] = expired.gone
    assert gone.started_before == 5.0  # last heartbeat + 2 x 2 s


NOW_RETRY = parse_workflow(
    {
        "name": "Retry now",
        "trigger": {"event": "task.failed"},
        "actions": [{"type": "retry", "delay_seconds": 0, "max_attempts": 3}],
    },
    source="test",
)


def sent_retry(
    index: WorkflowIndex, published: Published
) -> tuple[detect.ChainSlot | None, RetryCommand]:
    """t1 fails, its retry is decided and sent at once, and its chain watches it."""
    slot, out = fail_once(index)
    _, _, decided = decide(None, {}, out.matched[0], published)
    [command] = decided.commands
    [watch] = decided.sent
    assert (watch.chain_key, watch.sent_at, watch.command) == (KEY, 3.0, command)
    watched, nothing = detect.on_retry_sent(slot, watch, TIMING)
    assert nothing.outcomes == []
    assert 3.0 + TIMING.stranded_after_seconds in nothing.deadlines
    return watched, command


def retried(kind: str, ts: float, command: RetryCommand, **fields: Any) -> Any:
    return event(kind, ts, task_id=command.task_id, root_id="t1", parent_id="t1", **fields)


def test_a_sent_retry_settles_from_what_its_own_task_did() -> None:
    published = Published.of(NOW_RETRY, 1)
    index = WorkflowIndex([published])
    slot, command = sent_retry(index, published)
    steps = [
        ("task.received", 4.0, {"name": "app.t", "args": "(1,)", "kwargs": "{}"}),
        ("task.started", 5.0, {}),
    ]
    for offset, (kind, ts, fields) in enumerate(steps, 10):
        slot, out = detect.on_task_event(
            slot, KEY, retried(kind, ts, command, **fields), offset, index, never_offline, TIMING
        )
        assert out.outcomes == [], "received and started settle nothing"
    ok, done = detect.on_task_event(
        copy.deepcopy(slot), KEY, retried("task.succeeded", 6.0, command), 12, index,
        never_offline, TIMING,
    )  # fmt: skip
    [outcome] = done.outcomes
    assert (outcome.action_id, outcome.status) == (command.command_id, "succeeded")
    assert outcome.detail == "the retried task ran and succeeded on w1@h"
    assert ok is not None
    assert ok.sent == {}

    _, again = detect.on_task_event(
        slot, KEY, retried("task.failed", 6.0, command, exception="ConnectionError('down')"), 12,
        index, never_offline, TIMING,
    )  # fmt: skip
    assert [(o.status, o.detail) for o in again.outcomes] == [
        ("failed", "the retried task failed on w1@h: ConnectionError('down')")
    ]
    assert [m.trigger.task.failure_count for m in again.matched if m.trigger.task] == [2]


def test_a_retry_no_worker_receives_is_stranded_with_the_reason() -> None:
    published = Published.of(NOW_RETRY, 1)
    index = WorkflowIndex([published])
    slot, command = sent_retry(index, published)
    due = 3.0 + TIMING.stranded_after_seconds
    slot, early = detect.on_chain_tick(slot, index, due - 1, TIMING)
    assert early.outcomes == []
    slot, late = detect.on_chain_tick(slot, index, due + 5, TIMING)
    [outcome] = late.outcomes
    assert outcome.status == "stranded"
    assert f"no worker received task {command.task_id} within 300s" in outcome.detail
    assert "its queue (not known to flowguard)" in outcome.detail  # no task-sent seen
    _, once = detect.on_chain_tick(slot, index, due + 10, TIMING)
    assert once.outcomes == []
    # A worker that comes up later still runs it: the retry settles then.
    for offset, (kind, ts) in enumerate(
        [("task.received", due + 20), ("task.succeeded", due + 21)]
    ):
        slot, out = detect.on_task_event(
            slot, KEY, retried(kind, ts, command), 20 + offset, index, never_offline, TIMING
        )
    assert [o.status for o in out.outcomes] == ["succeeded"]


def test_a_delayed_retry_is_watched_from_when_it_is_sent() -> None:
    published = Published.of(RETRY, 1)
    index = WorkflowIndex([published])
    slot, out = fail_once(index)
    _, _, decided = decide(None, {}, out.matched[0], published)
    assert decided.sent == []  # nothing sent yet: it is held on the chain
    [scheduled] = decided.scheduled
    slot, _ = detect.on_scheduled(slot, scheduled, CLUSTER)
    slot, due = detect.on_chain_tick(slot, index, 33.0, TIMING)
    assert due.commands == [scheduled.command]
    assert slot is not None
    assert list(slot.sent) == [scheduled.command.command_id]
    quiet = detect.Timing(watch_retries=False)  # a dry run sends nothing, so watches nothing
    held, _ = detect.on_scheduled(fail_once(index)[0], scheduled, CLUSTER)
    kept, _ = detect.on_chain_tick(held, index, 33.0, quiet)
    assert kept is None or kept.sent == {}


def test_a_chain_keeps_the_queue_once_known_and_every_later_retry_uses_it() -> None:
    """Celery's defaults send no task-sent: the root's queue is unknown and its first retry says
    so; the bridge reports the queue it routed that retry to, and the next retry goes there."""
    from flowguard.engine.core import Engine, EngineConfig
    from flowguard.engine.decision import QUEUE_UNKNOWN

    engine = Engine([Published.of(NOW_RETRY, 1)], EngineConfig(dry_run=False))
    for kind, ts, fields in [
        ("task.received", 1.0, {"name": "app.t", "args": "(1,)", "kwargs": "{}", "root_id": "t1"}),
        ("task.started", 2.0, {}),
        ("task.failed", 3.0, {"exception": "ConnectionError('x')"}),
    ]:
        out = engine.feed(event(kind, ts, **fields))
    [first] = out.commands
    assert first.queue is None
    [action] = out.records[0].actions
    assert (action.queue, action.detail) == (None, QUEUE_UNKNOWN)
    # The bridge publishes its own send as task-sent, with the queue its router chose.
    sent = {"name": "app.t", "args": "(1,)", "kwargs": "{}"}
    for kind, ts, fields in [
        ("task.sent", 3.1, {**sent, "queue": "payments", "routing_key": "payments"}),
        ("task.received", 3.2, sent),
        ("task.started", 3.3, {}),
        ("task.failed", 3.4, {"exception": "ConnectionError('x')"}),
    ]:
        out = engine.feed(retried(kind, ts, first, **fields))
    [second] = out.commands
    assert (second.queue, second.routing_key, second.attempt) == ("payments", "payments", 2)
    assert [a.queue for r in out.records for a in r.actions if r.seq == 0] == ["payments"]
    # The first retry settled from its own task's failure, not from the bridge's word.
    assert ("failed", first.command_id) in [
        (a.status, a.action_id) for r in out.records for a in r.actions
    ]


def matched_for(matched: Matched, root: str, failure: int, at: float) -> Matched:
    """``matched`` as the ``failure``-th failure of chain ``root`` at ``at``."""
    assert matched.trigger.task is not None
    task = matched.trigger.task.model_copy(update={"id": root, "root_id": root})
    trigger = matched.trigger.model_copy(
        update={"trigger_id": f"task.failed/{CLUSTER}/{root}/{failure}", "task": task, "at": at}
    )
    return matched.model_copy(update={"trigger": trigger})


def test_retry_budgets_are_entries_of_their_own_and_the_workflow_slot_stays_small() -> None:
    """bench/fleet.py saw the workflow's slot hold every chain it retried for a week (72 KB
    after 1,841 chains, written whole on each execution): budgets are now entries."""
    wide = parse_workflow(
        {
            "name": "Retry",
            "trigger": {"event": "task.failed"},
            "actions": [{"type": "retry", "delay_seconds": 30, "max_attempts": 2}],
            "circuit_breaker": {"max_executions": 1_000_000, "time_window_hours": 1},
        },
        source="test",
    )
    published = Published.of(wide, 1)
    _, out = fail_once(WorkflowIndex([published]))
    [matched] = out.matched
    entries: dict[str, executions.Entry] = {}
    slot: executions.WorkflowSlot | None = None
    for n in range(300):
        slot, _, _ = decide(slot, entries, matched_for(matched, f"r{n}", 1, 10.0 + n), published)
    assert slot is not None
    assert slot.budgets == {}
    assert b"r299" not in slot.to_json()  # the breaker's times only: nothing per chain
    key = executions.budget_key(published.workflow.id, f"{CLUSTER}/r7")
    assert entries[key] == executions.Budget(1, 17.0, published.workflow.id)

    # max_attempts 2 still holds per chain: the third failure of r7 is not retried.
    for failure, at in ((2, 400.0), (3, 800.0)):
        slot, _, decided = decide(slot, entries, matched_for(matched, "r7", failure, at), published)
    assert decided.scheduled == []
    assert entries[key] == executions.Budget(2, 400.0, published.workflow.id)


def test_a_budget_kept_in_an_old_slot_is_honoured_once_and_moved_to_its_entry() -> None:
    published = Published.of(RETRY, 1)
    _, out = fail_once(WorkflowIndex([published]))
    [matched] = out.matched
    entries: dict[str, executions.Entry] = {}
    old = executions.WorkflowSlot.from_json(
        b'{"breaker": {}, "budgets": {"prod/r1": [2, 5.0], "prod/r2": [1, 6.0]}}'
    )
    slot, _, decided = decide(old, entries, matched_for(matched, "r1", 3, 9.0), published)
    assert decided.scheduled == []  # two made already: over max_attempts
    assert slot is not None
    assert slot.budgets == {"prod/r2": (1, 6.0)}
    key = executions.budget_key(published.workflow.id, "prod/r1")
    assert entries[key] == executions.Budget(2, 9.0, published.workflow.id)
    assert executions.load_entry(entries[key].to_json()) == entries[key]

"""The comparison ``flowguard rehearse`` prints: pure, over execution records."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flowguard.rehearse import EXAMPLES, compare, decision_of, final_decisions, gate, in_scope
from topics.execution import (
    ActionResult,
    BreakerRef,
    ExecutionRecord,
    TaskRef,
    TriggerRef,
    WorkerRef,
    WorkflowRef,
)
from topics.record import iso

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, an hour's start


def record(
    workflow: str = "wf",
    trigger: str = "task.failed/eu/t1/1",
    *,
    at: float = T0,
    seq: int = 0,
    outcome: str = "success",
    reason: str | None = None,
    actions: tuple[tuple[str, str], ...] = (("retry", "planned"),),
    opened: bool = False,
    version: int = 1,
    cluster: str = "eu",
    worker: bool = False,
    **changes: Any,
) -> ExecutionRecord:
    """One execution record; ``actions`` as (type, status) pairs, a retry's attempt 1 at 60 s."""
    return ExecutionRecord(
        execution_id=f"{workflow}/{version}/{trigger}",
        seq=seq,
        workflow=WorkflowRef(id=workflow, name=workflow, version=version),
        trigger=TriggerRef(id=trigger, event=trigger.split("/")[0], at=iso(at) or ""),
        task=None
        if worker
        else TaskRef(cluster=cluster, id=trigger, root_id=trigger, name="app.t"),
        worker=WorkerRef(cluster=cluster, hostname="w1") if worker else None,
        circuit_breaker=BreakerRef(
            state="open" if opened else "closed",
            count=1,
            max_executions=5,
            window_seconds=3600,
            transition="opened" if opened else None,
        ),
        actions=tuple(
            ActionResult(
                action_id=f"{trigger}/{i}",
                type=kind,
                status=status,  # type: ignore[arg-type]
                attempt=1 if kind == "retry" else None,
                delay_seconds=60 if kind == "retry" else None,
            )
            for i, (kind, status) in enumerate(actions)
        ),
        outcome=outcome,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        **changes,
    )


def live_view(draft: ExecutionRecord) -> ExecutionRecord:
    """The same decision as a live worker records it once carried out: another version (so
    another execution id), seq 2, statuses and outcome from the deliveries, a wall-clock time."""
    return draft.model_copy(update={
        "execution_id": "live-" + draft.execution_id,
        "seq": draft.seq + 2,
        "workflow": draft.workflow.model_copy(update={"version": 7}),
        "dry_run": False,
        "recorded_at": iso(T0 + 99),
        "outcome": "failure" if draft.outcome == "success" else draft.outcome,
        "actions": tuple(
            a.model_copy(update={"status": "failed", "detail": "HTTP 500", "retry_task_id": "x"})
            if a.status == "planned" else a
            for a in draft.actions
        ),
    })  # fmt: skip


# -- the rules, one example each ---------------------------------------------------------------


def test_what_only_a_live_run_knows_is_not_a_change() -> None:
    draft = [
        record(dry_run=True),
        record("wf", "task.failed/eu/t2/1", actions=(("slack", "planned"),)),
    ]
    result = compare([live_view(r) for r in draft], draft)
    assert (result.added, result.removed, result.changed, result.unchanged) == (0, 0, 0, 2)
    assert not result.differs


def test_the_final_record_of_an_execution_is_the_one_compared() -> None:
    decided = record(actions=(("retry", "scheduled"),))
    recovered = record(seq=1, outcome="skipped", reason="recovered",
                       actions=(("retry", "skipped"),))  # fmt: skip
    draft = record(outcome="skipped", reason="recovered", actions=(("retry", "skipped"),))
    # Arrival order does not matter: seq decides.
    assert compare([recovered, decided], [draft]).unchanged == 1
    ran = compare([decided], [draft])
    assert ran.changed == 1
    assert ran.changed_examples[0].fields == ("verdict", "actions")


def test_added_removed_and_changed_are_matched_by_workflow_and_trigger() -> None:
    live = [
        record("retry", "task.failed/eu/a/1"),
        record("retry", "task.failed/eu/b/1", outcome="skipped", reason="circuit_open",
               actions=(("retry", "skipped"),)),
        record("page", "worker.offline/eu/w1/1", worker=True, actions=(("pagerduty", "sent"),)),
    ]  # fmt: skip
    draft = [
        record("retry", "task.failed/eu/b/1", opened=True),  # ran now, and opened the breaker
        record("retry", "task.failed/eu/c/1", at=T0 + 3600),
        record("retry", "task.failed/eu/a/2"),  # another occurrence: not the same execution
        record("page", "worker.offline/eu/w1/1", worker=True, actions=(("pagerduty", "planned"),)),
    ]
    result = compare(live, draft)
    assert (result.added, result.removed, result.changed, result.unchanged) == (2, 1, 1, 1)
    assert [d.trigger_id for d in result.added_examples] == [
        "task.failed/eu/a/2", "task.failed/eu/c/1"
    ]  # fmt: skip
    assert [d.trigger_id for d in result.removed_examples] == ["task.failed/eu/a/1"]
    (change,) = result.changed_examples
    assert change.fields == ("verdict", "actions", "breaker_opened")
    assert (change.live.verdict, change.draft.verdict) == ("skipped:circuit_open", "ran")
    names = ("executions", "skipped", "retries", "notifications", "pages", "breaker_openings")
    assert result.live.as_dict() == dict(zip(names, (3, 1, 1, 0, 1, 0), strict=True))
    assert result.draft.as_dict() == dict(zip(names, (4, 0, 3, 0, 1, 1), strict=True))
    first, second = result.hours
    assert (first.start, second.start) == (T0, T0 + 3600)
    assert (first.added, first.removed, first.changed) == (1, 1, 1)
    assert (second.added, second.draft.retries, second.live.executions) == (1, 1, 0)


def test_retries_notifications_and_pages_are_counted_by_type_when_carried_out() -> None:
    actions = (("retry", "planned"), ("slack", "planned"), ("webhook", "skipped"),
               ("pagerduty", "planned"), ("opsgenie", "planned"), ("log", "succeeded"))  # fmt: skip
    totals = compare([], [record(actions=actions)]).draft
    assert (totals.retries, totals.notifications, totals.pages) == (1, 2, 1)


def test_a_retry_planned_differently_is_a_change() -> None:
    live = record()
    draft = live.model_copy(update={"actions": (live.actions[0].model_copy(
        update={"delay_seconds": 300.0}),)})  # fmt: skip
    result = compare([live], [draft])
    assert result.changed_examples[0].fields == ("actions",)
    assert decision_of(draft).actions == ("retry#1+300s",)


def test_two_versions_deciding_one_trigger_count_once_the_later() -> None:
    older = record(version=1, outcome="skipped", reason="circuit_open", actions=())
    newer = record(version=2)
    (only,) = final_decisions([newer, older]).values()
    assert only.verdict == "ran"


def test_examples_are_the_first_by_time_and_everything_is_counted() -> None:
    draft = [record("wf", f"task.failed/eu/t{i}/1", at=T0 + 1000 - i) for i in range(50)]
    result = compare([], draft)
    assert result.added == 50
    assert len(result.added_examples) == EXAMPLES
    assert result.added_examples[0].trigger_id == "task.failed/eu/t49/1"


def test_the_gate() -> None:
    result = compare([record("wf", "task.failed/eu/gone/1")], [record(), record("wf", "x/eu/y/1")])
    assert gate(result, fail_on_change=False, max_added=None, max_removed=None,
                max_changed=None) == []  # fmt: skip
    assert gate(result, fail_on_change=True, max_added=None, max_removed=None,
                max_changed=None) == [
        "the draft decides differently: 2 added, 1 removed, 0 changed"
    ]  # fmt: skip
    assert gate(result, fail_on_change=False, max_added=1, max_removed=1,
                max_changed=0) == ["2 executions added, more than --max-added 1"]  # fmt: skip
    same = compare([record()], [record()])
    assert gate(same, fail_on_change=True, max_added=0, max_removed=0, max_changed=0) == []


def test_scope_is_the_rehearsed_workflows_in_the_range_and_cluster() -> None:
    ids = frozenset({"wf"})
    assert in_scope(record(), ids, T0, T0 + 1)
    assert not in_scope(record(at=T0 + 1), ids, T0, T0 + 1)  # until is exclusive
    assert not in_scope(record(at=T0 - 1), ids, T0, None)
    assert not in_scope(record("other"), ids, T0, None)
    assert in_scope(record(worker=True, cluster="us"), ids, T0, None, "us")
    assert not in_scope(record(cluster="us"), ids, T0, None, "eu")


# -- properties over many records ---------------------------------------------------------------

WORKFLOW_IDS = ("a", "b")
VERDICTS = (("success", None), ("skipped", "circuit_open"), ("skipped", "recovered"))
ACTIONS = ((), (("retry", "planned"),), (("slack", "planned"),), (("pagerduty", "planned"),),
           (("retry", "skipped"),))  # fmt: skip

records = st.builds(
    lambda wf, n, hour, seq, verdict, actions, opened: record(
        wf,
        f"task.failed/eu/t{n}/1",
        at=T0 + hour * 3600 + n,
        seq=seq,
        outcome=verdict[0],
        reason=verdict[1],
        actions=actions,
        opened=opened,
    ),
    st.sampled_from(WORKFLOW_IDS),
    st.integers(0, 12),
    st.integers(0, 3),
    st.integers(0, 2),
    st.sampled_from(VERDICTS),
    st.sampled_from(ACTIONS),
    st.booleans(),
)
#: A log holds one record per (execution, seq): a re-sent record is the same record.
logs = st.lists(records, max_size=40, unique_by=lambda r: (r.execution_id, r.seq))


@settings(max_examples=200, deadline=None)
@given(logs)
def test_a_log_compared_with_itself_has_no_difference(log: list[ExecutionRecord]) -> None:
    result = compare(log, [live_view(r) for r in log])
    assert not result.differs
    assert result.unchanged == len(final_decisions(log))
    assert result.live.as_dict() == result.draft.as_dict()


@settings(max_examples=200, deadline=None)
@given(logs, logs)
def test_added_and_removed_mirror_and_counts_add_up(
    live: list[ExecutionRecord], draft: list[ExecutionRecord]
) -> None:
    forward, backward = compare(live, draft), compare(draft, live)
    assert (forward.added, forward.removed) == (backward.removed, backward.added)
    assert forward.changed == backward.changed
    before, after = len(final_decisions(live)), len(final_decisions(draft))
    assert before == forward.removed + forward.changed + forward.unchanged
    assert after == forward.added + forward.changed + forward.unchanged
    assert (forward.live.executions, forward.draft.executions) == (before, after)
    for name in ("added", "removed", "changed"):
        assert sum(getattr(h, name) for h in forward.hours) == getattr(forward, name)
    for side in ("live", "draft"):
        for total in ("executions", "retries", "notifications", "pages", "breaker_openings"):
            assert sum(getattr(getattr(h, side), total) for h in forward.hours) == getattr(
                getattr(forward, side), total
            )


@settings(max_examples=200, deadline=None)
@given(logs, logs, st.randoms(use_true_random=False))
def test_order_and_re_sent_records_change_nothing(
    live: list[ExecutionRecord], draft: list[ExecutionRecord], rng: random.Random
) -> None:
    expected = compare(live, draft).as_dict()
    # A re-sent record is the same record again (the log's at-least-once), anywhere later.
    shuffled_live = [*live, *live[: len(live) // 2]]
    shuffled_draft = list(draft)
    rng.shuffle(shuffled_live)
    rng.shuffle(shuffled_draft)
    assert compare(shuffled_live, shuffled_draft).as_dict() == expected

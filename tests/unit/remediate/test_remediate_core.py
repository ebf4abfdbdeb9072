"""The pure core of bulk remediation: selection, refusal, ids, pacing, records and undo."""

from __future__ import annotations

import json

import pytest

from flowguard.remediate import (
    Collector,
    Filter,
    Pending,
    check_ceiling,
    check_rate,
    pending_retries,
    plan,
    preview,
    record,
    revoke_for,
    run_id,
    select,
    undo_record,
    wait_before,
)
from topics.commands import RetryCommand, RevokeCommand
from topics.events import TaskFailed, TaskReceived, TaskSent, TaskStarted, TaskSucceeded
from topics.execution import ActionResult, ExecutionRecord

T0 = 1_764_000_000.0


def failed_task(
    collector: Collector, cluster: str, task_id: str, name: str, at: float, exc: str,
    *, args: str = "(7,)", queue: str = "email", root: str | None = None,
) -> None:  # fmt: skip
    root_id = root or task_id
    collector.feed(TaskSent(cluster=cluster, task_id=task_id, timestamp=at - 2, name=name,
                            args=args, kwargs="{'k': 1}", queue=queue, root_id=root_id,
                            parent_id=None))  # fmt: skip
    collector.feed(TaskReceived(cluster=cluster, task_id=task_id, timestamp=at - 1))
    collector.feed(TaskFailed(cluster=cluster, task_id=task_id, timestamp=at, exception=exc))


def fleet() -> Collector:
    c = Collector()
    failed_task(c, "prod", "a", "billing.charge", T0, "ConnectionError('reset by peer 10.0.0.1')")
    failed_task(c, "prod", "b", "billing.refund", T0 + 10, "KeyError('customer_id')")
    failed_task(c, "eu", "c", "billing.charge", T0 + 20, "ConnectionError('timeout')",
                queue="payments")  # fmt: skip
    failed_task(c, "eu", "d", "mail.send", T0 + 30, "ConnectionError('timeout')")
    return c


def test_retry_selects_failures_by_every_filter_field() -> None:
    found = fleet().candidates("retry")
    assert [c.task_id for c in found] == ["a", "b", "c", "d"]
    names = lambda f: [c.task_id for c in select(found, f)]  # noqa: E731
    assert names(Filter(task="billing.*")) == ["a", "b", "c"]
    assert names(Filter(exception="ConnectionError")) == ["a", "c", "d"]
    assert names(Filter(error=r"time(out)?")) == ["c", "d"]
    assert names(Filter(clusters=("eu",))) == ["c", "d"]
    assert names(Filter(queues=("pay*",))) == ["c"]
    assert names(Filter(since=T0 + 10, until=T0 + 30)) == ["b", "c"]
    assert names(Filter(task="billing.*", clusters=("prod",), exception="Conn*")) == ["a"]
    assert names(Filter(fingerprint=found[2].fingerprint)) == ["c"]
    # What the failure said before it failed: name, args, queue from task-sent.
    assert (found[0].name, found[0].args, found[0].queue) == ("billing.charge", "(7,)", "email")
    assert (found[0].exception_type, found[0].error_message) == (
        "ConnectionError", "reset by peer 10.0.0.1",
    )  # fmt: skip


def test_a_failure_whose_chain_succeeded_after_is_not_selected_again() -> None:
    c = fleet()
    c.feed(TaskSucceeded(cluster="prod", task_id="a-retry", timestamp=T0 + 5, root_id="a"))
    assert [x.task_id for x in c.candidates("retry")] == ["b", "c", "d"]
    # A success before the failure does not count.
    c.feed(TaskSucceeded(cluster="eu", task_id="d-old", timestamp=T0 - 100, root_id="d"))
    assert [x.task_id for x in c.candidates("retry")] == ["b", "c", "d"]


def test_revoke_selects_unfinished_tasks_and_refuses_error_filters() -> None:
    c = fleet()
    c.feed(TaskSent(cluster="prod", task_id="q1", timestamp=T0, name="report.build", queue="slow"))
    c.feed(TaskStarted(cluster="prod", task_id="q2", timestamp=T0, name="report.build"))
    c.feed(TaskSent(cluster="prod", task_id="q3", timestamp=T0, name="report.build"))
    c.feed(TaskSucceeded(cluster="prod", task_id="q3", timestamp=T0 + 1))
    assert [x.task_id for x in c.candidates("revoke")] == ["q1", "q2"]
    assert c.tracked == 4 + 2  # the four failed, q1 and q2: q3 succeeded and is forgotten
    with pytest.raises(ValueError, match=r"^error: only a retry"):
        Filter(error="x").refuse_for("revoke")
    Filter(task="report.*").refuse_for("revoke")


def test_bad_filters_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"^error: not a regular expression"):
        Filter(error="(")
    with pytest.raises(ValueError, match=r"^until: must be later"):
        Filter(since=T0, until=T0)
    with pytest.raises(ValueError, match=r"^name:"):
        run_id(" !! ")
    with pytest.raises(ValueError, match=r"^rate:"):
        check_rate(0)
    with pytest.raises(ValueError, match=r"^ceiling: the filter selects 11 tasks"):
        check_ceiling(11, 10)
    check_ceiling(10, 10)
    assert run_id("Incident 4211") == "incident-4211"


def test_retry_is_the_original_call_with_an_id_stable_across_runs() -> None:
    [first, *_] = fleet().candidates("retry")
    action = plan("incident-4211", "retry", first, now=T0 + 100)
    command = action.command
    assert isinstance(command, RetryCommand)
    assert action.refused is None
    assert command.command_id == "remediate/incident-4211/prod/a"
    assert (command.name, command.args, command.kwargs, command.queue) == (
        "billing.charge", "(7,)", "{'k': 1}", "email",
    )  # fmt: skip
    assert (command.original_task_id, command.root_id, command.parent_id) == ("a", "a", "a")
    assert command.workflow_id == "remediate.incident-4211"
    # The same run again: the same command id and task id (the bridge answers duplicate).
    again = plan("incident-4211", "retry", first, now=T0 + 999).command
    assert isinstance(again, RetryCommand)
    assert (again.command_id, again.task_id) == (command.command_id, command.task_id)
    other = plan("incident-4212", "retry", first, now=T0).command
    assert isinstance(other, RetryCommand)
    assert other.task_id != command.task_id


def test_a_retry_that_cannot_be_sent_exactly_is_refused_with_the_reason() -> None:
    c = Collector()
    failed_task(c, "prod", "cut", "x.y", T0, "ValueError('v')", args="('aaaa...',")
    c.feed(TaskFailed(cluster="prod", task_id="nameless", timestamp=T0, exception="E('x')"))
    cut, nameless = c.candidates("retry")
    refused = plan("r", "retry", cut, now=T0)
    assert refused.command is None
    assert refused.refused
    assert "args" in refused.refused
    assert plan("r", "retry", nameless, now=T0).refused.startswith("task name unknown")  # type: ignore[union-attr]
    revoke = plan("r", "revoke", cut, now=T0).command
    assert isinstance(revoke, RevokeCommand)
    assert revoke.task_id == "cut"


def test_preview_counts_and_samples() -> None:
    p = preview(fleet().candidates("retry"), sample_size=2)
    assert p.count == 4
    assert [s.task_id for s in p.sample] == ["a", "b"]
    assert p.by_cluster == {"prod": 2, "eu": 2}
    assert p.by_name == {"billing.charge": 2, "billing.refund": 1, "mail.send": 1}


def test_pacing_keeps_actions_apart_and_never_bursts_after_a_stall() -> None:
    assert wait_before(None, 2.0, now=T0) == 0
    assert wait_before(T0, 2.0, now=T0) == 0.5
    assert wait_before(T0, 2.0, now=T0 + 0.2) == pytest.approx(0.3)
    # After a stall the next one goes at once, and the one after waits its full interval.
    assert wait_before(T0, 2.0, now=T0 + 9) == 0
    assert wait_before(T0 + 9, 2.0, now=T0 + 9) == 0.5


def test_each_action_is_an_execution_record_of_the_public_schema() -> None:
    [first, *_] = fleet().candidates("retry")
    action = plan("incident-4211", "retry", first, now=T0)
    rec = record("incident-4211", "incident 4211", "alice", "retry", action, "sent", "", 0, 50,
                 now=T0 + 1)  # fmt: skip
    wire = json.loads(rec.to_json())
    assert wire["schema"] == "flowguard.execution/1"
    assert wire["workflow"] == {"id": "remediate.incident-4211", "name": "incident 4211",
                                "version": 0}  # fmt: skip
    assert wire["trigger"]["event"] == "remediate.retry"
    assert "alice" in wire["trigger"]["reason"]
    [act] = wire["actions"]
    assert (act["type"], act["status"], act["retry_task_id"]) == (
        "retry", "sent", action.command.task_id,  # type: ignore[union-attr]
    )  # fmt: skip
    assert ExecutionRecord.model_validate(wire) == rec


def _retry_record(execution_id: str, status: str, seq: int = 0) -> ExecutionRecord:
    [first, *_] = fleet().candidates("retry")
    rec = record("w", "w", "x", "retry", plan("w", "retry", first, now=T0), "sent", "", 0, 1, T0)
    action = ActionResult.model_validate(
        {"action_id": f"{execution_id}/0", "type": "retry", "status": status,
         "command_id": f"{execution_id}/0", "retry_task_id": f"t-{execution_id}"}
    )  # fmt: skip
    return rec.model_copy(update={"execution_id": execution_id, "seq": seq,
                                  "actions": (action,)})  # fmt: skip


def test_undo_finds_what_is_still_pending_and_records_it() -> None:
    records = [
        _retry_record("e1", "scheduled"),
        _retry_record("e2", "scheduled"),
        _retry_record("e2", "succeeded", seq=1),  # settled: not pending
        _retry_record("e3", "sent"),
        _retry_record("e4", "failed"),
    ]
    pending = pending_retries(records, "remediate.w")
    assert [(p.execution_id, p.status) for p in pending] == [("e1", "scheduled"), ("e3", "sent")]
    assert pending_retries(records, "other") == []
    revoke = revoke_for(pending[0], T0)
    assert (revoke.task_id, revoke.cluster, revoke.command_id) == ("t-e1", "prod", "undo/e1/0")
    undo = undo_record("remediate.w", "w", "bob", pending, T0)
    assert [a.status for a in undo.actions] == ["cancelled", "cancelled"]
    assert [a.retry_task_id for a in undo.actions] == ["t-e1", "t-e3"]
    assert "bob" in undo.trigger.reason
    assert "2 pending" in undo.trigger.reason


def test_pending_is_the_dataclass_undo_takes() -> None:
    p = Pending("w", "e", "c", "prod", "r", "t", "scheduled")
    assert undo_record("w", "w", "a", [p], T0).actions[0].command_id == "c"

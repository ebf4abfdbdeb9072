"""Deciding: the keys a notice carries for the receiver's side (PagerDuty's dedup_key)."""

from __future__ import annotations

from tests import celery_events as ev
from tests.unit.actions.notices import ROUTING_KEY, engine_notices, failing_chain

T0 = 1_760_000_000.0

PAGE = {
    "name": "page on failure",
    "trigger": {"event": "task.failed"},
    "action": {"type": "pagerduty", "routing_key": ROUTING_KEY},
}


def test_every_failure_of_one_chain_shares_one_dedup_key() -> None:
    found = engine_notices(PAGE, failing_chain("t1", 5, T0) + failing_chain("t9", 1, T0 + 100))
    assert len(found) == 6
    assert {n.dedup_key for n in found[:5]} == {"page-on-failure/prod/t1"}
    assert found[5].dedup_key == "page-on-failure/prod/t9"
    assert len({n.action_id for n in found}) == 6, "one delivery each; PagerDuty folds them"


def test_each_worker_going_offline_gets_its_own_dedup_key() -> None:
    doc = {**PAGE, "name": "worker down", "trigger": {"event": "worker.offline"}}
    found = engine_notices(
        doc,
        ev.online_then_offline(T0, "celery@w1", "celery@w2"),
    )
    assert [n.dedup_key for n in found] == [
        "worker-down/prod/celery@w1",
        "worker-down/prod/celery@w2",
    ]

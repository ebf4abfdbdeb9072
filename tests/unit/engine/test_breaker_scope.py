"""A circuit breaker scoped per cluster (``circuit_breaker.scope: cluster``).

The fleet benchmark (docs/benchmarks.md) saw one cluster's failure storm fill a retry
workflow's breaker and skip every other cluster's retries until the window moved on. A
breaker per cluster keeps the storm to its own cluster; the default stays one breaker per
workflow, as the product page describes it. Replay and the live app decide through the same
``executions.on_matched``, so both keep these breakers alike (each its own entry, as retry
budgets are).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from flowguard.api.fleet import history_facts
from flowguard.celery_wire.events import translate
from flowguard.control.history import HistoryProjection
from flowguard.engine import executions
from flowguard.engine.core import Output
from flowguard.engine.documents import parse_workflow
from tests import celery_events as ev
from tests.unit.control.records import message
from tests.unit.engine.test_core import T0, engine

STORM, QUIET = "storm", "quiet"


def workflow(**breaker: Any) -> dict[str, Any]:
    return {
        "name": "notify failures",
        "trigger": {"event": "task.failed"},
        "action": {"type": "webhook", "url": "https://hooks.example/x"},
        "circuit_breaker": {"max_executions": 2, "time_window_seconds": 600, **breaker},
    }


def feed_clusters(doc: dict[str, Any]) -> Output:
    """Three failures in the storm cluster, then one in the quiet one, a second apart."""
    eng, total = engine(doc), Output()
    runs = [(STORM, f"s{i}", T0 + 10 * i) for i in range(3)] + [(QUIET, "q0", T0 + 40)]
    for cluster, task_id, at in runs:
        for raw in ev.run(task_id, at, "app.charge"):
            event = translate(raw, cluster)
            assert event is not None
            out = eng.feed(event)
            total.records += out.records
            total.notices += out.notices
    return total


def outcomes(out: Output) -> dict[str, tuple[str, str | None]]:
    return {
        r.task.id: (r.outcome, r.circuit_breaker.cluster) for r in out.records if r.task is not None
    }


def test_a_workflow_breaker_skips_every_cluster_once_one_storm_opens_it() -> None:
    found = outcomes(feed_clusters(workflow()))
    assert found == {
        "s0": ("success", None), "s1": ("success", None), "s2": ("skipped", None),
        "q0": ("skipped", None),
    }  # fmt: skip


def test_a_breaker_per_cluster_keeps_the_storm_to_its_cluster() -> None:
    out = feed_clusters(workflow(scope="cluster"))
    assert outcomes(out) == {
        "s0": ("success", STORM), "s1": ("success", STORM), "s2": ("skipped", STORM),
        "q0": ("success", QUIET),
    }  # fmt: skip
    opened = [n.text for n in out.notices if n.action_id.endswith("circuit-opened")]
    assert len(opened) == 1
    assert "on cluster storm" in opened[0]


def test_each_cluster_breaker_is_an_entry_of_its_own_that_expires_once_unused() -> None:
    published = parse_workflow(workflow(scope="cluster"), source="test")
    assert published.breaker.scope == "cluster"
    key = executions.breaker_key("wf", STORM)
    state = executions.BreakerState(ran_at=(T0,), seen=T0)
    entry = executions.ClusterBreaker(state, T0, 600.0, "wf")
    assert executions.load_entry(entry.to_json()) == entry
    assert key == "breaker/wf/storm"
    assert not executions.breaker_expired(T0, 600.0, False, T0 + 599)
    assert executions.breaker_expired(T0, 600.0, False, T0 + 600)
    assert not executions.breaker_expired(T0, 600.0, True, T0 + 601)


def test_the_fleet_view_lists_only_the_clusters_whose_own_breaker_is_open(tmp_path: Path) -> None:
    records = feed_clusters(workflow(scope="cluster")).records
    workflow_id = records[0].workflow.id
    now = T0 + 60  # within the window of every record
    with HistoryProjection(tmp_path / "h.sqlite") as history:
        history.apply("t", [message(r, offset=n) for n, r in enumerate(records)])
        version: Any = SimpleNamespace(workflow_id=workflow_id)
        (found,) = history_facts(history, [version], now).open_breakers
    # The quiet cluster's execution is the newest record, and its breaker is closed.
    assert found.clusters == [STORM]

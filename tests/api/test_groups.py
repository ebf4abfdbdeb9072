"""Failure groups over the real API: execution records the engine made, on the real
execution-log topic, grouped by fingerprint; never-retry lists edited as workflow versions."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from flowguard.api import groups as groups_api
from flowguard.api.services import Services
from flowguard.celery_wire.events import translate
from flowguard.control.history import HistoryProjection
from flowguard.engine.core import Engine, EngineConfig
from flowguard.engine.documents import parse_workflow
from flowguard.engine.fingerprint import fingerprint
from flowguard.engine.matching import Published
from tests import celery_events as ev
from tests.api.server import Served, in_thread
from tests.helpers import wait_until
from tests.processes import send_all
from tests.unit.control.records import message, record
from topics.execution import ExecutionRecord
from topics.record import iso
from topics.registry import EXECUTION_LOG

RETRY = {
    "name": "retry charges",
    "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "app.*"}},
    "action": {"type": "retry", "delay_seconds": 0, "max_attempts": 3},
}
PAGE = {
    "name": "page on charges",
    "trigger": {"event": "task.failed"},
    "action": {"type": "webhook", "url": "https://hooks.example.com/page"},
}
ORDERS = fingerprint("app.charge", "KeyError", "order-1")


def failures(t0: float) -> list[tuple[str, list[dict[str, Any]]]]:
    """Three KeyErrors on three orders (one on another cluster) and a ValueError."""
    return [
        ("prod", ev.run("t1", t0, "app.charge", exception="KeyError('order-17')")),
        ("prod", ev.run("t2", t0 + 60, "app.charge", exception="KeyError('order-99')")),
        ("eu", ev.run("t3", t0 + 120, "app.charge", exception="KeyError('order-5')")),
        ("prod", ev.run("t4", t0 + 180, "app.charge", exception="ValueError('bad amount 7')")),
    ]


def decided(t0: float, *docs: dict[str, Any]) -> list[ExecutionRecord]:
    """What the engine decides on :func:`failures` with these workflows (version 1 each)."""
    engine = Engine([Published.of(parse_workflow(d, source="test")) for d in docs], EngineConfig())
    records: list[ExecutionRecord] = []
    for cluster, raws in failures(t0):
        for raw in raws:
            event = translate(raw, cluster)
            assert event is not None
            records += engine.feed(event).records
    return records


def publish(served: Served, records: list[ExecutionRecord]) -> None:
    items = [(r.workflow.id.encode(), r.to_json().encode(), None) for r in records]
    in_thread(send_all(served.bootstrap, EXECUTION_LOG.name(served.prefix), items))


def seed(served: Served, t0: float) -> list[ExecutionRecord]:
    """Both workflows saved, their records on the log; the first one as a record written
    before fingerprints existed (no ``task.fingerprint``)."""
    with served.client() as api:
        for doc in (RETRY, PAGE):
            api.post("/api/workflows", json={"definition": doc}).raise_for_status()
    records = decided(t0, RETRY, PAGE)
    assert records[0].task is not None
    old = records[0].model_copy(
        update={"task": records[0].task.model_copy(update={"fingerprint": None})}
    )
    publish(served, [old, *records[1:]])
    return records


def groups(api: httpx.Client, **params: str) -> dict[str, Any]:
    answer = api.get("/api/groups", params=params)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_groups_count_first_last_clusters_and_workflows(served: Served) -> None:
    t0 = time.time() - 3600
    records = seed(served, t0)
    with served.client("viewer") as api:
        found = wait_until(
            lambda: (g := groups(api))["scanned"] == len(records) and g,
            timeout_seconds=30,
            what="the records in the history",
        )
    assert found["complete"] is True
    by_fp = {g["fingerprint"]: g for g in found["groups"]}
    assert len(by_fp) == 2, "three KeyErrors on three orders are one group; the ValueError another"
    orders = found["groups"][0]
    assert orders["fingerprint"] == ORDERS
    assert (orders["task_name"], orders["exception_type"], orders["message"]) == (
        "app.charge", "KeyError", "order-<n>",
    )  # fmt: skip
    assert orders["failures"] == 3, "failures, not executions (two workflows acted on each)"
    assert (orders["first_seen"], orders["last_seen"]) == (iso(t0 + 3), iso(t0 + 123))
    assert orders["clusters"] == ["eu", "prod"]
    assert orders["example"] == "order-5"
    acted = {w["id"]: w for w in orders["workflows"]}
    assert acted["retry-charges"] | {"name": "x"} == {
        "id": "retry-charges", "name": "x", "executions": 3, "retries": 3,
        "never_retried": 0, "can_retry": True, "never_retry": False,
    }  # fmt: skip
    assert acted["page-on-charges"]["can_retry"] is False
    with served.client("viewer") as api:
        only_eu = groups(api, cluster="eu", since=iso(t0 - 60) or "")
    assert [(g["fingerprint"], g["failures"]) for g in only_eu["groups"]] == [(ORDERS, 1)]
    with served.client("viewer") as api:
        one = groups(api, fingerprint=ORDERS)
    assert [g["fingerprint"] for g in one["groups"]] == [ORDERS]


def test_never_retry_through_the_api_is_a_workflow_version_the_engine_honours(
    served: Served,
) -> None:
    seed(served, time.time() - 3600)
    path = f"/api/groups/{ORDERS}/never-retry/retry-charges"
    with served.client("viewer") as api:
        assert api.put(path).status_code == 403
    with served.client() as api:
        added = api.put(path)
        assert added.status_code == 200, added.text
        assert added.json() == {
            "workflow_id": "retry-charges", "workflow_version": 2,
            "never_retry": [ORDERS], "changed": True,
        }  # fmt: skip
        assert api.put(path).json()["changed"] is False, "asking twice saves nothing"
        detail = api.get("/api/workflows/retry-charges").json()
        assert detail["definition"]["action"]["never_retry"] == [ORDERS]
        listed = wait_until(
            lambda: (g := groups(api))["groups"] and g, timeout_seconds=30, what="groups"
        )
        (retry,) = [w for w in listed["groups"][0]["workflows"] if w["id"] == "retry-charges"]
        assert retry["never_retry"] is True

        # the saved version decides: its retries of the group are refused, with the reason
        saved = parse_workflow(detail["definition"], source="test")
        again = decided(time.time(), saved.model_dump(exclude_none=True))
        skipped = [a for r in again for a in r.actions if a.status == "skipped"]
        assert len(skipped) == 3
        assert all(
            a.detail.startswith(f"never_retry: failures with fingerprint {ORDERS}") for a in skipped
        )

        removed = api.delete(path)
        assert removed.json()["never_retry"] == []
        assert removed.json()["workflow_version"] == 3
        assert (
            "never_retry"
            not in api.get("/api/workflows/retry-charges").json()["definition"]["action"]
        )


def test_bad_requests_say_why(served: Served) -> None:
    seed(served, time.time() - 3600)
    with served.client() as api:
        bad_fp = api.put("/api/groups/KeyError/never-retry/retry-charges")
        assert bad_fp.status_code == 422
        assert "fingerprint" in bad_fp.text
        no_retry = api.put(f"/api/groups/{ORDERS}/never-retry/page-on-charges")
        assert no_retry.status_code == 409
        assert no_retry.json()["error"]["code"] == "no_retry_action"
        missing = api.put(f"/api/groups/{ORDERS}/never-retry/nope")
        assert missing.status_code == 404
        bad_query = api.get("/api/groups", params={"fingerprint": "KeyError"})
        assert bad_query.status_code == 422
        assert "fingerprint" in bad_query.text
        bad_time = api.get("/api/groups", params={"since": "yesterday"})
        assert bad_time.status_code == 422
        assert "since" in bad_time.text


def test_a_request_reads_at_most_the_cap_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HistoryProjection(tmp_path / "h.sqlite") as history:
        made = [record(i) for i in range(0, 40, 2)]  # even i: task.failed
        history.apply("t", [message(r, offset=n) for n, r in enumerate(made)])
        svc = cast(Services, SimpleNamespace(history=history))
        monkeypatch.setattr(groups_api, "_PAGE", 4)
        monkeypatch.setattr(groups_api, "MAX_SCANNED", 12)
        read, complete = groups_api._scan(svc, 0, 4e9, None)
        assert (len(read), complete) == (12, False)
        monkeypatch.setattr(groups_api, "MAX_SCANNED", 10)
        read, complete = groups_api._scan(svc, 0, 4e9, None)
        assert (len(read), complete) == (10, False), "a last page cut to the cap"
        for cap in (20, 40):  # exactly all of them, and room to spare
            monkeypatch.setattr(groups_api, "MAX_SCANNED", cap)
            read, complete = groups_api._scan(svc, 0, 4e9, None)
            assert (len(read), complete) == (20, True)

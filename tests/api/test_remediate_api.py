"""``/api/remediate`` on the real app and Kafka: roles, the confirmation, the ceiling, a paced
run with progress, abort, and undo, each command on ``<prefix>.commands`` signed."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.api.server import Served, in_thread
from tests.api.test_workflows_api import workflow
from tests.helpers import wait_until
from tests.processes import TEST_COMMAND_KEY, TopicReader, send_all
from topics.events import TaskFailed, TaskSent
from topics.registry import EVENTS
from topics.signing import parse_cluster_keys, verify

FILTER = {"task": "billing.*", "since": "10m"}


def seed_failures(served: Served) -> None:
    """Three billing failures (clusters a and b) and one mail failure, a minute ago, on the
    app's ``<prefix>.events`` as a bridge publishes them."""
    now = time.time()
    items: list[tuple[bytes, bytes, int | None]] = []
    for n, (cluster, task_id, name) in enumerate([
        ("a", "t1", "billing.charge"), ("a", "t2", "billing.charge"),
        ("b", "t3", "billing.refund"), ("b", "m1", "mail.send"),
    ]):  # fmt: skip
        at = now - 60 + n
        sent = TaskSent(cluster=cluster, task_id=task_id, timestamp=at, name=name,
                        args=f"({n},)", kwargs="{}", queue="q", root_id=task_id)  # fmt: skip
        failed = TaskFailed(cluster=cluster, task_id=task_id, timestamp=at + 0.5,
                            exception="ConnectionError('reset')")  # fmt: skip
        for event in (sent, failed):
            key = f"{cluster}/{task_id}".encode()
            items.append((key, event.model_dump_json().encode(), int(event.timestamp * 1000)))
    in_thread(send_all(served.bootstrap, EVENTS.name(served.prefix), items))


@pytest.fixture
def api(served: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """The app with :func:`seed_failures`' failures, signing with the test bridges' key."""
    monkeypatch.setenv("FLOWGUARD_COMMAND_KEYS", f"*={TEST_COMMAND_KEY}")
    seed_failures(served)
    return served


def progress(client: httpx.Client, run: str) -> dict[str, Any]:
    answer = client.get(f"/api/remediate/runs/{run}")
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()
    return found


def test_roles_confirmation_ceiling_run_abort_and_undo(api: Served) -> None:
    with api.client("viewer") as viewer, api.client("editor") as editor, \
            api.client("admin") as admin:  # fmt: skip
        # Viewers cannot; editors cannot set the ceiling; admins can.
        assert viewer.post("/api/remediate/preview", json=FILTER).status_code == 403
        assert (
            viewer.post("/api/remediate/undo", json={"run": "x", "confirm": True}).status_code
            == 403
        )
        assert editor.put("/api/remediate/ceiling", json={"ceiling": 2}).status_code == 403
        assert admin.put("/api/remediate/ceiling", json={"ceiling": 2}).json() == {"ceiling": 2}
        assert viewer.get("/api/remediate/ceiling").json() == {"ceiling": 2}

        shown = editor.post("/api/remediate/preview", json=FILTER)
        assert shown.status_code == 200, shown.text
        preview = shown.json()
        assert preview["count"] == 3
        assert preview["by_cluster"] == {"a": 2, "b": 1}
        assert [s["task_id"] for s in preview["sample"]] == ["t1", "t2", "t3"]

        # A bad filter names the field.
        bad = editor.post("/api/remediate/preview", json={**FILTER, "error": "("})
        assert bad.status_code == 422
        assert bad.json()["error"]["problems"][0]["field"] == "body.error"
        when = editor.post("/api/remediate/preview", json={**FILTER, "since": "yesterday"})
        assert when.json()["error"]["problems"][0]["field"] == "body.since"

        run = {**FILTER, "name": "Incident 4211", "rate": 50}
        over = editor.post("/api/remediate/runs", json={**run, "confirm": 3})
        assert (over.status_code, over.json()["error"]["code"]) == (409, "over_ceiling")
        admin.put("/api/remediate/ceiling", json={"ceiling": 100}).raise_for_status()
        unconfirmed = editor.post("/api/remediate/runs", json={**run, "confirm": 2})
        assert (unconfirmed.status_code, unconfirmed.json()["error"]["code"]) == (
            409, "not_confirmed",
        )  # fmt: skip
        assert "selects 3 tasks now" in unconfirmed.json()["error"]["message"]

        started = editor.post("/api/remediate/runs", json={**run, "confirm": 3})
        assert started.status_code == 202, started.text
        assert started.json()["run"] == "incident-4211"
        done = wait_until(
            lambda: (p := progress(viewer, "incident-4211"))["done"] == 3 and p,
            timeout_seconds=30, what="the run to finish",
        )  # fmt: skip
        assert (done["sent"], done["refused"], done["aborted"]) == (3, 0, False)

        commands = TopicReader(api.bootstrap, f"{api.prefix}.commands")
        keys = {k.key_id: k for k in parse_cluster_keys(f"*={TEST_COMMAND_KEY}").values()}
        retries = commands.wait_for(lambda v: len(v) >= 3 and v, timeout=30, what="3 commands")
        assert {(c["original_task_id"], c["args"]) for c in retries} == {
            ("t1", "(0,)"), ("t2", "(1,)"), ("t3", "(2,)"),
        }  # fmt: skip
        assert all(verify(c, keys) is None for c in retries)

        # A slow run, aborted after its first task.
        slow_run = {**FILTER, "name": "slow one", "rate": 0.2, "confirm": 3}
        slow = editor.post("/api/remediate/runs", json=slow_run)
        assert slow.status_code == 202, slow.text
        wait_until(lambda: progress(viewer, "slow-one")["done"] >= 1, timeout_seconds=30,
                   what="the slow run's first task")  # fmt: skip
        assert editor.post("/api/remediate/runs/slow-one/abort").status_code == 200
        stopped = wait_until(
            lambda: (p := progress(viewer, "slow-one"))["aborted"] and p,
            timeout_seconds=30, what="the run to stop",
        )  # fmt: skip
        assert stopped["done"] == 1

        # Undo the first run: a revoke for each retry it sent, and the record of it.
        unconfirmed_undo = editor.post("/api/remediate/undo", json={"run": "Incident 4211"})
        assert unconfirmed_undo.status_code == 422
        undone = editor.post("/api/remediate/undo", json={"run": "Incident 4211", "confirm": True})
        assert undone.status_code == 200, undone.text
        cancelled = {c["task_id"] for c in undone.json()["cancelled"]}
        assert cancelled == {c["task_id"] for c in retries}
        revokes = commands.wait_for(
            lambda v: [c for c in v if c["kind"] == "command.revoke"] or None,
            timeout=30, what="the revokes",
        )  # fmt: skip
        assert {c["task_id"] for c in revokes} == cancelled
        assert all(verify(c, keys) is None for c in revokes)


def test_undo_of_a_workflow_disables_it(api: Served) -> None:
    with api.client("editor") as editor:
        saved = editor.post("/api/workflows", json={"definition": workflow()})
        saved.raise_for_status()
        wid = saved.json()["workflow"]["id"]
        missing = editor.post("/api/remediate/undo", json={"workflow_id": "nope", "confirm": True})
        assert missing.status_code == 404
        both = editor.post("/api/remediate/undo", json={"workflow_id": wid, "run": "x"})
        assert both.json()["error"]["problems"][0]["field"] == "body.workflow_id"
        undone = editor.post("/api/remediate/undo", json={"workflow_id": wid, "confirm": True})
        assert undone.status_code == 200, undone.text
        assert (undone.json()["disabled"], undone.json()["cancelled"]) == (True, [])
        assert editor.get(f"/api/workflows/{wid}").json()["enabled"] is False

"""``flowguard doctor`` reads the recent events on the real broker and names the clusters whose
events carry no ``task-sent`` (Celery's default), with the setting to turn on."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from flowguard.cli import main as cli
from flowguard.settings import get_settings
from tests.processes import produce
from topics.events import BridgeStatus, Event, TaskFailed, TaskReceived, TaskSent


def record(event: Event) -> tuple[bytes, bytes]:
    return f"{event.cluster}/x".encode(), event.model_dump_json().encode()


def test_doctor_names_clusters_whose_events_carry_no_task_sent(
    kafka_bootstrap: str, topics: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()

    def task(kind: type[TaskSent | TaskReceived | TaskFailed], cluster: str, **more: str) -> Event:
        return kind(cluster=cluster, task_id="t1", timestamp=now, **more)

    def status(cluster: str, app: str | None) -> Event:
        return BridgeStatus(
            cluster=cluster, bridge_id="b1", timestamp=now, interval_seconds=5, started_at=now,
            celery_connected=True, kafka_connected=True, events_received=1,
            events_published=1, events_dropped=0, celery_app=app,
        )  # fmt: skip

    events = [
        # Celery's defaults: received and failed, and the bridge's own task.sent of a retry.
        task(TaskReceived, "defaults"), task(TaskFailed, "defaults"),
        task(TaskSent, "defaults", hostname="flowguard-bridge@host", queue="celery"),
        status("defaults", None),
        # task_send_sent_event = True.
        task(TaskSent, "sends", hostname="gen1@host", queue="email"), task(TaskReceived, "sends"),
        # No task-sent, but its bridge has the app.
        task(TaskReceived, "routed"), status("routed", "proj.celery:app"),
    ]  # fmt: skip
    produce(kafka_bootstrap, f"{topics}.events", [record(e) for e in events])
    monkeypatch.setenv("FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("FLOWGUARD_TOPIC_PREFIX", topics)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["doctor"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if " task-sent: " in line]
    assert lines == [
        "warn task-sent: cluster 'defaults': 3 recent task events, none a task-sent from "
        "Celery: retries cannot learn a task's queue and go to the default queue. Set "
        "task_send_sent_event = True in the cluster's Celery app, or start its bridge with "
        "--app proj.celery:app",
        "ok   task-sent: cluster 'routed': 1 recent task events, no task-sent; its bridge "
        "routes retries with the app proj.celery:app",
        "ok   task-sent: cluster 'sends': 2 recent task events, 1 of them task-sent",
    ]

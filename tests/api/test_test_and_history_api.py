"""Test Workflow and execution history over the real API and Kafka.

Test Workflow's records equal `flowguard replay`'s for an uploaded stream and for the
same events read back from ``<prefix>.events``; history filters and pages over 10,000
records produced to ``<prefix>.execution-log``; cancel produces a CancelExecution.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from click.testing import CliRunner

from flowguard.celery_wire.events import parse_line
from flowguard.cli import main
from flowguard.control.workflow_templates import TEMPLATE_DIR
from tests.api.server import Served, publish_records, serve
from tests.helpers import wait_until
from topics.events import event_key
from topics.execution import ExecutionRecord
from topics.triggers import CancelExecution

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = TEMPLATE_DIR / "auto-retry-network-errors.yaml"
STREAMS = REPO / "tests" / "data" / "streams"


def replay_lines(stream: Path, cluster: str = "default") -> list[str]:
    result = CliRunner().invoke(
        main,
        ["replay", "--workflows", str(TEMPLATE), "--events", str(stream), "--cluster", cluster],
    )
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


@pytest.mark.parametrize("stream", ["basic", "celery_retry", "flaky_chain"])
def test_upload_equals_flowguard_replay(served: Served, stream: str) -> None:
    path = STREAMS / f"{stream}.jsonl"
    with served.client("editor") as api:
        answer = api.post(
            "/api/test", json={"yaml": TEMPLATE.read_text(), "events_jsonl": path.read_text()}
        )
    assert answer.status_code == 200, answer.text
    got = [ExecutionRecord.model_validate(r).to_json() for r in answer.json()["records"]]
    assert got == replay_lines(path)
    assert answer.json()["source"] == "upload"


async def _produce_events(served: Served, lines: list[bytes], cluster: str) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=served.bootstrap)
    await producer.start()
    count = 0
    try:
        for line in lines:
            event = parse_line(orjson.loads(line), cluster)
            if event is not None:
                await producer.send_and_wait(
                    f"{served.prefix}.events",
                    event.model_dump_json().encode(),
                    key=event_key(event).encode(),
                )
                count += 1
    finally:
        await producer.stop()
    return count


def test_last_hours_of_a_cluster_equal_flowguard_replay(served: Served) -> None:
    stream = STREAMS / "flaky_chain.jsonl"
    asyncio.run(_produce_events(served, stream.read_bytes().splitlines(), "prod"))
    asyncio.run(
        _produce_events(served, (STREAMS / "basic.jsonl").read_bytes().splitlines(), "other")
    )
    with served.client("editor") as api:
        api.post("/api/workflows", json={"yaml": TEMPLATE.read_text()}).raise_for_status()
        answer = api.post(
            "/api/test",
            json={"workflow_id": "auto-retry-network-errors", "hours": 1, "cluster": "prod"},
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["stats"]["events"] > 0, body["stats"]
    expected = [json.loads(line) for line in replay_lines(stream, "prod")]
    assert expected, "the stream fires the template"
    # A saved workflow runs at its version; everything else is what replay decided.
    got = body["records"]
    assert [r["workflow"]["version"] for r in got] == [1] * len(got)
    assert [r["trigger"] for r in got] == [r["trigger"] for r in expected]
    assert [r["actions"][0]["status"] for r in got] == [r["actions"][0]["status"] for r in expected]
    assert body["source"] == "cluster prod, last 1 h"
    assert all(r["task"]["cluster"] == "prod" for r in got)


def _record(n: int, workflow: str, outcome: str) -> ExecutionRecord:
    return ExecutionRecord.model_validate(
        {
            "execution_id": f"exec-{n:05d}",
            "workflow": {"id": workflow, "name": workflow, "version": 1},
            "trigger": {
                "id": f"t{n}",
                "event": "task.failed",
                "at": f"2026-11-02T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
            },
            "task": {
                "cluster": "prod",
                "id": f"task-{n}",
                "root_id": f"root-{n % 100}",
                "name": "app.tasks.send",
            },
            "circuit_breaker": {
                "state": "closed",
                "count": 1,
                "max_executions": 100,
                "window_seconds": 3600,
            },
            "actions": [
                {
                    "action_id": f"exec-{n:05d}/0",
                    "type": "retry",
                    "status": "scheduled" if n == 7 else "sent",
                }
            ],
            "outcome": outcome,
        }
    )


async def _read_cancel(served: Served) -> CancelExecution:
    consumer = AIOKafkaConsumer(
        f"{served.prefix}.triggers",
        bootstrap_servers=served.bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert message.key == b"wf-a"
    return CancelExecution.model_validate_json(message.value)


def test_history_filters_pages_counts_chain_and_cancel(served: Served) -> None:
    records = [
        _record(n, "wf-a" if n % 2 else "wf-b", "failure" if n % 10 == 0 else "success")
        for n in range(10_000)
    ]
    publish_records(served, records)
    with served.client("editor") as api:

        def total() -> bool:
            page = api.get("/api/executions", params={"limit": 1000}).json()
            seen = len(page["items"])
            while page["next_cursor"]:
                page = api.get(
                    "/api/executions", params={"limit": 1000, "cursor": page["next_cursor"]}
                ).json()
                seen += len(page["items"])
            return seen == 10_000

        wait_until(total, timeout_seconds=60, what="10,000 records in the history")
        ids: list[str] = []
        params: dict[str, object] = {"workflow": "wf-a", "outcome": "success", "limit": 333}
        while True:
            page = api.get("/api/executions", params=params).json()
            ids += [r["execution_id"] for r in page["items"]]
            if not page["next_cursor"]:
                break
            params["cursor"] = page["next_cursor"]
        expected = [
            r.execution_id for r in records if r.workflow.id == "wf-a" and r.outcome == "success"
        ]
        assert sorted(ids, reverse=True) == ids
        assert sorted(ids) == sorted(expected)
        counts = api.get(
            "/api/executions/counts",
            params={"since": "2026-11-02T00:00:00Z", "until": "2026-11-03T00:00:00Z"},
        ).json()
        assert sum(c["count"] for c in counts) == 10_000
        chain = api.get("/api/chains/root-7").json()
        assert len(chain) == 100
        assert api.get("/api/chains/nope").status_code == 404
        detail = api.get("/api/executions/exec-00007").json()
        assert detail[0]["actions"][0]["status"] == "scheduled"
        nothing = api.post("/api/executions/exec-00009/cancel", json={})
        assert nothing.status_code == 409
        cancelled = api.post("/api/executions/exec-00007/cancel", json={"comment": "oops"})
        assert cancelled.status_code == 202, cancelled.text
        listed = {w["id"] for w in api.get("/api/workflows").json()}
        assert listed == set()
    request = asyncio.run(_read_cancel(served))
    assert (request.execution_id, request.requested_by, request.comment) == (
        "exec-00007",
        "editor-user",
        "oops",
    )


# (execution id, event, cluster, task name, task id, at, outcome); "-" task: a worker trigger.
VARIED = [
    ("v01", "task.failed", "eu", "app.send", "t1", "2026-11-03T10:05:00Z", "success"),
    ("v02", "task.failed", "us", "app.send", "t2", "2026-11-03T10:40:00Z", "failure"),
    ("v03", "task.orphaned", "eu", "app.bill", "t3", "2026-11-03T11:00:00Z", "success"),
    ("v04", "task.orphaned", "us", "app.bill", "t4", "2026-11-03T11:59:59Z", "skipped"),
    ("v05", "task.execution_time_exceeded", "eu", "app.slow", "t5", "2026-11-03T13:30:00Z",
     "success"),
    ("v06", "worker.offline", "us", "-", "-", "2026-11-03T13:31:00Z", "success"),
    ("v07", "task.failed", "eu", "app.bill", "t7", "2026-11-03T13:45:00Z", "failure"),
]  # fmt: skip


def _varied(row: tuple[str, ...]) -> ExecutionRecord:
    execution_id, event, cluster, name, task_id, at, outcome = row
    data: dict[str, object] = {
        "execution_id": execution_id,
        "workflow": {"id": "wf-v", "name": "Varied", "version": 1},
        "trigger": {"id": f"trig-{execution_id}", "event": event, "at": at},
        "circuit_breaker": {
            "state": "closed", "count": 1, "max_executions": 100, "window_seconds": 3600,
        },
        "outcome": outcome,
    }  # fmt: skip
    if task_id == "-":
        data["worker"] = {"cluster": cluster, "hostname": "w9@host"}
    else:
        data["task"] = {"cluster": cluster, "id": task_id, "root_id": task_id, "name": name}
    return ExecutionRecord.model_validate(data)


@pytest.fixture(scope="module")
def varied_history(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One app for the varied-records tests: VARIED produced to its execution log, projected."""
    prefix = f"fg-test-varied-{uuid.uuid4().hex[:8]}"
    with serve(kafka_bootstrap, prefix, tmp_path_factory.mktemp("history")) as served:
        publish_records(served, [_varied(row) for row in VARIED])
        with served.client("viewer") as api:
            wait_until(
                lambda: len(api.get("/api/executions").json()["items"]) == len(VARIED),
                timeout_seconds=60,
                what="the varied records in the history",
            )
        yield served


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["v07", "v06", "v05", "v04", "v03", "v02", "v01"]),
        ({"trigger": "task.orphaned"}, ["v04", "v03"]),
        ({"trigger": "worker.offline"}, ["v06"]),
        ({"cluster": "us"}, ["v06", "v04", "v02"]),
        ({"task_name": "app.bill"}, ["v07", "v04", "v03"]),
        ({"task_id": "t5"}, ["v05"]),
        ({"since": "2026-11-03T11:00:00Z"}, ["v07", "v06", "v05", "v04", "v03"]),
        ({"until": "2026-11-03T11:00:00Z"}, ["v02", "v01"]),  # until is exclusive
        ({"since": "2026-11-03T10:30:00Z", "until": "2026-11-03T13:31:00Z"},
         ["v05", "v04", "v03", "v02"]),
        ({"since": "2026-11-03T12:00:00+01:00", "until": "2026-11-03T13:00:00+01:00"},
         ["v04", "v03"]),  # 11:00Z to 12:00Z
        ({"cluster": "eu", "task_name": "app.bill", "outcome": "failure"}, ["v07"]),
        ({"trigger": "task.failed", "cluster": "us", "task_name": "app.bill"}, []),
    ],
)  # fmt: skip
def test_history_filters_over_varied_records(
    varied_history: Served, params: dict[str, str], expected: list[str]
) -> None:
    with varied_history.client("viewer") as api:
        answer = api.get("/api/executions", params={"workflow": "wf-v", **params})
    assert answer.status_code == 200, answer.text
    assert [r["execution_id"] for r in answer.json()["items"]] == expected


def test_history_counts_per_hour_and_outcome(varied_history: Served) -> None:
    window = {"since": "2026-11-03T09:00:00Z", "until": "2026-11-03T15:00:00Z"}
    with varied_history.client("viewer") as api:
        counts = api.get("/api/executions/counts", params={"workflow": "wf-v", **window}).json()
        other = api.get("/api/executions/counts", params={"workflow": "nope", **window}).json()
        part = api.get(
            "/api/executions/counts",
            params={"since": "2026-11-03T11:30:00Z", "until": "2026-11-03T12:00:00Z"},
        ).json()
    assert counts == [
        {"hour": "2026-11-03T10:00:00Z", "outcome": "failure", "count": 1},
        {"hour": "2026-11-03T10:00:00Z", "outcome": "success", "count": 1},
        {"hour": "2026-11-03T11:00:00Z", "outcome": "skipped", "count": 1},
        {"hour": "2026-11-03T11:00:00Z", "outcome": "success", "count": 1},
        {"hour": "2026-11-03T13:00:00Z", "outcome": "failure", "count": 1},
        {"hour": "2026-11-03T13:00:00Z", "outcome": "success", "count": 2},
    ]
    assert other == []
    # Whole hours: every hour overlapping the range counts in full.
    assert part == counts[2:4]

"""docs/examples, run as a downstream team would, against the real broker: the Python consumer
(aiokafka) and Kafka's console consumer piped to jq, over an execution log of this test's own.

The records are what flowguard writes (keyed by workflow id), plus what a consumer must cope
with: a record sent twice (flowguard re-sends after a crash), a later version's record with
fields v1 never had, a record of another schema and one that is not JSON.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.processes import produce
from tests.unit.control.records import record
from topics.execution import ActionResult, ExecutionRecord
from topics.registry import EXECUTION_LOG

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"


def _retry(status: str) -> ActionResult:
    return ActionResult(action_id="a-0", type="retry", status=status)  # type: ignore[arg-type]


def _records() -> list[tuple[bytes, bytes]]:
    """(key, value) in log order: execution ex-000001 in three steps, one re-sent; ex-000002
    settled at once; ex-000003 from a later flowguard; then two a v1 consumer must skip."""
    retried = record(1, outcome="success")
    steps: list[ExecutionRecord] = [
        retried.model_copy(update={"seq": 0, "actions": (_retry("scheduled"),)}),
        retried.model_copy(update={"seq": 1, "actions": (_retry("sent"),)}),
        retried.model_copy(update={"seq": 2, "actions": (_retry("succeeded"),)}),
    ]
    steps.insert(2, steps[1])  # re-sent after a crash: the same record again
    failed = record(2, outcome="failure").model_copy(
        update={"actions": (ActionResult(action_id="b-0", type="slack", status="failed"),)}
    )
    items = [(r.workflow.id.encode(), r.to_json().encode()) for r in [*steps, failed]]
    later: dict[str, Any] = json.loads(record(3, outcome="skipped").to_json())
    later["tenant"] = "eu-payments"
    later["task"]["priority"] = 9
    items.append((later["workflow"]["id"].encode(), json.dumps(later).encode()))
    other = {**json.loads(record(4).to_json()), "schema": "flowguard.execution/2"}
    items.append((other["workflow"]["id"].encode(), json.dumps(other).encode()))
    items.append((b"alert-payments", b"not json"))
    return items


@pytest.fixture
def log_topic(kafka_bootstrap: str, topic_prefix: str) -> str:
    """``<prefix>.execution-log`` as the registry makes it, holding _records()."""
    topic = EXECUTION_LOG.name(topic_prefix)

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            spec = NewTopic(
                topic, EXECUTION_LOG.partitions, 1, topic_configs=EXECUTION_LOG.config()
            )
            await admin.create_topics([spec])
        finally:
            await admin.close()

    asyncio.run(create())
    produce(kafka_bootstrap, topic, _records())
    return topic_prefix


def python_consumer(
    bootstrap: str, prefix: str, group: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    """examples/execution_log_consumer.py over the whole log (``--from-beginning --until-end``),
    run to its end and checked to exit 0: its finished process."""
    result = subprocess.run(
        [
            sys.executable, str(EXAMPLES / "execution_log_consumer.py"), "--bootstrap", bootstrap,
            "--prefix", prefix, "--group", group, "--from-beginning", "--until-end", *flags,
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def test_the_python_consumer_prints_each_execution_once_when_settled(
    kafka_bootstrap: str, log_topic: str, unique: Any
) -> None:
    result = python_consumer(kafka_bootstrap, log_topic, unique("team"))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    # Partitions interleave in any order: only one workflow's records are in order.
    assert sorted((x["execution_id"], x["seq"], x["outcome"]) for x in lines) == [
        ("ex-000001", 2, "success"),
        ("ex-000002", 0, "failure"),
        ("ex-000003", 0, "skipped"),
    ]
    assert next(x for x in lines if x["seq"] == 2)["actions"] == {"a-0": "succeeded"}
    assert all(x["settled"] for x in lines)
    assert "skipped a record of schema 'flowguard.execution/2'" in result.stderr
    assert "skipped a record that is not JSON" in result.stderr


def test_the_python_consumer_with_all_prints_every_new_record_once(
    kafka_bootstrap: str, log_topic: str, unique: Any
) -> None:
    result = python_consumer(kafka_bootstrap, log_topic, unique("team"), "--all")
    seen: dict[str, list[tuple[int, bool]]] = {}
    for x in map(json.loads, result.stdout.splitlines()):
        seen.setdefault(x["execution_id"], []).append((x["seq"], x["settled"]))
    assert seen == {
        # seq 1 once: its copy after a crash is skipped
        "ex-000001": [(0, False), (1, False), (2, True)],
        "ex-000002": [(0, True)],
        "ex-000003": [(0, True)],
    }


def test_the_console_consumer_piped_to_jq(kafka_bootstrap: str, log_topic: str) -> None:
    assert shutil.which("jq"), "jq is missing: deploy/setup-system test installs it"
    result = subprocess.run(
        [
            str(EXAMPLES / "execution-log-jq.sh"), kafka_bootstrap, log_topic,
            "--from-beginning", "--max-messages", str(len(_records())),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    # One partition per workflow id: records of one execution keep their order.
    by_execution: dict[str, list[list[str]]] = {}
    for row in rows:
        by_execution.setdefault(row[2], []).append(row)
    assert sorted(by_execution) == ["ex-000001", "ex-000002", "ex-000003"]
    assert [(r[3], r[5], r[6]) for r in by_execution["ex-000001"]] == [
        ("0", "false", "retry:scheduled"),
        ("1", "false", "retry:sent"),
        ("1", "false", "retry:sent"),
        ("2", "true", "retry:succeeded"),
    ]
    assert [(r[1], r[4], r[5]) for r in by_execution["ex-000002"]] == [
        ("escalate", "failure", "true")
    ]
    assert by_execution["ex-000003"][0][4] == "skipped"

"""Kafka failing under the workflow routes, with the real app and real Kafka around it.

The failures are injected into the running app's store (one refresh, one write refused):
the dev broker is shared, so it cannot be stopped for one test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from flowguard.errors import KafkaUnavailable, VersionConflict
from tests.api.server import Served
from topics.workflows import WorkflowVersion

pytestmark = pytest.mark.integration

A = "name: A\ntrigger: {event: task.failed}\naction: {type: retry}\n"
B = "name: B\ntrigger: {event: task.orphaned}\naction: {type: retry}\n"


def test_kafka_unavailable_is_503_on_every_workflow_route(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served.client("editor") as api:
        api.post("/api/workflows", json={"yaml": A}).raise_for_status()

        async def down() -> None:
            raise KafkaUnavailable("reading test.workflow-history from nowhere: timed out")

        monkeypatch.setattr(served.services.store, "refresh", down)
        calls = [
            ("GET", "/api/workflows", None),
            ("GET", "/api/workflows/a", None),
            ("PUT", "/api/workflows/a", {"yaml": A + "description: x\n"}),
            ("POST", "/api/workflows", {"yaml": B}),
            ("GET", "/api/workflows/a/versions", None),
            ("POST", "/api/workflows/a/rollback", {"version": 1}),
            ("POST", "/api/import", {"yaml": B}),
        ]
        for method, path, body in calls:
            answer = api.request(method, path, json=body)
            assert answer.status_code == 503, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "kafka_unavailable"
            assert "timed out" in answer.json()["error"]["message"]


def test_a_version_conflict_mid_import_is_409(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = served.services.store
    real_save = store.save
    saves = 0

    async def conflicting(*args: Any, **kwargs: Any) -> WorkflowVersion | None:
        nonlocal saves
        saves += 1
        if saves == 2:
            raise VersionConflict("workflow 'b': another writer saved version 1 first")
        return await real_save(*args, **kwargs)

    monkeypatch.setattr(store, "save", conflicting)
    with served.client("editor") as api:
        answer = api.post("/api/import", json={"yaml": A + "---\n" + B})
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == "version_conflict"
        assert "another writer" in answer.json()["error"]["message"]
        # The first was saved; importing again saves the rest.
        again = api.post("/api/import", json={"yaml": A + "---\n" + B}).json()
        assert [(i["id"], i["status"]) for i in again] == [("a", "unchanged"), ("b", "created")]


async def _on_workflows_topic(served: Served) -> dict[str, int | None]:
    """What <prefix>.workflows holds last per key: the version, or None for a tombstone."""
    consumer = AIOKafkaConsumer(bootstrap_servers=served.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(f"{served.prefix}.workflows", 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        last: dict[str, int | None] = {}
        async with asyncio.timeout(30):
            while await consumer.position(tp) < end:
                for message in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                    value = message.value
                    last[message.key.decode()] = (
                        None
                        if value is None
                        else WorkflowVersion.model_validate_json(value).workflow_version
                    )
        return last
    finally:
        await consumer.stop()


def _refuse_workflows_topic(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's next writes to <prefix>.workflows fail; workflow-history still takes them."""
    store = served.services.store
    producer = store._producer
    assert producer is not None
    real = producer.send_and_wait

    async def refusing(topic: str, *args: Any, **kwargs: Any) -> Any:
        if topic == store.workflows_topic:
            raise KafkaTimeoutError()
        return await real(topic, *args, **kwargs)

    monkeypatch.setattr(producer, "send_and_wait", refusing)


def test_a_half_failed_save_or_delete_is_repaired_by_doing_it_again(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = A + "description: second\n"
    with served.client("editor") as api:
        api.post("/api/workflows", json={"yaml": A}).raise_for_status()
        _refuse_workflows_topic(served, monkeypatch)
        half = api.put("/api/workflows/a", json={"yaml": changed})
        assert half.status_code == 503, half.text
        assert "in the history but not live yet" in half.json()["error"]["message"]
        monkeypatch.undo()
        assert asyncio.run(_on_workflows_topic(served)) == {"a": 1}  # the workers keep v1

        again = api.put("/api/workflows/a", json={"yaml": changed})
        assert again.status_code == 200, again.text
        assert (again.json()["saved"], again.json()["workflow"]["version"]) == (False, 2)
        assert asyncio.run(_on_workflows_topic(served)) == {"a": 2}

        _refuse_workflows_topic(served, monkeypatch)
        assert api.delete("/api/workflows/a").status_code == 503
        monkeypatch.undo()
        assert asyncio.run(_on_workflows_topic(served)) == {"a": 2}
        assert api.delete("/api/workflows/a").status_code == 204
        assert asyncio.run(_on_workflows_topic(served)) == {"a": None}
        assert api.delete("/api/workflows/a").status_code == 404
        versions = api.get("/api/workflows/a/versions").json()
        assert [(v["version"], v["deleted"]) for v in versions] == [
            (1, False),
            (2, False),
            (3, True),
        ]


def test_concurrent_requests_never_use_the_store_consumer_at_once(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads (every request refreshes) and saves share one consumer: one lock must guard it.

    Two coroutines in it at once can pause the partition under the other's fetch loop, or
    apply fetched records out of order (the store drops an older version seen after a newer).
    """
    consumer = served.services.store._consumer
    assert consumer is not None
    inside, most = 0, 0

    def counted(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal inside, most
            inside += 1
            most = max(most, inside)
            try:
                return await method(*args, **kwargs)
            finally:
                inside -= 1

        return call

    for name in ("end_offsets", "getmany", "position"):
        monkeypatch.setattr(consumer, name, counted(getattr(consumer, name)))

    def client_work(n: int) -> None:
        with served.client("editor") as api:
            for i in range(8):
                if n % 2:
                    text = f"name: W{n}\ntrigger: {{event: task.failed}}\naction: {{type: retry}}\n"
                    text += f"description: '{i}'\n"
                    api.post("/api/import", json={"yaml": text}).raise_for_status()
                else:
                    api.get("/api/workflows").raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(client_work, range(4)))
    assert most == 1, f"{most} coroutines used the store's consumer at once"

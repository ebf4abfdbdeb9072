"""The workflow store against real Kafka: versions, deletes, rollback, diff, races."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowguard.control.store import WorkflowStore
from flowguard.errors import VersionConflict, WorkflowInvalid, WorkflowNotFound
from tests.integration.control.topics import compacted

HOOK = "https://hooks.slack.com/services/T000/B000/abcdefghijklmnop"


def definition(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "Alert payments",
        "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "pay.*"}},
        "action": {"type": "slack", "webhook_url": HOOK},
    }
    doc.update(changes)
    return doc


def test_versions_delete_rollback(kafka_bootstrap: str, control_topics: str) -> None:
    async def scenario() -> None:
        async with WorkflowStore(kafka_bootstrap, control_topics) as store:
            v1 = await store.save(definition(), saved_by="alice")
            assert v1 is not None
            assert (v1.workflow_id, v1.workflow_version) == ("alert-payments", 1)
            assert await store.save(definition(), saved_by="alice") is None
            # Written differently, same meaning: not a new version.
            same = definition(actions=[definition()["action"]])
            del same["action"]
            assert await store.save(same, saved_by="alice") is None
            v2 = await store.save(definition(description="v2"), saved_by="bob", comment="doc")
            assert v2 is not None
            assert v2.workflow_version == 2
            v3 = await store.set_enabled("alert-payments", False, saved_by="carol")
            assert v3.workflow_version == 3
            assert v3.definition["enabled"] is False
            assert (await store.set_enabled("alert-payments", False, saved_by="c")) == v3
            await store.delete("alert-payments", saved_by="dave")
            assert store.current() == {}
            assert [v.workflow_version for v in store.versions("alert-payments")] == [1, 2, 3, 4]
            assert store.versions("alert-payments")[-1].deleted
            v5 = await store.rollback("alert-payments", 1, saved_by="erin")
            assert v5.workflow_version == 5
            assert v5.definition == definition()
            assert v5.comment == "rollback to version 1"
            assert store.current()["alert-payments"] == v5

        # A fresh reader sees the same history.
        async with WorkflowStore(kafka_bootstrap, control_topics) as again:
            assert again.versions("alert-payments") == store.versions("alert-payments")
        on_topic = await compacted(kafka_bootstrap, control_topics)
        assert [(k, v is None) for k, v in on_topic] == [("alert-payments", False)] * 3 + [
            ("alert-payments", True),
            ("alert-payments", False),
        ]

    asyncio.run(scenario())


def test_refusals(kafka_bootstrap: str, control_topics: str) -> None:
    async def scenario() -> None:
        async with WorkflowStore(kafka_bootstrap, control_topics) as store:
            with pytest.raises(WorkflowInvalid) as invalid:
                await store.save(
                    definition(action={"type": "retry", "delay_seconds": -1}), saved_by="a"
                )
            assert (
                "action.delay_seconds",
                "Input should be greater than or equal to 0",
            ) in invalid.value.problems
            with pytest.raises(WorkflowNotFound, match="'nope': no such workflow"):
                store.versions("nope")
            with pytest.raises(WorkflowNotFound):
                await store.delete("nope", saved_by="a")
            await store.save(definition(), saved_by="a", expected_version=0)
            with pytest.raises(VersionConflict, match="expected_version 0, but the latest is"):
                await store.save(definition(description="x"), saved_by="b", expected_version=0)
            with pytest.raises(WorkflowNotFound, match="no version 7"):
                await store.rollback("alert-payments", 7, saved_by="a")

    asyncio.run(scenario())


def test_two_writers_race_for_one_version(kafka_bootstrap: str, control_topics: str) -> None:
    """Both read version 1 and save: exactly one gets version 2, the other a conflict."""

    async def scenario() -> None:
        async with (
            WorkflowStore(kafka_bootstrap, control_topics) as a,
            WorkflowStore(kafka_bootstrap, control_topics) as b,
        ):
            await a.save(definition(), saved_by="a")
            await b.refresh()
            results = await asyncio.gather(
                a.save(definition(description="from a"), saved_by="a", expected_version=1),
                b.save(definition(description="from b"), saved_by="b", expected_version=1),
                return_exceptions=True,
            )
            conflicts = [r for r in results if isinstance(r, VersionConflict)]
            saved = [r for r in results if not isinstance(r, BaseException)]
            assert (len(conflicts), len(saved)) == (1, 1), results
            await a.refresh()
            await b.refresh()
            assert a.versions("alert-payments") == b.versions("alert-payments")
            assert len(a.versions("alert-payments")) == 2
        on_topic = await compacted(kafka_bootstrap, control_topics)
        assert len(on_topic) == 2  # the loser never reached the workers' topic

    asyncio.run(scenario())


def test_diff_masks_secrets_and_marks_a_changed_one(
    kafka_bootstrap: str, control_topics: str
) -> None:
    async def scenario() -> None:
        async with WorkflowStore(kafka_bootstrap, control_topics) as store:
            await store.save(definition(), saved_by="a")
            other = HOOK.replace("T000", "T999")  # same last four characters
            await store.save(
                definition(action={"type": "slack", "webhook_url": other}), saved_by="a"
            )
            text = store.diff("alert-payments", 1, 2)
            assert HOOK not in text
            assert other not in text
            assert "T999" not in text
            assert "-  webhook_url: '***mnop'" in text
            assert "+  webhook_url: '***mnop (changed)'" in text

    asyncio.run(scenario())


def test_missing_topics_are_named(kafka_bootstrap: str, topic_prefix: str) -> None:
    async def scenario() -> None:
        async with WorkflowStore(kafka_bootstrap, topic_prefix):
            pass

    with pytest.raises(Exception, match="does not exist: run `flowguard topics create`"):
        asyncio.run(scenario())

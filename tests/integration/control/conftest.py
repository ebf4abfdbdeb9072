"""Topics for the control plane's tests: only the ones the store and the history read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from flowguard.settings import get_settings
from topics.registry import EXECUTION_LOG, WORKFLOW_HISTORY, WORKFLOWS


async def _create(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        specs = (WORKFLOWS, WORKFLOW_HISTORY, EXECUTION_LOG)
        response = await admin.create_topics(
            [NewTopic(s.name(prefix), s.partitions, 1, topic_configs=s.config()) for s in specs]
        )
        errors = [e for e in response.to_object()["topic_errors"] if e["error_code"]]
        assert not errors, errors
    finally:
        await admin.close()


@pytest.fixture
def control_topics(kafka_bootstrap: str, topic_prefix: str) -> str:
    """A prefix whose workflows, workflow-history and execution-log topics exist."""
    asyncio.run(_create(kafka_bootstrap, topic_prefix))
    return topic_prefix


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, control_topics: str
) -> Iterator[str]:
    """``flowguard`` in-process against this test's topics (settings are cached per process)."""
    monkeypatch.setenv("FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("FLOWGUARD_TOPIC_PREFIX", control_topics)
    get_settings.cache_clear()
    yield control_topics
    get_settings.cache_clear()

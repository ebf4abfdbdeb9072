"""Topics for the control plane's tests: only the ones the store and the history read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from flowguard.control.kafka_admin import create_topics
from flowguard.settings import get_settings
from topics.registry import EXECUTION_LOG, WORKFLOW_HISTORY, WORKFLOWS


@pytest.fixture
def control_topics(kafka_bootstrap: str, topic_prefix: str) -> str:
    """A prefix whose workflows, workflow-history and execution-log topics exist."""
    specs = (WORKFLOWS, WORKFLOW_HISTORY, EXECUTION_LOG)
    asyncio.run(create_topics(kafka_bootstrap, topic_prefix, 30, specs=specs))
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

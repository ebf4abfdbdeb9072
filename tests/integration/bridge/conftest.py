"""The bridge tests' topics on the shared Kafka: few partitions (``topic_prefix`` deletes them
after each test)."""

from __future__ import annotations

import asyncio

import pytest

from flowguard.control.kafka_admin import create_topics

#: Several, so "a chain lands in one partition" means something; far fewer than production's.
PARTITIONS = 3
TIMEOUT_SECONDS = 30


@pytest.fixture
def topics(kafka_bootstrap: str, topic_prefix: str) -> str:
    asyncio.run(create_topics(kafka_bootstrap, topic_prefix, TIMEOUT_SECONDS,
                              partitions=PARTITIONS))  # fmt: skip
    return topic_prefix

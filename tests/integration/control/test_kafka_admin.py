"""flowguard.control.kafka_admin against the real broker."""

from __future__ import annotations

import asyncio

from flowguard.control.kafka_admin import create_topics, list_topics
from topics.registry import EVENTS, EXECUTION_LOG


def test_create_topics_narrowed_to_specs_creates_those_and_no_other(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    specs = (EVENTS, EXECUTION_LOG)
    created = asyncio.run(create_topics(kafka_bootstrap, topic_prefix, 30, specs=specs))
    names = sorted(spec.name(topic_prefix) for spec in specs)
    assert sorted(created) == names
    listed = asyncio.run(list_topics(kafka_bootstrap, 30))
    assert [name for name in listed if name.startswith(f"{topic_prefix}.")] == names
    again = asyncio.run(create_topics(kafka_bootstrap, topic_prefix, 30, specs=specs))
    assert again == []

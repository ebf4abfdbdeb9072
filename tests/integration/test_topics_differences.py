"""`flowguard topics create` reports existing topics whose settings differ from the registry."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from click.testing import CliRunner

from flowguard.cli import main as cli
from flowguard.settings import get_settings


async def create_by_hand(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


def test_a_topic_made_by_hand_is_reported_with_what_differs(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    asyncio.run(create_by_hand(kafka_bootstrap, f"{topic_prefix}.workflows", 3))
    env = {
        "FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "FLOWGUARD_TOPIC_PREFIX": topic_prefix,
    }
    get_settings.cache_clear()
    try:
        first = CliRunner().invoke(cli, ["topics", "create"], env=env)
        again = CliRunner().invoke(cli, ["topics", "create"], env=env)
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0, first.output
    assert f"created {topic_prefix}.events" in first.stdout
    expected = [
        f"warn {topic_prefix}.workflows: 3 partitions, the registry says 1",
        f"warn {topic_prefix}.workflows: cleanup.policy is delete, the registry says compact",
    ]
    assert first.stderr.splitlines() == expected
    assert again.stdout.splitlines() == ["all topics exist"]
    assert again.stderr.splitlines() == expected

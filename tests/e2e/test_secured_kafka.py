"""The flow over a Kafka that accepts only SASL_SSL (SCRAM-SHA-512 over TLS, client certificate):
a real Celery worker, its bridge, a ``flowguard worker``, a retry and a webhook, every process
given the same ``FLOWGUARD_KAFKA_*`` settings. The broker has no plaintext listener, so a client
left without them cannot take part."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowguard.kafka_admin import delete_topics
from flowguard.settings import get_settings
from tests.e2e.conftest import Stack
from tests.helpers import wait_until
from tests.httpserver import RecordingServer


@pytest.fixture
def secured_stack(
    monkeypatch: pytest.MonkeyPatch, kafka_sasl: dict[str, str], tmp_path: Path,
    broker: str, topic_prefix: str,
) -> Iterator[Stack]:  # fmt: skip
    """The e2e stack on the SASL_SSL broker: the settings go into this process's environment,
    which every process the stack starts inherits, and into this process's own clients."""
    for name, value in kafka_sasl.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    bootstrap = kafka_sasl["FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS"]
    running = Stack(tmp_path, broker, bootstrap, topic_prefix)
    try:
        yield running
    finally:
        running.close()
        asyncio.run(delete_topics(bootstrap, topic_prefix, 30))
        get_settings.cache_clear()  # the plaintext settings again, once monkeypatch undoes


def test_retry_and_webhook_over_sasl_ssl(
    secured_stack: Stack, slack: RecordingServer, kafka_sasl: dict[str, str]
) -> None:
    stack = secured_stack
    stack.apply(
        {
            "name": "Retry and tell",
            "trigger": {
                "event": "task.failed",
                "conditions": {"task_name_pattern": "demo.tasks.flaky_*"},
            },
            "actions": [
                {"type": "retry", "delay_seconds": 0, "max_attempts": 1},
                {"type": "webhook", "url": slack.url_for("/incidents")},
            ],
        }
    )
    stack.client.send_task(
        "demo.tasks.flaky_network", (7,), {"fail_times": 1, "key": "sasl-1"}, task_id="t-sasl"
    )

    # The failure went bridge -> Kafka -> worker; the retry came back worker -> Kafka -> bridge.
    runs = wait_until(
        lambda: (r := stack.runs("demo.tasks.flaky_network")) and len(r) >= 2 and r,
        timeout_seconds=60, what="the retry to run on the Celery worker",
    )  # fmt: skip
    assert runs[1]["root_id"] == "t-sasl"
    [hook] = slack.wait_for_requests(1, path="/incidents", timeout_seconds=30)
    assert hook.json()["schema"] == "flowguard.webhook/1"
    # The execution log, read back over SASL_SSL, says the retry ran and succeeded.
    settled = wait_until(
        lambda: [
            r for r in stack.records("retry-and-tell")
            if r["actions"][0]["status"] == "succeeded"
        ],
        timeout_seconds=30, what="the retry settled on the execution log",
    )  # fmt: skip
    assert settled[0]["task"]["id"] == "t-sasl"
    password = kafka_sasl["FLOWGUARD_KAFKA_SASL_PASSWORD"]
    for proc in (stack.flowguard, stack.bridge):
        assert password not in proc.log(), f"{proc.name} logged the SASL password"

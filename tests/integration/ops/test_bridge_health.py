"""A running ``flowguard-bridge``: /readyz turns 503 with the reason when its Celery broker
goes away, and 200 when it is back; while Kafka does not answer it is not ready either, and
/healthz still answers. /metrics carries the bridge's figures (docs/operations.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowguard.control.kafka_admin import create_topics
from tests.helpers import wait_until
from tests.integration.ops.probes import get, json_lines, metric, readiness, unready_for
from tests.processes import bridge_process, free_port, private_redis, tail


@pytest.mark.integration
def test_the_bridge_is_unready_while_its_celery_broker_is_away(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    asyncio.run(create_topics(kafka_bootstrap, topic_prefix, 30))
    redis_port, port = free_port(), free_port()
    with private_redis(tmp_path, port=redis_port) as broker:
        bridge = bridge_process(
            tmp_path, cluster="ops", broker=broker, kafka=kafka_bootstrap, prefix=topic_prefix,
            health_port=str(port), log_format="json",
        ).start()  # fmt: skip
        try:
            wait_until(lambda: readiness(port)[0] == 200, timeout_seconds=60,
                       what="the bridge ready")  # fmt: skip
            text = get(port, "/metrics")[1]
            assert metric(text, "flowguard_bridge_celery_connected", cluster="ops") == 1
            assert metric(text, "flowguard_bridge_buffer_capacity_events", cluster="ops") == 100000
            assert metric(text, "flowguard_bridge_buffer_events", cluster="ops") == 0
            assert metric(text, "flowguard_ready") == 1
        except AssertionError:
            print(tail(bridge.log_path, 60))
            bridge.kill()
            raise
    # The broker is gone.
    try:
        reasons = wait_until(
            lambda: unready_for(port, "celery: broker"), timeout_seconds=60,
            what="readiness 503 with the broker away",
        )  # fmt: skip
        assert f"127.0.0.1:{redis_port}" in " ".join(reasons), reasons
        assert get(port, "/healthz")[0] == 200
        assert metric(get(port, "/metrics")[1], "flowguard_bridge_celery_connected") == 0
        with private_redis(tmp_path, port=redis_port):
            wait_until(lambda: readiness(port)[0] == 200, timeout_seconds=60,
                       what="readiness back with the broker")  # fmt: skip
        messages = [line["message"] for line in json_lines(bridge.log_path)]
        assert any(m.startswith("not ready: celery: broker") for m in messages), messages
        assert "ready again" in messages
    except AssertionError:
        print(tail(bridge.log_path, 60))
        raise
    finally:
        bridge.kill()


@pytest.mark.integration
def test_the_bridge_is_alive_but_not_ready_while_kafka_does_not_answer(
    tmp_path: Path, topic_prefix: str
) -> None:
    port, nowhere = free_port(), f"127.0.0.1:{free_port()}"
    with private_redis(tmp_path) as broker:
        bridge = bridge_process(
            tmp_path, cluster="ops", broker=broker, kafka=nowhere, prefix=topic_prefix,
            health_port=str(port),
        ).start()  # fmt: skip
        try:
            reasons = wait_until(
                lambda: unready_for(port, f"kafka: {nowhere} not reachable"), timeout_seconds=60,
                what="readiness 503 without Kafka",
            )  # fmt: skip
            assert get(port, "/healthz")[0] == 200, reasons
        except AssertionError:
            print(tail(bridge.log_path, 60))
            raise
        finally:
            bridge.kill()

"""Session fixtures for real Kafka and Redis, and unique names per test.

Where Kafka and Redis come from, in order: ``FLOWGUARD_TEST_KAFKA`` /
``FLOWGUARD_TEST_REDIS`` (an existing server, never stopped here), else the
project's ``deploy/`` scripts (stopped at the end only if this session started
them), else testcontainers when a Docker engine answers.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.split("//")[-1] or "127.0.0.1", int(port)), timeout=2):
            return True
    except OSError:
        return False


def _from_deploy(service: str, pidfile: Path) -> Iterator[str]:
    was_running = pidfile.exists()
    result = subprocess.run(
        [str(DEPLOY / service / "start")], capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        pytest.fail(f"deploy/{service}/start failed:\n{result.stderr}", pytrace=False)
    yield result.stdout.strip().splitlines()[-1]
    if not was_running:
        subprocess.run([str(DEPLOY / service / "stop")], capture_output=True, timeout=60)


def _docker_answers() -> bool:
    if not Path("/var/run/docker.sock").exists() and "DOCKER_HOST" not in os.environ:
        return False
    import docker  # type: ignore[import-untyped]

    try:
        client = docker.from_env()
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


def _home() -> Path:
    return Path(os.environ.get("FLOWGUARD_HOME", REPO / ".flowguard"))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a real Kafka broker."""
    given = os.environ.get("FLOWGUARD_TEST_KAFKA")
    if given:
        if not _reachable(given):
            pytest.fail(f"FLOWGUARD_TEST_KAFKA={given} does not answer", pytrace=False)
        yield given
        return
    if (DEPLOY / "kafka" / "start").exists() and not _docker_answers():
        port = os.environ.get("FLOWGUARD_KAFKA_PORT", "9092")
        yield from _from_deploy("kafka", _home() / f"kafka-{port}" / "kafka.pid")
        return
    from testcontainers.community.kafka import KafkaContainer  # type: ignore[import-untyped]

    with KafkaContainer().with_kraft() as container:
        yield container.get_bootstrap_server()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://host:port/0`` of a real Redis."""
    given = os.environ.get("FLOWGUARD_TEST_REDIS")
    if given:
        if not _reachable(given.split("/0")[0].removeprefix("redis://")):
            pytest.fail(f"FLOWGUARD_TEST_REDIS={given} does not answer", pytrace=False)
        yield given
        return
    if (DEPLOY / "redis" / "start").exists() and not _docker_answers():
        port = os.environ.get("FLOWGUARD_REDIS_PORT", "6379")
        yield from _from_deploy("redis", _home() / f"redis-{port}" / "redis.pid")
        return
    from testcontainers.community.redis import RedisContainer  # type: ignore[import-untyped]

    with RedisContainer() as container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        yield f"redis://{host}:{port}/0"


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique("orders")`` -> ``orders-<test name>-<8 hex>``: topics and groups no test shares."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]

    def name(prefix: str) -> str:
        return f"{prefix}-{slug}-{uuid.uuid4().hex[:8]}"

    return name


@pytest.fixture
def topic_prefix(unique: Callable[[str], str]) -> str:
    """A flowguard topic prefix of this test's own: ``<prefix>.events``, ..."""
    return unique("fg")

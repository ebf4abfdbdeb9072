"""Session fixtures for real Kafka and Redis, and names no two tests share.

Where Kafka and Redis come from, in order:

1. ``FLOWGUARD_TEST_KAFKA`` / ``FLOWGUARD_TEST_REDIS``: an existing server, never stopped here;
2. the project's ``deploy/<service>/start``, stopped at the end only if this session started it;
3. testcontainers, when the deploy script failed and a Docker engine answers.

A server that does not answer fails its tests at once with the reason, instead of hanging them.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowguard.control.kafka_admin import delete_topics, wait_for_metadata
from flowguard.errors import KafkaUnavailable
from tests.httpserver import RecordingServer
from tests.processes import private_redis

REPO = Path(__file__).resolve().parent.parent
INTEGRATION = REPO / "tests" / "integration"
# A cold start resolves Kafka's jars from Maven Central before the broker boots.
START_TIMEOUT_SECONDS = 300
KAFKA_READY_SECONDS = 30


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so a fixture can tell that its test failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs real services: mark it so ``-m`` can pick."""
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class _Deployed:
    """A service from ``deploy/``: its address, and whether this session must stop it."""

    address: str
    started_here: bool


class _DeployFailed(Exception):
    pass


def _deploy_port(service: str) -> str:
    default = {"kafka": "9092", "redis": "6379"}[service]
    return os.environ.get(f"FLOWGUARD_{service.upper()}_PORT", default)


def _running(service: str) -> bool:
    """deploy/ already runs this service (its pid file names a live process of that kind)."""
    home = Path(os.environ.get("FLOWGUARD_HOME", REPO / ".flowguard"))
    pidfile = home / service / _deploy_port(service) / f"{service}.pid"
    try:
        cmdline = Path(f"/proc/{int(pidfile.read_text())}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return {"kafka": b"kafka.Kafka", "redis": b"redis-server"}[service] in cmdline


def _deploy_start(service: str) -> _Deployed:
    was_running = _running(service)
    script = REPO / "deploy" / service / "start"
    try:
        result = subprocess.run(
            [str(script)], capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _DeployFailed(f"deploy/{service}/start: {exc}") from exc
    if result.returncode != 0 or not result.stdout.strip():
        tail = "\n".join(result.stderr.strip().splitlines()[-25:])
        raise _DeployFailed(f"deploy/{service}/start exited {result.returncode}:\n{tail}")
    return _Deployed(result.stdout.strip().splitlines()[-1], started_here=not was_running)


def _deploy_stop(service: str) -> None:
    subprocess.run(
        [str(REPO / "deploy" / service / "stop")], capture_output=True, text=True, timeout=60
    )


def _docker_answers() -> bool:
    if not Path("/var/run/docker.sock").exists() and "DOCKER_HOST" not in os.environ:
        return False
    import docker  # type: ignore[import-untyped]

    try:
        client = docker.from_env(timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


def _require_kafka(address: str, source: str) -> None:
    """Fail now, with the reason, unless a broker at ``address`` answers a metadata request.

    A refused connection fails at once; a broker still starting gets KAFKA_READY_SECONDS.
    """
    problem = None
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        asyncio.run(wait_for_metadata(address, KAFKA_READY_SECONDS))
    except (OSError, ValueError) as exc:
        problem = f"Kafka from {source} ({address}) cannot be reached: {exc}"
    except KafkaUnavailable as exc:
        problem = f"Kafka from {source}: {exc}"
    if problem:
        pytest.fail(problem, pytrace=False)


def _require_redis(url: str, source: str) -> None:
    """Fail now, with the reason, unless Redis at ``url`` answers PING."""
    import redis

    problem = None
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        problem = f"Redis from {source} ({url}) does not answer PING: {exc}"
    finally:
        client.close()
    if problem:
        pytest.fail(problem, pytrace=False)


def _kafka_container(why_not_deploy: str) -> Iterator[str]:
    if not _docker_answers():
        pytest.fail(f"no Kafka for the tests: {why_not_deploy}", pytrace=False)
    from testcontainers.community.kafka import KafkaContainer

    # Confluent Platform 8.1 is Apache Kafka 4.1, the version deploy/ runs.
    with KafkaContainer("confluentinc/cp-kafka:8.1.0").with_kraft() as container:
        address = container.get_bootstrap_server()
        _require_kafka(address, "testcontainers")
        yield address


def _redis_container(why_not_deploy: str) -> Iterator[str]:
    if not _docker_answers():
        pytest.fail(f"no Redis for the tests: {why_not_deploy}", pytrace=False)
    from testcontainers.community.redis import RedisContainer

    with RedisContainer("redis:7") as container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        yield f"redis://{host}:{port}/0"


def _service(
    name: str,
    variable: str,
    require: Callable[[str, str], None],
    container: Callable[[str], Iterator[str]],
) -> Iterator[str]:
    """The address of a real ``name`` service: the one ``variable`` names, else the project's
    deploy script's (stopped after the session when started here), else a container."""
    given = os.environ.get(variable)
    if given:
        require(given, variable)
        yield given
        return
    try:
        deployed = _deploy_start(name)
    except _DeployFailed as exc:
        why_not = str(exc)
    else:
        why_not = ""
    if why_not:
        yield from container(why_not)
        return
    try:
        require(deployed.address, f"deploy/{name}/start")
        yield deployed.address
    finally:
        if deployed.started_here:
            _deploy_stop(name)


@pytest.fixture
def http_server() -> Iterator[RecordingServer]:
    """A recording HTTP server on 127.0.0.1 (see tests/httpserver.py), stopped after the test."""
    with RecordingServer() as server:
        yield server


@pytest.fixture
def http_servers() -> Iterator[Callable[[], RecordingServer]]:
    """A factory of recording servers, each on its own port; all stopped after the test."""
    started: list[RecordingServer] = []

    def start() -> RecordingServer:
        server = RecordingServer()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """A private Redis as a Celery broker (``redis://``): Celery's events travel over pub/sub,
    which no database number scopes, so each test that runs Celery gets its own server."""
    with private_redis(tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a real Kafka broker that answers metadata requests."""
    yield from _service("kafka", "FLOWGUARD_TEST_KAFKA", _require_kafka, _kafka_container)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://host:port/0`` of a real Redis that answers PING."""
    yield from _service("redis", "FLOWGUARD_TEST_REDIS", _require_redis, _redis_container)


#: The SASL_SSL broker's ports (deploy/kafka/start): apart from the plaintext one's 9092/19092.
KAFKA_SASL_PORT, KAFKA_SASL_CONTROLLER_PORT = "19192", "19193"


def _client_env(path: Path) -> dict[str, str]:
    """The ``FLOWGUARD_KAFKA_*`` lines of a client env file (as deploy/kafka/start writes)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {name: value for name, value in pairs if name.startswith("FLOWGUARD_KAFKA_")}


@pytest.fixture(scope="session")
def kafka_sasl() -> Iterator[dict[str, str]]:
    """The ``FLOWGUARD_KAFKA_*`` settings (bootstrap, SASL_SSL, SCRAM-SHA-512 login, CA, client
    certificate) of a real broker that accepts only SASL over TLS.

    ``FLOWGUARD_TEST_KAFKA_SASL``: the client env file of an existing one, never stopped here;
    else ``FLOWGUARD_KAFKA_SECURITY=sasl_ssl deploy/kafka/start`` on port 19192, stopped at the
    end only if this session started it.
    """
    given = os.environ.get("FLOWGUARD_TEST_KAFKA_SASL")
    if given:
        yield _client_env(Path(given))
        return
    env = {
        **os.environ,
        "FLOWGUARD_KAFKA_SECURITY": "sasl_ssl",
        "FLOWGUARD_KAFKA_PORT": KAFKA_SASL_PORT,
        "FLOWGUARD_KAFKA_CONTROLLER_PORT": KAFKA_SASL_CONTROLLER_PORT,
    }
    home = Path(os.environ.get("FLOWGUARD_HOME", REPO / ".flowguard")) / "kafka" / KAFKA_SASL_PORT
    pidfile = home / "kafka.pid"
    was_running = pidfile.exists() and Path(f"/proc/{pidfile.read_text().strip()}").exists()
    script = [str(REPO / "deploy" / "kafka" / "start")]
    result = subprocess.run(
        script, capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS, env=env
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-25:])
        pytest.fail(f"SASL_SSL deploy/kafka/start exited {result.returncode}:\n{tail}")
    try:
        yield _client_env(home / "client.env")
    finally:
        if not was_running:
            stop = [str(REPO / "deploy" / "kafka" / "stop")]
            subprocess.run(stop, capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique("orders")`` -> ``orders-<test name>-<8 hex>``: topics and groups no test shares.

    The test's name is in every topic, so a leftover topic on a shared broker says who made it.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")

    def name(prefix: str) -> str:
        return f"{prefix}-{slug}-{uuid.uuid4().hex[:8]}"

    return name


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest, unique: Callable[[str], str]) -> Iterator[str]:
    """A flowguard topic prefix of this test's own: ``<prefix>.events``, ``<prefix>.dlq``, ...

    Its topics on the shared broker are deleted after the test: nothing reads a finished test's
    topics, and left behind they add up (a dev broker ran out of heap at ~14,000 partitions).
    With ``FLOWGUARD_TEST_KEEP_FAILED_TOPICS=1`` a failed test's are kept, to be read after.
    """
    prefix = unique("fg")
    yield prefix
    report = getattr(request.node, "report_call", None)
    if os.environ.get("FLOWGUARD_TEST_KEEP_FAILED_TOPICS") and report is not None and report.failed:
        print(f"the failed test's topics are kept: {prefix}.*")  # to read what it left
        return
    if "kafka_bootstrap" in request.fixturenames:
        bootstrap = request.getfixturevalue("kafka_bootstrap")

        def delete() -> None:
            try:
                asyncio.run(delete_topics(bootstrap, prefix, 30))
            except Exception as exc:  # cleanup only: never fails the test
                print(f"could not delete the topics of {prefix}: {type(exc).__name__}: {exc}")

        # A thread of its own: some tests (Playwright's sync API) keep a loop running here.
        cleanup = threading.Thread(target=delete, name=f"delete {prefix}")
        cleanup.start()
        cleanup.join()

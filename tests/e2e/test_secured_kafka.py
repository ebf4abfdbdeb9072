"""The flow over a Kafka that accepts only SASL_SSL (SCRAM-SHA-512 over TLS, client certificate)
and enforces ACLs: a real Celery worker, its bridge, a ``flowguard worker``, a retry and a
webhook. Each process logs in as its own user and holds only the ACLs docs/security.md lists
(read from the page and applied with Kafka's own AclCommand); the API, served in this process,
saves the workflow and follows the history as the API's user. The broker has no plaintext
listener, so a client left without the FLOWGUARD_KAFKA_* settings cannot take part."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError
from celery import Celery

from flowguard.control.kafka_admin import delete_topics, list_topics
from flowguard.demo.celery_app import recorded_calls
from flowguard.kafka_security import client_options
from flowguard.settings import Settings, get_settings
from tests.api.server import serve
from tests.e2e.conftest import CLUSTER, flowguard_worker
from tests.helpers import wait_until
from tests.httpserver import RecordingServer
from tests.processes import (
    Process,
    TopicReader,
    bridge_process,
    celery_worker,
    print_logs_if_failed,
    start_worker,
)

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "security.md"


def workflow(webhook_url: str) -> dict[str, Any]:
    return {
        "name": "Retry and tell",
        "trigger": {
            "event": "task.failed",
            "conditions": {"task_name_pattern": "demo.tasks.flaky_*"},
        },
        "actions": [
            {"type": "retry", "delay_seconds": 0, "max_attempts": 1},
            {"type": "webhook", "url": webhook_url},
        ],
    }


def documented_acls(prefix: str, app_id: str, cluster: str) -> list[list[str]]:
    """The arguments of every ``kafka-acls`` command in docs/security.md's ACL block."""
    block = DOC.read_text().split("<!-- acls:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    commands = [line for line in lines if line.startswith("kafka-acls ")]
    values = {"$PREFIX": prefix, "$APP_ID": app_id, "$CLUSTER": cluster}
    found = []
    for command in commands:
        for name, value in values.items():
            command = command.replace(name, value)
        found.append(shlex.split(command)[1:])
    return found


def apply_acls(home: Path, bootstrap: str, commands: list[list[str]]) -> None:
    """Run Kafka's AclCommand (deploy/kafka/acls) as the super user, all commands at once."""
    base = [str(REPO / "deploy" / "kafka" / "acls"), "--bootstrap-server", bootstrap,
            "--command-config", str(home / "client.properties")]  # fmt: skip
    running = [
        subprocess.Popen([*base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in commands
    ]
    for args, proc in zip(commands, running, strict=True):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"kafka-acls {shlex.join(args)}:\n{out}\n{err}"


def login(home: Path, user: str) -> dict[str, str]:
    password = (home / "tls" / f"password.{user}").read_text().strip()
    return {"FLOWGUARD_KAFKA_SASL_USERNAME": user, "FLOWGUARD_KAFKA_SASL_PASSWORD": password}


class SecuredFlow:
    """The processes of the flow, each as its own Kafka user."""

    def __init__(self, tmp: Path, broker: str, sasl: dict[str, str], prefix: str) -> None:
        self.prefix, self.sasl = prefix, sasl
        self.bootstrap = sasl["FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS"]
        self.home = Path(sasl["FLOWGUARD_KAFKA_SSL_CAFILE"]).parent.parent
        self.processes: list[Process] = []
        apply_acls(self.home, self.bootstrap, documented_acls(prefix, f"{prefix}-app", CLUSTER))
        self.processes.append(start_worker(celery_worker(tmp, broker)))
        worker = flowguard_worker(tmp, self.bootstrap, prefix)
        worker.env.update(login(self.home, "flowguard-worker"))
        self.flowguard = worker.start()
        self.processes.append(self.flowguard)
        # The worker creates the topics (it may: Create on the prefix) before it loads workflows.
        self.flowguard.wait_for_log("workflows loaded from", timeout=90)
        # ... and the API's user sees those it reads (a topic can take a moment to be listed).
        wanted = {f"{prefix}.{name}" for name in ("workflows", "workflow-history", "execution-log")}
        wait_until(
            lambda: wanted <= set(asyncio.run(list_topics(self.bootstrap, 10))),
            timeout_seconds=30, what="the API's user to see the topics it reads",
        )  # fmt: skip
        bridge_login = {k.removeprefix("FLOWGUARD_").lower(): v
                        for k, v in login(self.home, "flowguard-bridge").items()}  # fmt: skip
        self.bridge = bridge_process(
            tmp, cluster=CLUSTER, broker=broker, kafka=self.bootstrap, prefix=prefix,
            commit_interval_seconds="0", **bridge_login,
        ).start()  # fmt: skip
        self.processes.append(self.bridge)
        self.bridge.wait_for_log("consuming Celery events")
        self.log = TopicReader(self.bootstrap, f"{prefix}.execution-log")
        self.calls = redis.Redis.from_url(broker)
        self.client = Celery("test-client", broker=broker)
        self.client.conf.task_send_sent_event = True

    def runs(self, name: str) -> list[dict[str, Any]]:
        return [c for c in recorded_calls(self.calls) if c["name"] == name]

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.kill()


@pytest.fixture
def flow(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, kafka_sasl: dict[str, str],
    tmp_path: Path, broker: str, topic_prefix: str,
) -> Iterator[SecuredFlow]:  # fmt: skip
    """The settings go into this process's environment (this process is the API's user); the
    worker and the bridge get their own logins."""
    home = Path(kafka_sasl["FLOWGUARD_KAFKA_SSL_CAFILE"]).parent.parent
    for name, value in {**kafka_sasl, **login(home, "flowguard-api")}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    running = SecuredFlow(tmp_path, broker, kafka_sasl, topic_prefix)
    try:
        yield running
    finally:
        running.close()
        print_logs_if_failed(request, running.processes)
        for name, value in kafka_sasl.items():  # the super user deletes the topics
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        asyncio.run(delete_topics(running.bootstrap, topic_prefix, 30))
        monkeypatch.undo()
        get_settings.cache_clear()


def test_retry_and_webhook_over_sasl_ssl_with_an_acl_per_process(
    flow: SecuredFlow, slack: RecordingServer, tmp_path: Path
) -> None:
    # The API (its workflow store, producer and history follower) as the API's user.
    # The topics are the worker's (the API's user may not create any).
    history = tmp_path / "history"
    with serve(flow.bootstrap, flow.prefix, history, create=False) as api, api.client() as http:
        saved = http.post("/api/workflows", json={"definition": workflow(slack.url_for("/hook"))})
        assert saved.status_code == 201, saved.text
        run_the_flow(flow, slack)
        # The API's history, followed over SASL_SSL, has the execution.
        wait_until(
            lambda: [
                item for item in http.get("/api/executions").json()["items"]
                if item["workflow"]["id"] == "retry-and-tell"
            ],
            timeout_seconds=30, what="the execution in the API's history",
        )  # fmt: skip


def run_the_flow(flow: SecuredFlow, slack: RecordingServer) -> None:
    flow.client.send_task(
        "demo.tasks.flaky_network", (7,), {"fail_times": 1, "key": "sasl-1"}, task_id="t-sasl"
    )

    # The failure went bridge -> Kafka -> worker; the retry came back worker -> Kafka -> bridge.
    runs = wait_until(
        lambda: (r := flow.runs("demo.tasks.flaky_network")) and len(r) >= 2 and r,
        timeout_seconds=60, what="the retry to run on the Celery worker",
    )  # fmt: skip
    assert runs[1]["root_id"] == "t-sasl"
    [hook] = slack.wait_for_requests(1, path="/hook", timeout_seconds=30)
    assert hook.json()["schema"] == "flowguard.webhook/1"
    # The execution log, read back as the API's user, says the retry ran and succeeded.
    settled = wait_until(
        lambda: [
            r for r in flow.log.poll()
            if r["workflow"]["id"] == "retry-and-tell" and r["actions"][0]["status"] == "succeeded"
        ],
        timeout_seconds=30, what="the retry settled on the execution log",
    )  # fmt: skip
    assert settled[0]["task"]["id"] == "t-sasl"
    for proc in (flow.flowguard, flow.bridge):
        for user in ("flowguard-worker", "flowguard-bridge"):
            password = login(flow.home, user)["FLOWGUARD_KAFKA_SASL_PASSWORD"]
            assert password not in proc.log(), f"{proc.name} logged a password"
    # The ACLs hold: the API's user (this process) cannot write commands; only the worker
    # makes a bridge act.
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(send_as_api(flow.bootstrap, f"{flow.prefix}.commands"))


async def send_as_api(bootstrap: str, topic: str) -> None:
    api = Settings()
    assert api.kafka_sasl_username == "flowguard-api"
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **client_options(api)
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"prod")
    finally:
        await producer.stop()

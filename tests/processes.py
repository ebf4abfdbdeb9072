"""Real processes for integration and end-to-end tests: a private Redis, Celery workers,
the bridge, and readers of Kafka topics.

Each test that runs Celery gets its own ``redis-server`` (on a free port, no persistence):
Celery's events travel over Redis pub/sub, which is not scoped by database, so a private
server is what keeps one test's events out of another's. Processes log to files under the
test's ``tmp_path``; a failure message includes their last lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from celery import Celery

from flowguard.control.store import WorkflowStore
from flowguard.errors import KafkaUnavailable
from flowguard.kafka_security import client_options
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[1]
QUEUES = "celery,email,priority-high"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def save_workflows(
    kafka: str, prefix: str, definitions: Iterable[dict[str, Any]], timeout_seconds: float = 30
) -> None:
    """Save each definition to the workflow store once it sees its topic: a topic just created
    may not be in every broker answer yet (the store says :class:`KafkaUnavailable`)."""

    async def save() -> None:
        async with WorkflowStore(kafka, prefix) as store:
            for definition in definitions:
                await store.save(definition, saved_by="test")

    def saved() -> bool:
        try:
            asyncio.run(save())
        except KafkaUnavailable:
            return False
        return True

    wait_until(saved, timeout_seconds=timeout_seconds, what="the workflows saved")


def print_logs_if_failed(
    request: pytest.FixtureRequest, processes: Iterable[Process], lines: int = 60
) -> None:
    """What every process said, next to the failure of the test that ran them (CI keeps
    nothing else). The report is kept on the item by tests/conftest.py."""
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for proc in processes:
            print(f"--- {proc.name} log (last {lines} lines):\n{tail(proc.log_path, lines)}")


class Process:
    """A child process with its log file; stopped by signal, killed if it does not stop."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.argv, self.log_path, self.env = name, argv, log, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send_signal(self, signum: int) -> None:
        if self.alive():
            os.killpg(self.pid, signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.alive():
            os.killpg(self.pid, signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL to the whole group (a worker's pool children included)."""
        if self.proc is not None and self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(10)

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if not self.alive() and text not in self.log():
                raise AssertionError(f"{self.name} exited; log:\n{tail(self.log_path)}")
            return text in self.log()

        try:
            wait_until(seen, timeout_seconds=timeout, what=f"{self.name} to log {text!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log:\n{tail(self.log_path)}") from None


@contextmanager
def private_redis(
    tmp: Path, *, port: int | None = None, password: str | None = None
) -> Iterator[str]:
    """A redis-server of this test's own: ``redis://127.0.0.1:<port>/0``.

    ``port``: a port chosen beforehand (a client may already be trying it: Redis "comes
    back"). ``password``: the server requires it, and the URL carries it
    (``redis://:<password>@127.0.0.1:<port>/0``).
    """
    server = shutil.which("redis-server")
    if server is None:
        raise AssertionError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if password is not None:
        argv += ["--requirepass", password]
    proc = Process("redis", argv, tmp / f"redis-{port}.log", dict(os.environ)).start()
    try:
        proc.wait_for_log("Ready to accept connections", timeout=20)
        auth = f":{password}@" if password is not None else ""
        yield f"redis://{auth}127.0.0.1:{port}/0"
    finally:
        proc.stop(signal.SIGKILL)


def celery_client(broker: str) -> Celery:
    """A Celery client of ``broker`` that sends task-sent events, as a producing app does."""
    app = Celery("test-client", broker=broker)
    app.conf.task_send_sent_event = True
    return app


def python_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def celery_worker(
    tmp: Path,
    broker: str,
    name: str = "w1",
    *,
    queues: str = QUEUES,
    concurrency: int = 2,
    acks_late: bool = False,
    visibility_seconds: float | None = None,
    task_events: bool = True,
    extra: tuple[str, ...] = (),
) -> Process:
    """A real Celery worker of the demo app (``flowguard/demo/celery_app.py``), not started.

    ``task_events=False``: started without ``-E`` and with the demo app's
    ``worker_send_task_events`` turned off, so it sends task events only once asked to
    (``enable_events``).
    """
    late = "1" if acks_late else "0"
    env = python_env(FLOWGUARD_DEMO_BROKER=broker, FLOWGUARD_DEMO_ACKS_LATE=late)
    if visibility_seconds is not None:
        env["FLOWGUARD_DEMO_VISIBILITY_SECONDS"] = str(visibility_seconds)
    argv = [
        sys.executable, "-m", "celery", "-A", "flowguard.demo.celery_app", "worker",
        "-n", f"{name}@flowguard", "-Q", queues, "-c", str(concurrency), "-l", "INFO",
        "--without-mingle", "--without-gossip", *(["-E"] if task_events else []), *extra,
    ]  # fmt: skip
    if not task_events:
        argv += ["--", "worker_send_task_events=False"]
    return Process(f"worker {name}", argv, tmp / f"worker-{name}.log", env)


def payments_worker(tmp: Path, app: str, **env: str) -> Process:
    """A started worker of ``app`` that consumes only ``payments``, sending task events (-E)
    but, as Celery's default, no ``task-sent`` (``env``: what the app reads its broker from)."""
    argv = [
        sys.executable, "-m", "celery", "-A", app, "worker", "-n", "pay@flowguard",
        "-Q", "payments", "-c", "1", "-l", "INFO", "--without-mingle", "--without-gossip", "-E",
    ]  # fmt: skip
    return start_worker(Process("worker pay", argv, tmp / "worker-pay.log", python_env(**env)))


def start_worker(worker: Process) -> Process:
    worker.start()
    worker.wait_for_log("ready.", timeout=60)
    return worker


#: The command key every bridge and flowguard worker the tests start share: commands are signed
#: (a bridge refuses unsigned ones). ``<key id>:<secret>``; a worker takes it as ``*=<this>``.
TEST_COMMAND_KEY = "test-1:flowguard-tests-command-key"


def bridge_process(
    tmp: Path,
    *,
    cluster: str,
    broker: str,
    kafka: str,
    prefix: str,
    name: str = "bridge",
    flags: tuple[str, ...] = (),
    **settings: str,
) -> Process:
    """A real ``flowguard-bridge`` process, not started; ``settings`` as FLOWGUARD_* variables,
    ``flags`` as command-line options (which win over the variables)."""
    variables = {
        "FLOWGUARD_CLUSTER": cluster,
        "FLOWGUARD_BROKER": broker,
        "FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "FLOWGUARD_TOPIC_PREFIX": prefix,
        "FLOWGUARD_STATUS_INTERVAL_SECONDS": "0.5",
        "FLOWGUARD_BRIDGE_COMMAND_KEY": TEST_COMMAND_KEY,
    }
    variables.update({f"FLOWGUARD_{key.upper()}": value for key, value in settings.items()})
    env = python_env(**variables)
    argv = [sys.executable, "-m", "bridge.cli", "--log-level", "DEBUG", *flags]
    return Process(name, argv, tmp / f"{name}.log", env)


class TopicReader:
    """Reads a topic from the beginning into ``records`` (in a private event loop per call)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.records: list[tuple[bytes | None, dict[str, Any], int, int]] = []
        #: (partition, offset) -> the record's Kafka timestamp (when it was produced), seconds.
        self.produced_at: dict[tuple[int, int], float] = {}
        self._positions: dict[int, int] = {}

    def poll(self) -> list[dict[str, Any]]:
        """Read whatever is new; returns all values so far (decoded JSON)."""
        asyncio.run(self._poll())
        return [value for _, value, _, _ in self.records]

    async def _poll(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level="read_committed",
            **client_options(),
        )  # fmt: skip
        await consumer.start()
        try:
            # The client's cluster view tracks only subscribed topics: ask the broker.
            metadata = await consumer._client.fetch_all_metadata()
            partitions = metadata.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, self._positions.get(tp.partition, 0))
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for r in records:
                        value = _decode(r.value)
                        self.records.append((r.key, value, r.partition, r.offset))
                        self.produced_at[r.partition, r.offset] = r.timestamp / 1000
                        self._positions[tp.partition] = r.offset + 1
        finally:
            await consumer.stop()

    def wait_for(
        self, check: Callable[[list[dict[str, Any]]], Any], *, timeout: float, what: str
    ) -> Any:
        return wait_until(lambda: check(self.poll()), timeout_seconds=timeout, what=what,
                          interval_seconds=0.2)  # fmt: skip


def _decode(value: bytes | None) -> dict[str, Any]:
    """A record's JSON; one that is not JSON (a poison record) as ``{"undecodable": ...}``."""
    if value is None:
        return {}
    try:
        decoded: dict[str, Any] = json.loads(value)
    except ValueError:
        return {"undecodable": value.decode(errors="replace")}
    return decoded


async def send_all(
    bootstrap: str, topic: str, items: Iterable[tuple[bytes, bytes, int | None]], **options: Any
) -> None:
    """``(key, value, record time in ms or None)`` on ``topic``, idempotent with acks=all
    (``options``: other producer settings, or these), in order, all acknowledged before it
    returns."""
    settings: dict[str, Any] = {"acks": "all", "enable_idempotence": True, **options}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **settings)
    await producer.start()
    try:
        for key, value, timestamp_ms in items:
            await producer.send(topic, value, key=key, timestamp_ms=timestamp_ms)
        await producer.flush()
    finally:
        await producer.stop()


def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **client_options())
        await producer.start()
        try:
            for key, value in items:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())

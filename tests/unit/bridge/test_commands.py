"""bridge/commands.py: the runner waits out its dedup Redis and Kafka instead of ending.

Fakes stand in for Redis, the consumer, the Kafka output and Celery, so each outage can be
switched on and off at will; the real parts are in tests/integration/bridge.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError
from redis.exceptions import ConnectionError as RedisConnectionError

import bridge.commands as commands
from bridge.commands import CommandRunner
from bridge.dedup import DedupStore
from bridge.gate import CommandGate
from bridge.receiver import Backoff
from tests.helpers import running, until
from topics.commands import RevokeCommand
from topics.record import iso
from topics.signing import CommandKey, sign

CLUSTER = "prod"
REFUSED = "Error 111 connecting to 127.0.0.1:6390. Connection refused."
TOPICS = {"commands": "fg.commands", "command-results": "fg.command-results", "dlq": "fg.dlq"}


class FakeRedis:
    """The calls DedupStore makes; ``down`` makes each raise like a refused connection."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.down = False
        self.failed_calls = 0

    def _check(self) -> None:
        if self.down:
            self.failed_calls += 1
            raise RedisConnectionError(REFUSED)

    async def set(self, key: str, value: str, nx: bool = False, ex: int | None = None) -> bool:
        self._check()
        if nx and key in self.values:
            return False
        self.values[key] = value
        return True

    async def get(self, key: str) -> bytes | None:
        self._check()
        value = self.values.get(key)
        return None if value is None else value.encode()

    def register_script(self, _: str) -> Any:
        """DedupStore's one script: swap the value (or delete it) if it is still the one read
        (its real behaviour is tested on a real Redis: tests/integration/bridge/test_dedup.py)."""

        async def swap(keys: list[str], args: list[Any]) -> int:
            self._check()
            [key], (expected, new, _) = keys, args
            if self.values.get(key) != expected:
                return 0
            if new:
                self.values[key] = new
            else:
                self.values.pop(key, None)
            return 1

        return swap


class FakeConsumer:
    """Hands out ``records`` once, then nothing; ``start`` fails while ``refusals`` lasts."""

    def __init__(self, records: list[ConsumerRecord[bytes, bytes]], refusals: list[int]) -> None:
        self.records, self.refusals = records, refusals
        self.started = self.stopped = False
        self.committed: list[dict[TopicPartition, int]] = []

    async def start(self) -> None:
        if self.refusals[0] > 0:
            self.refusals[0] -= 1
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1, 0)]")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        records, self.records = self.records, []
        if not records:
            await asyncio.sleep(0.01)  # a real consumer long-polls; this one must yield
            return {}
        return {TopicPartition(records[0].topic, records[0].partition): records}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)


class FakeOut:
    where = "kafka:9092"

    def __init__(self) -> None:
        self.delivered: list[tuple[str, dict[str, Any]]] = []

    async def deliver(self, topic: str, value: bytes, key: bytes) -> None:
        self.delivered.append((topic, json.loads(value)))


class FakeControl:
    def __init__(self) -> None:
        self.revoked: list[str] = []

    def revoke(self, task_id: str, terminate: bool = False) -> None:
        self.revoked.append(task_id)


class FakeCelery:
    def __init__(self) -> None:
        self.control = FakeControl()


def record(command: RevokeCommand, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    value = command.model_dump_json().encode()
    return ConsumerRecord(
        TOPICS["commands"], 0, offset, 0, 0, CLUSTER.encode(), value, None, 4, len(value), ()
    )


def revoke(command_id: str, task_id: str) -> RevokeCommand:
    return RevokeCommand(
        command_id=command_id, cluster=CLUSTER, issued_at=iso(time.time()) or "", task_id=task_id
    )


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's backoff in milliseconds, so outages of a few attempts take no time."""
    monkeypatch.setattr(commands, "Backoff", lambda first, cap: Backoff(0.01, 0.02))


@pytest.fixture
def env() -> tuple[FakeRedis, FakeOut, FakeCelery]:
    return FakeRedis(), FakeOut(), FakeCelery()


def runner(
    redis: FakeRedis,
    out: FakeOut,
    app: FakeCelery,
    consumers: list[FakeConsumer],
    gate: CommandGate | None = None,
) -> CommandRunner:
    made = iter(consumers)
    return CommandRunner(
        app,  # type: ignore[arg-type]
        CLUSTER,
        lambda: next(made),  # type: ignore[arg-type,return-value]
        out,  # type: ignore[arg-type]
        DedupStore(redis, CLUSTER, 60, "redis://:**@dedup:6379/0"),  # type: ignore[arg-type]
        TOPICS,
        gate or CommandGate({}, allow_unsigned=True, allowed_tasks=(), max_age_seconds=3600),
        0,
        stop_timeout_seconds=1,
    )


def results(out: FakeOut) -> list[dict[str, Any]]:
    return [value for topic, value in out.delivered if topic == TOPICS["command-results"]]


def dedup_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "dedup Redis" in r.getMessage()]


def test_commands_wait_for_the_dedup_redis_and_say_so_once(
    env: tuple[FakeRedis, FakeOut, FakeCelery], caplog: pytest.LogCaptureFixture
) -> None:
    redis, out, app = env
    redis.down = True
    consumer = FakeConsumer([record(revoke("c1", "t1")), record(revoke("c2", "t2"), 1)], [0])
    caplog.set_level(logging.INFO, "flowguard.bridge")

    async def scenario() -> None:
        async with running(runner(redis, out, app, [consumer]).run()) as task:
            await until(lambda: redis.failed_calls >= 5 or task.done(), timeout_seconds=10,
                        what="several refused Redis calls")  # fmt: skip
            assert not task.done(), f"the runner ended: {task.exception()!r}"
            assert results(out) == [], "nothing is carried out without its claim"
            redis.down = False
            await until(lambda: len(results(out)) == 2, timeout_seconds=10, what="2 results")

    asyncio.run(scenario())
    assert [(r["command_id"], r["status"]) for r in results(out)] == [
        ("c1", "done"), ("c2", "done"),
    ]  # fmt: skip
    assert app.control.revoked == ["t1", "t2"], "each carried out once"
    assert redis.values == {
        "flowguard:bridge:prod:command:c1": "done: revoked t1",
        "flowguard:bridge:prod:command:c2": "done: revoked t2",
    }
    lines = dedup_lines(caplog)
    assert len(lines) == 2, lines  # one when it went away, one when it came back
    assert "unreachable (ConnectionError: Error 111" in lines[0]
    assert "redis://:**@dedup:6379/0" in lines[0]
    assert "is back" in lines[1]
    assert consumer.stopped


def test_a_settle_refused_is_retried_not_the_command(
    env: tuple[FakeRedis, FakeOut, FakeCelery], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis away between acting and marking done: the mark waits, the task is not sent again."""
    redis, out, app = env
    consumer = FakeConsumer([record(revoke("c1", "t1"))], [0])
    revoke_once = app.control.revoke

    def revoke_then_lose_redis(task_id: str, terminate: bool = False) -> None:
        revoke_once(task_id, terminate)
        redis.down = True

    app.control.revoke = revoke_then_lose_redis  # type: ignore[method-assign]

    async def scenario() -> None:
        async with running(runner(redis, out, app, [consumer]).run()) as task:
            await until(lambda: redis.failed_calls >= 3 or task.done(), timeout_seconds=10,
                        what="the settle refused")  # fmt: skip
            assert not task.done(), f"the runner ended: {task.exception()!r}"
            redis.down = False
            await until(lambda: results(out), timeout_seconds=10, what="the result")

    asyncio.run(scenario())
    assert app.control.revoked == ["t1"]
    assert [r["status"] for r in results(out)] == ["done"]
    assert redis.values["flowguard:bridge:prod:command:c1"] == "done: revoked t1"


def test_the_consumer_is_started_with_backoff_when_kafka_is_away(
    env: tuple[FakeRedis, FakeOut, FakeCelery], caplog: pytest.LogCaptureFixture
) -> None:
    redis, out, app = env
    refusals = [3]
    consumers = [FakeConsumer([record(revoke("c1", "t1"))], refusals) for _ in range(4)]
    caplog.set_level(logging.INFO, "flowguard.bridge")

    async def scenario() -> None:
        async with running(runner(redis, out, app, consumers).run()) as task:
            await until(lambda: results(out) or task.done(), timeout_seconds=10,
                        what="the command carried out")  # fmt: skip
            assert not task.done(), f"the runner ended: {task.exception()!r}"

    asyncio.run(scenario())
    assert [c.started for c in consumers] == [False, False, False, True]
    assert all(c.stopped for c in consumers), "refused ones too: each client closed"
    lines = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("commands: Kafka at kafka:9092 unreachable (KafkaConnectionError")


def test_a_forged_command_is_refused_dead_lettered_and_names_no_execution(
    env: tuple[FakeRedis, FakeOut, FakeCelery],
) -> None:
    """Neither Celery nor the dedup store sees it: a forger cannot claim a real command's id."""
    redis, out, app = env
    key = CommandKey.parse("k1:the-bridge-secret-0123")
    gate = CommandGate({key.key_id: key}, allow_unsigned=False, allowed_tasks=(),
                       max_age_seconds=3600)  # fmt: skip
    run = runner(redis, out, app, [], gate)
    forged = revoke("c1", "t1").model_copy(update={"execution_id": "e-real"})
    wrong = sign(revoke("c2", "t2"), CommandKey.parse("k1:not-the-bridge-secret"))
    signed = sign(revoke("c3", "t3"), key)

    async def scenario() -> None:
        for offset, command in enumerate((forged, wrong, signed)):
            await run.handle(record(command, offset))

    asyncio.run(scenario())
    assert app.control.revoked == ["t3"]
    assert list(redis.values) == ["flowguard:bridge:prod:command:c3"]
    first, second, third = results(out)
    assert (first["status"], first["detail"]) == ("failed", "refused: unsigned")
    assert first["execution_id"] is None
    assert second["detail"].startswith("refused: bad signature (key 'k1')")
    assert third["status"] == "done"
    letters = [value for topic, value in out.delivered if topic == TOPICS["dlq"]]
    assert [letter["reason"] for letter in letters] == [
        "command c1 (command.revoke) refused: unsigned",
        f"command c2 (command.revoke) {second['detail']}",
    ]
    assert run.counts["refused"] == 2

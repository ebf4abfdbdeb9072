"""bridge/app.py: a start that fails part way stops what had started, and says why.

A fake producer stands in for Kafka, so the failures are the ones the test puts in.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from bridge.app import Bridge
from bridge.receiver import CeleryReceiver
from bridge.settings import BridgeSettings
from flowguard.errors import ConfigError


class FakeProducer:
    made: ClassVar[list[FakeProducer]] = []

    def __init__(self) -> None:
        self.started = self.stopped = False
        FakeProducer.made.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@pytest.fixture(autouse=True)
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeProducer.made = []
    monkeypatch.setattr(Bridge, "_producer", lambda self: FakeProducer())


def bridge(**given: Any) -> Bridge:
    values: dict[str, Any] = {"cluster": "prod", "broker": "redis://127.0.0.1:1/0", **given}
    return Bridge(BridgeSettings(**values))


def test_a_config_error_comes_before_anything_starts() -> None:
    """Commands on an amqp broker need a dedup_url: said at once, not after waiting for Kafka."""
    with pytest.raises(ConfigError, match=r"^dedup_url: required when the broker is not Redis"):
        asyncio.run(bridge(broker="amqp://guest:guest@127.0.0.1:1//").run())
    assert FakeProducer.made == []


def test_a_component_that_fails_to_start_ends_the_bridge_with_its_own_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: CeleryReceiver) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(CeleryReceiver, "start", refuse)
    leftover: list[asyncio.Task[Any]] = []

    async def scenario() -> None:
        try:
            await bridge(commands=False).run()
        finally:
            leftover.extend(t for t in asyncio.all_tasks() if t is not asyncio.current_task())

    with pytest.raises(RuntimeError, match="can't start new thread"):
        asyncio.run(scenario())
    assert leftover == [], "every task the bridge started was cancelled and awaited"
    [producer] = FakeProducer.made
    assert producer.started
    assert producer.stopped

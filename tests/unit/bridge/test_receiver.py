"""bridge/receiver.py: outages said once per change of state, and a stop at any point.

A scripted fake stands in for Celery's connection and receiver: each connect attempt either
fails or comes up (the consumer is ready) and is then lost, in the order the test says.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import bridge.receiver as receiver_module
from bridge.buffer import EventBuffer
from bridge.intake import Intake
from bridge.receiver import Backoff, CeleryReceiver
from tests.helpers import wait_until

REFUSED = "Error 111 connecting to 127.0.0.1:6390. Connection refused."


class Script:
    """What each connect attempt does: ``fail``, or ``up`` (ready, then the connection drops)."""

    def __init__(self, steps: list[str]) -> None:
        self.steps = steps
        self.attempts = 0
        self.done = threading.Event()

    def next(self) -> str:
        self.attempts += 1
        if self.attempts > len(self.steps):
            self.done.set()
            return "idle"
        return self.steps[self.attempts - 1]


class FakeConnection:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.step = "fail"

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *_: Any) -> None:
        pass

    def ensure_connection(self, max_retries: int = 1) -> None:
        self.step = self.script.next()
        if self.step == "fail":
            raise ConnectionError(REFUSED)


class FakeReceiver:
    """Stands in for ``_Receiver``: ready, then the broker goes away with the same words."""

    def __init__(self, conn: FakeConnection, *, on_ready: Any, **_: Any) -> None:
        self.conn, self.on_ready, self.should_stop = conn, on_ready, False

    def capture(self, **_: Any) -> None:
        if self.conn.step == "idle":
            self.conn.script.done.wait(10)
            while not self.should_stop:
                threading.Event().wait(0.01)  # a real capture() blocks until should_stop
            return
        self.on_ready()
        raise ConnectionError(REFUSED)


class FakeInspect:
    def active(self, safe: bool = True) -> None:
        return None

    def reserved(self, safe: bool = True) -> None:
        return None


class FakeControl:
    def enable_events(self) -> None:
        pass

    def inspect(self, timeout: float) -> FakeInspect:
        return FakeInspect()


class FakeApp:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.control = FakeControl()

    def connection_for_read(self) -> FakeConnection:
        return FakeConnection(self.script)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receiver_module, "_Receiver", FakeReceiver)
    monkeypatch.setattr(receiver_module, "Backoff", lambda: Backoff(0.01, 0.02))


def make(script: Script, loop: asyncio.AbstractEventLoop) -> CeleryReceiver:
    intake = Intake("prod", "fg.events", "fg.dlq", EventBuffer(100, loop))
    return CeleryReceiver(FakeApp(script), intake, "redis://:**@broker:6379/0", 1.0)  # type: ignore[arg-type]


def test_a_second_outage_with_the_same_words_is_said_again(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "flowguard.bridge")
    script = Script(["fail", "fail", "up", "fail", "fail", "up", "fail"])
    receiver = make(script, loop)
    receiver.start()
    try:
        wait_until(script.done.is_set, timeout_seconds=10, what="the script played out")
    finally:
        receiver.stop()
    messages = [r.getMessage() for r in caplog.records]
    outages = [m for m in messages if "unreachable" in m]
    # Three outages (before the first connect, between, after the second): each said once.
    assert len(outages) == 3, messages
    assert all(REFUSED in m and "redis://:**@broker:6379/0" in m for m in outages)
    assert len([m for m in messages if m.startswith("consuming Celery events")]) == 2


def test_stop_before_start_is_a_no_op(loop: asyncio.AbstractEventLoop) -> None:
    """A bridge whose start failed earlier stops a receiver that never ran."""
    receiver = make(Script([]), loop)
    receiver.stop()
    assert not receiver.connected


def test_a_broker_that_never_answers_does_not_hold_up_the_stop(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    """A real Celery app against a socket that accepts connections and never answers: the
    receiver's thread hangs in the connect (redis-py has no read timeout there). The stop
    gives up on it after the drain interval's bound (it used to wait 5 s)."""
    from celery import Celery

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        app = Celery("silent", broker=f"redis://127.0.0.1:{server.getsockname()[1]}/0")
        app.conf.update(broker_connection_retry_on_startup=False, broker_connection_max_retries=1)
        intake = Intake("prod", "fg.events", "fg.dlq", EventBuffer(100, loop))
        receiver = CeleryReceiver(app, intake, "redis://silent", 1.0)
        receiver.start()
        accepted, _ = server.accept()  # the receiver connected (and now waits for ever)
        with accepted:
            started = time.monotonic()
            receiver.stop()
            took = time.monotonic() - started
    receiver.stop(timeout=10)  # the broker hung up and is gone: the thread ends now
    assert not receiver._thread.is_alive()
    assert took < 2.0, f"stop took {took:.1f} s"
    assert "did not stop within 1.5 s" in caplog.text


class SlowInspect:
    """``inspect()``: each call waits ``wait`` seconds (on the fake clock) for the workers, and
    the prefetched task arrives at a worker while the first one waits."""

    def __init__(self, clock: list[float], wait: float) -> None:
        self.clock, self.wait = clock, wait

    def active(self, safe: bool) -> dict[str, Any]:
        self.clock[0] += self.wait
        return {"w1@host": []}

    def reserved(self, safe: bool) -> dict[str, Any]:
        self.clock[0] += self.wait
        return {"w1@host": [{"id": "prefetched", "name": "demo.tasks.add", "args": "(2, 2)"}]}


def test_a_snapshot_says_a_task_was_reserved_as_of_the_reply_not_of_the_question(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stamped when the asking began, a task received while inspect() waited was "reserved"
    before Celery's own task-received said it arrived, and task.stuck fired early (CI saw live
    and replay differ by the 2 s the two inspect calls waited)."""
    clock = [1_000.0]
    monkeypatch.setattr(receiver_module.time, "time", lambda: clock[0])
    found: list[Any] = []

    class Control:
        def enable_events(self) -> None: ...

        def inspect(self, timeout: float) -> SlowInspect:
            return SlowInspect(clock, timeout)

    class App:
        control = Control()

    class Found:
        cluster = "prod"

        def on_snapshot(self, events: list[Any]) -> None:
            found.extend(events)

    receiver = CeleryReceiver(App(), Found(), "redis://x", inspect_timeout=1.0)  # type: ignore[arg-type]
    receiver._prepare()
    [snapshot] = found
    assert (snapshot.task_id, snapshot.state) == ("prefetched", "reserved")
    assert snapshot.timestamp == 1_002.0, "as of the reserved reply, 2 s after the asking began"

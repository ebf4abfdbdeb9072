"""Celery's event stream, read in a thread with ``app.events.Receiver`` (as Flower does).

On every (re)connect, once the receiver is consuming, the bridge asks the workers to send
events (``enable_events``) and takes a snapshot of active and reserved tasks with
``inspect()``, in a second thread so the receiver keeps draining meanwhile. Connection
problems are retried with capped backoff and logged once per state change: a consumer that
came up ends the problem (and the backoff), so the next outage is said again even if Celery
words it the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.events.receiver import EventReceiver

from bridge.intake import Intake
from flowguard.celery_wire.events import snapshot_events

log = logging.getLogger("flowguard.bridge")


class Backoff:
    """Capped exponential backoff: 0.5 s, 1 s, 2 s ... up to ``cap``."""

    def __init__(self, first: float = 0.5, cap: float = 15.0) -> None:
        self.first, self.cap, self._next = first, cap, first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


class _Receiver(EventReceiver):  # type: ignore[misc]
    """Celery's receiver, but a malformed message is reported, not fatal, and we reconnect."""

    connect_max_retries = 1

    def __init__(self, *args: Any, on_ready: Callable[[], None], on_bad: Callable[..., None],
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self._on_ready, self._on_bad = on_ready, on_bad

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kw: Any) -> None:
        super().on_consume_ready(connection, channel, consumers, **kw)
        self._on_ready()

    def _receive(self, body: Any, message: Any, *_: Any) -> None:
        for raw in body if isinstance(body, list) else [body]:
            try:
                kind, event = self.event_from_message(raw)
            except Exception as exc:  # a message that is not a Celery event at all
                self._on_bad(raw, f"not a Celery event ({type(exc).__name__}: {exc})")
                continue
            self.process(kind, event)


@dataclass(eq=False)
class CeleryReceiver:
    """Runs the receiver thread; ``connected`` tells whether Celery's broker answers now."""

    app: Celery
    intake: Intake
    broker_display: str
    inspect_timeout: float
    connected: bool = field(default=False, init=False)
    snapshots: int = field(default=0, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _receiver: _Receiver | None = field(default=None, init=False, repr=False)
    # Both only touched in the receiver's thread (_on_ready runs inside capture()).
    _backoff: Backoff = field(default_factory=Backoff, init=False, repr=False)
    _problem: str | None = field(default=None, init=False)
    _thread: threading.Thread = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="celery-receiver", daemon=True)

    def start(self) -> None:
        self._thread.start()

    #: A consuming receiver sees ``should_stop`` within Celery's drain interval (1 s).
    STOP_TIMEOUT_SECONDS = 1.5

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop and join the thread, for at most ``timeout``; a no-op for the thread if it never
        started (partial start). A thread still stuck after that (a broker that accepted the
        connection and never answers: no read timeout) is a daemon, left to end with the
        process rather than hold up the shutdown."""
        self._stopping.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread.ident is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the Celery receiver did not stop within %g s (the broker %s does "
                            "not answer); left behind", timeout, self.broker_display)  # fmt: skip

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self.app.connection_for_read() as conn:
                    conn.ensure_connection(max_retries=1)
                    self._receiver = _Receiver(
                        conn,
                        handlers={"*": self.intake.on_event},
                        app=self.app,
                        on_ready=self._on_ready,
                        on_bad=self._on_bad,
                    )
                    if self._stopping.is_set():
                        break
                    self._receiver.capture(limit=None, timeout=None, wakeup=True)
                    if self._stopping.is_set():
                        break
                    raise ConnectionError("the event consumer stopped")
            except Exception as exc:
                self.connected = False
                reason = f"{type(exc).__name__}: {exc}"
                if reason != self._problem:
                    log.error(
                        "Celery broker %s unreachable (%s); retrying with backoff",
                        self.broker_display, reason,
                    )  # fmt: skip
                    self._problem = reason
                self._stopping.wait(self._backoff.next())
        self.connected = False

    def _on_ready(self) -> None:
        if not self.connected:
            log.info("consuming Celery events from %s", self.broker_display)
        self.connected = True
        self._problem = None
        self._backoff.reset()
        threading.Thread(target=self._prepare, name="celery-snapshot", daemon=True).start()

    def _on_bad(self, raw: Any, reason: str) -> None:
        self.intake.on_invalid(reason, raw)

    def _prepare(self) -> None:
        """enable_events, then the snapshot of active and reserved tasks."""
        try:
            self.app.control.enable_events()
            inspect = self.app.control.inspect(timeout=self.inspect_timeout)
            # Each reply's time is when it came back: each call waits up to inspect_timeout,
            # and a task a worker received meanwhile is in the reply. Stamped with the time the
            # asking began, it was "reserved" up to 2 s before Celery's own task-received said
            # it arrived, and a task.stuck judged on the snapshot fired that much early (CI: the
            # live-equals-replay test of a prefetched task saw two different trigger times).
            active = inspect.active(safe=True)
            active_at = time.time()
            reserved = inspect.reserved(safe=True)
            reserved_at = time.time()
        except Exception as exc:
            log.warning("inspect() failed, no snapshot this time: %s: %s", type(exc).__name__, exc)
            return
        found = []
        cluster = self.intake.cluster
        for events, problems in (
            snapshot_events(active, "active", cluster, active_at),
            snapshot_events(reserved, "reserved", cluster, reserved_at),
        ):
            for problem in problems:
                log.warning("%s", problem)
            found.extend(events)
        self.intake.on_snapshot(found)
        self.snapshots += 1
        log.info("snapshot: %d active and reserved tasks", len(found))

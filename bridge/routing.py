"""Where a retry goes: the user's Celery app (loaded as ``celery -A`` and Flower load it), its
router and ``task_routes``, and a check that some worker consumes the queue.

Celery's default is ``task_send_sent_event = False``: on most clusters no event ever names a
task's queue, and a retry sent without one lands in the default queue (``celery``), which
routed deployments often leave unconsumed. So the queue of a retry is, in order: the queue
the command carries (learnt from events), else what the user's app routes the task to (its
``task_routes`` and routers, through Celery's own ``app.amqp.router``), else the default
queue. Before sending, :class:`ActiveQueues` asks the workers which queues they consume
(``inspect().active_queues()``, cached): a queue nobody consumes is refused, not fed.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.app.utils import find_app
from celery.signals import before_task_publish

from flowguard.errors import ConfigError
from topics.commands import RetryCommand
from topics.events import TaskSent
from topics.record import iso

log = logging.getLogger("flowguard.bridge")

#: ``hostname`` of the ``task.sent`` events the bridge publishes for its own sends, so that a
#: reader (``flowguard doctor``) tells them from Celery's own ``task-sent``.
BRIDGE_SENDER = f"flowguard-bridge@{socket.gethostname()}"

Replies = dict[str, list[dict[str, Any]]] | None


def load_app(spec: str | None, config: str | None, name: str) -> Celery:
    """The user's app (``proj.celery:app``, ``proj.celery`` or ``proj``, found as ``celery -A``
    finds it, the current directory on ``sys.path``), else a bare app named ``name``; then
    ``config`` (a module, as ``celeryconfig``) read into it. A ConfigError names the field."""
    if spec is None:
        app = Celery(name)
    else:
        try:
            found = find_app(spec)
        except Exception as exc:  # ImportError, AttributeError, or the module's own error
            raise ConfigError(f"app: cannot load {spec!r}: {_why(spec, exc)}") from exc
        if not isinstance(found, Celery):
            raise ConfigError(f"app: {spec!r} is a {type(found).__name__}, not a Celery app")
        app = found
    if config is not None:
        try:
            app.config_from_object(config, force=True)
        except Exception as exc:
            raise ConfigError(
                f"config: cannot load {config!r}: {type(exc).__name__}: {exc}"
            ) from exc
    return app


def _why(spec: str, exc: Exception) -> str:
    # find_app imports the whole spec as a module when the attribute is missing.
    module, _, attribute = spec.partition(":")
    if attribute and isinstance(exc, ModuleNotFoundError) and exc.name == spec:
        return f"module {module!r} has no attribute {attribute!r}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a retry will go: the send options, and the queue's name (None: exchange only)."""

    options: dict[str, Any]
    queue: str | None


def route(
    app: Celery, command: RetryCommand, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Target:
    """Celery's own routing for ``send_task``: the command's queue, exchange and routing key
    where it has them, the app's routes for the rest, the default queue when nothing names one.
    Raises ``QueueNotFound`` when the app does not create missing queues."""
    given = {
        "queue": command.queue,
        "exchange": command.exchange,
        "routing_key": command.routing_key,
    }
    options = app.amqp.router.route(
        {key: value for key, value in given.items() if value}, command.name, args, kwargs
    )
    queue = options.get("queue")
    return Target(dict(options), None if queue is None else str(queue.name))


class Published:
    """What Celery actually published a task with (exchange, routing key), by task id, from
    its ``before_task_publish`` signal: the truth, rather than a copy of Celery's rules."""

    def __init__(
        self, on_publish: Callable[[str, str | None, str | None], None] | None = None
    ) -> None:
        self._seen: dict[str, tuple[str | None, str | None]] = {}
        self._lock = threading.Lock()
        self._on_published = on_publish
        before_task_publish.connect(self._on_publish, weak=False, dispatch_uid=f"fg-{id(self)}")

    def _on_publish(self, sender: Any = None, headers: dict[str, Any] | None = None,
                    exchange: Any = None, routing_key: Any = None, **_: Any) -> None:  # fmt: skip
        task_id = (headers or {}).get("id")
        if isinstance(task_id, str):
            name = getattr(exchange, "name", exchange)
            seen = (None if name is None else str(name),
                    None if routing_key is None else str(routing_key))  # fmt: skip
            with self._lock:
                self._seen[task_id] = seen
            if self._on_published is not None:  # before the broker has the message
                self._on_published(task_id, *seen)

    def pop(self, task_id: str) -> tuple[str | None, str | None]:
        with self._lock:
            return self._seen.pop(task_id, (None, None))

    def close(self) -> None:
        before_task_publish.disconnect(dispatch_uid=f"fg-{id(self)}")


@dataclass(frozen=True, slots=True)
class Consumers:
    """The answer about one queue: ``answered`` False when no worker answered at all."""

    answered: bool
    consumed: bool
    queues: tuple[str, ...]  # every queue some worker consumes, sorted


class ActiveQueues:
    """The queues the cluster's workers consume, cached ``ttl_seconds``; a queue not in the
    cache refreshes it at once (a worker may have just started), at most once a second. It is
    filled when the command runner starts, so the first retry does not wait.

    An ``inspect`` waits its whole timeout for replies unless told how many to expect: the
    refresh of a cache that had the queue expects the workers of the last answer (it returns
    once they all replied, in milliseconds); a miss waits the whole timeout, so that a worker
    that has just come up is heard."""

    MIN_REFRESH_SECONDS = 1.0

    def __init__(
        self,
        fetch: Callable[[int | None], Replies],
        ttl_seconds: float,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch, self.ttl, self._clock = fetch, ttl_seconds, clock
        self.timeout_seconds = timeout_seconds  # how long an inspect waits for replies
        self._queues: frozenset[str] | None = None  # None: no worker answered
        self._workers = 0
        self._at = -float("inf")
        self._lock = threading.Lock()  # warm() runs in a thread of its own at start

    @classmethod
    def of(cls, app: Celery, ttl_seconds: float, timeout_seconds: float) -> ActiveQueues:
        """``fetch(limit)``: replies to ``inspect().active_queues()``, stopping after ``limit``."""
        return cls(
            lambda limit: app.control.inspect(timeout=timeout_seconds, limit=limit).active_queues(),
            ttl_seconds, timeout_seconds,
        )  # fmt: skip

    def warm(self) -> None:
        """Ask now (blocking), so that the first retry does not wait for the workers' replies."""
        with self._lock:
            self._refresh(None)

    def check(self, queue: str) -> Consumers:
        """Whether some worker consumes ``queue`` (blocking: may ask the workers)."""
        with self._lock:
            age = self._clock() - self._at
            known = self._queues is not None and queue in self._queues
            if not known and age > self.MIN_REFRESH_SECONDS:
                self._refresh(None)
            elif age > self.ttl:
                self._refresh(self._workers or None)
            queues = self._queues
        if queues is None:
            return Consumers(answered=False, consumed=False, queues=())
        return Consumers(answered=True, consumed=queue in queues, queues=tuple(sorted(queues)))

    def _refresh(self, limit: int | None) -> None:
        replies = self._fetch(limit)
        self._at = self._clock()
        if not replies:
            self._queues, self._workers = None, 0
            return
        self._workers = len(replies)
        self._queues = frozenset(
            str(info["name"]) for infos in replies.values() for info in infos or ()
            if isinstance(info, dict) and info.get("name")
        )  # fmt: skip


def sent_event(
    cluster: str, command: RetryCommand, queue: str | None, exchange: str | None,
    routing_key: str | None, eta: float | None,
) -> TaskSent:  # fmt: skip
    """The ``task.sent`` the bridge publishes for a retry it sent (Celery sends none for it
    unless the app has ``task_send_sent_event``)."""
    return TaskSent(
        cluster=cluster,
        task_id=command.task_id,
        timestamp=time.time(),
        hostname=BRIDGE_SENDER,
        name=command.name,
        root_id=command.root_id,
        parent_id=command.parent_id,
        queue=queue,
        exchange=exchange,
        routing_key=routing_key,
        args=command.args,
        kwargs=command.kwargs,
        eta=iso(eta),
    )

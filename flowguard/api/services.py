"""What the API's handlers share: the store, the history and fleet projections, a producer, the
runner.

One :class:`Services` per app, started and stopped by the app's lifespan. Each
background task it starts (the projection following the log) is owned here and
cancelled on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from aiokafka import AIOKafkaProducer
from fastapi import Request

from flowguard.actions import ActionRunner, ActionSettings
from flowguard.api.auth import TokenAuth, parse_tokens
from flowguard.api.fleet_feed import FleetFeed
from flowguard.api.settings import ApiSettings
from flowguard.control.history import HistoryProjection
from flowguard.control.store import WorkflowStore
from flowguard.errors import KafkaUnavailable
from flowguard.kafka_security import client_options
from flowguard.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)
# Back-off between attempts to follow the execution log while Kafka is unreachable.
FOLLOW_RETRY_SECONDS = 1.0


@dataclass
class Services:
    settings: Settings
    api: ApiSettings
    store: WorkflowStore
    producer: AIOKafkaProducer
    runner: ActionRunner
    history: HistoryProjection
    fleet: FleetFeed = field(default_factory=FleetFeed)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    heavy: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    async def off_loop(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run CPU-heavy work (a Test Workflow run, an import) on a thread, a few at a time.

        The event loop keeps answering other requests (and heartbeats to Kafka) meanwhile;
        ``FLOWGUARD_API_TEST_CONCURRENCY`` bounds how many run at once, the rest wait.
        """
        async with self.heavy:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def refreshed_store(self) -> WorkflowStore:
        """The store, read up to the history's end: what every other writer saved is seen.

        The store serializes its own consumer (one lock for reads and writes alike).
        """
        await self.store.refresh()
        return self.store


def services(request: Request) -> Services:
    """FastAPI dependency: the app's services."""
    found: Services = request.app.state.services
    return found


@asynccontextmanager
async def started(settings: Settings, api: ApiSettings) -> AsyncIterator[Services]:
    """Start everything the handlers need; stop it all, whatever happens, on the way out."""
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(
            WorkflowStore(
                settings.kafka_bootstrap_servers,
                settings.topic_prefix,
                timeout=settings.kafka_timeout_seconds,
                policy=settings.secret_policy(),
                keyring=settings.keyring(),
            )
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=int(settings.kafka_timeout_seconds * 1000),
            **client_options(settings),
        )
        await producer.start()
        stack.push_async_callback(producer.stop)
        runner = await stack.enter_async_context(
            ActionRunner(
                ActionSettings(), policy=settings.secret_policy(), keyring=settings.keyring()
            )
        )
        history = stack.enter_context(HistoryProjection(api.history_file(settings.topic_prefix)))
        found = Services(
            settings=settings,
            api=api,
            store=store,
            producer=producer,
            runner=runner,
            history=history,
            heavy=asyncio.Semaphore(api.test_concurrency),
        )
        stack.push_async_callback(_cancel_all, found)
        for name, following in (
            ("history-follow", _keep_following(found, history, "execution history", "the log")),
            ("fleet-follow", _keep_following(found, found.fleet, "fleet", "the events topic")),
        ):
            found.tasks.append(asyncio.create_task(following, name=name))
        yield found


async def _keep_following(found: Services, projection: HistoryProjection | FleetFeed,
                          what: str, source: str) -> None:  # fmt: skip
    """Keep ``projection`` (the execution history, the fleet view) current from ``source``; a
    broken connection is logged and retried."""
    settings = found.settings
    while True:
        try:
            await projection.follow(
                settings.kafka_bootstrap_servers,
                settings.topic_prefix,
                request_timeout_seconds=settings.kafka_timeout_seconds,
            )
        except KafkaUnavailable as exc:
            log.warning("%s: %s; retrying in %g s", what, exc, FOLLOW_RETRY_SECONDS)
        except Exception:
            log.exception("%s: following %s failed; retrying", what, source)
        await asyncio.sleep(FOLLOW_RETRY_SECONDS)


async def _cancel_all(found: Services) -> None:
    for task in found.tasks:
        task.cancel()
    for task in found.tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("background task %s failed", task.get_name())


def token_auth(api: ApiSettings) -> TokenAuth:
    """The token table; a bad FLOWGUARD_API_TOKENS stops the start with the entry named."""
    return TokenAuth(parse_tokens(api.tokens))

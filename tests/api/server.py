"""The real API app served by uvicorn on 127.0.0.1 in a thread, against real Kafka.

Shared by the API tests and the browser tests: one :class:`Served` per test, with
its own topic prefix, history file and tokens of each role.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from flowguard.api.app import create_app
from flowguard.api.services import Services
from flowguard.api.settings import ApiSettings
from flowguard.control.kafka_admin import create_topics, list_topics
from flowguard.settings import Settings
from tests.helpers import wait_until
from tests.processes import send_all
from topics.execution import ExecutionRecord
from topics.registry import ALL_TOPICS

T = TypeVar("T")
TOKENS = {
    "viewer": "viewer-token-0123456789abcdef",
    "editor": "editor-token-0123456789abcdef",
    "admin": "admin-token-0123456789abcdef0",
}


@dataclass(frozen=True)
class Served:
    base_url: str
    prefix: str
    bootstrap: str
    settings: Settings
    app: FastAPI

    @property
    def services(self) -> Services:
        """The running app's services (its store, history...), for failure injection."""
        found: Services = self.app.state.services
        return found

    def client(self, role: str | None = "editor") -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)


def in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: works where a loop already runs (Playwright)."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(asyncio.run(coroutine))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="in-thread")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def _tokens() -> str:
    return ",".join(f"{role}-user:{role}:{token}" for role, token in TOKENS.items())


def publish_records(served: Served, records: Iterable[ExecutionRecord]) -> None:
    """Execution records on the served app's execution log, keyed by workflow id as the
    worker writes them, all acknowledged before it returns."""
    items = [(r.workflow.id.encode(), r.to_json().encode(), None) for r in records]
    in_thread(send_all(served.bootstrap, f"{served.prefix}.execution-log", items))


@contextmanager
def serve(
    bootstrap: str, prefix: str, history_dir: Path, *, create: bool = True, **api: Any
) -> Iterator[Served]:
    """Create the prefix's topics (1 partition each; ``create=False``: they exist, made by a
    worker), start the app, stop it on exit."""
    settings = Settings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix)
    if create:
        in_thread(create_topics(bootstrap, prefix, 30, partitions=1))
        # A created topic can take a moment to be listed; the store refuses to start without it.
        wanted = {f"{prefix}.{spec.suffix}" for spec in ALL_TOPICS}
        wait_until(
            lambda: wanted <= set(in_thread(list_topics(bootstrap, 10))),
            timeout_seconds=30,
            what=f"{prefix}'s topics to be listed",
        )
    app = create_app(
        settings, ApiSettings(tokens=SecretStr(_tokens()), history_dir=history_dir, **api)
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api-server", daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: server.started or not thread.is_alive(),
            timeout_seconds=60,
            what="the API server to start",
        )
        assert server.started, "the API server stopped while starting (see the log above)"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Served(f"http://127.0.0.1:{port}", prefix, bootstrap, settings, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)

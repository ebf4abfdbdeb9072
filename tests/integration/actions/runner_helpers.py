"""Running deliveries from sync tests: one event loop per call, the runner closed after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowguard.actions import ActionRunner, ActionSettings, DeliveryStore
from flowguard.control.secrets import Keyring, SecretPolicy
from flowguard.engine.decision import Notice
from topics.execution import ActionResult

# Tests reach 127.0.0.1 only because the allowlist opens it; backoff kept short.
LOCAL: dict[str, Any] = {
    "allow_hosts": "127.0.0.1",
    "backoff_base_seconds": 0.05,
    "backoff_max_seconds": 0.2,
}


def settings(**overrides: Any) -> ActionSettings:
    return ActionSettings(**{**LOCAL, **overrides})


@dataclass(frozen=True)
class Timed:
    result: ActionResult
    seconds: float


def deliver(
    notices: list[Notice],
    *,
    config: ActionSettings | None = None,
    store: DeliveryStore | None = None,
    environ: Mapping[str, str] | None = None,
    policy: SecretPolicy | None = None,
    keyring: Keyring | None = None,
    sample: bool = False,
    concurrent: bool = False,
) -> list[Timed]:
    """Deliver ``notices`` with one runner, one after another or all at once."""

    async def one(runner: ActionRunner, notice: Notice) -> Timed:
        started = time.monotonic()
        result = await runner.deliver(notice, sample=sample)
        return Timed(result, time.monotonic() - started)

    async def run() -> list[Timed]:
        async with ActionRunner(
            config or settings(), store, environ=environ, policy=policy, keyring=keyring
        ) as runner:
            if concurrent:
                return list(await asyncio.gather(*(one(runner, n) for n in notices)))
            return [await one(runner, n) for n in notices]

    return asyncio.run(run())

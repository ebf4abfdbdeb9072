"""A user's Celery app as most clusters run it: Celery's defaults (``task_send_sent_event``
left ``False``, so no event names a task's queue) and ``task_routes`` sending its task to a
named queue that the default queue (``celery``) does not serve.

Loaded by a real worker (``celery -A tests.integration.bridge.routed_app worker -Q payments``)
and by the bridge (``--app tests.integration.bridge.routed_app:app``); the broker comes from
``ROUTED_APP_BROKER``.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("routed", broker=os.environ.get("ROUTED_APP_BROKER", "redis://127.0.0.1:6379/0"))


def _broken_router(name: str, *_: object, **__: object) -> None:
    """A router function that fails for one task: an error the bridge did not foresee."""
    if name == "routed.broken":
        raise RuntimeError("router lookup failed")


app.conf.update(
    task_routes=(_broken_router, {"routed.charge": {"queue": "payments"}}),
    broker_connection_retry_on_startup=True,
)


@app.task(name="routed.charge")  # type: ignore[untyped-decorator]
def charge(amount: int, card: str = "") -> str:
    return f"charged {amount} to {card}"

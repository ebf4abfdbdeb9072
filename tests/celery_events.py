"""Raw Celery event dicts, shaped as ``app.events.Receiver`` hands them over.

For synthetic unit tests; the acceptance tests use real recordings in tests/data/.
Each builder takes the fields Celery really sends on that event type and no more.
"""

from __future__ import annotations

from typing import Any

Raw = dict[str, Any]
WORKER = "celery@w1"


def _task_event(
    kind: str, task_id: str, ts: float, hostname: str, clock: int, pid: int | None, **fields: Any
) -> Raw:
    """The fields every task event carries (``pid`` on all but task-retried), then its own."""
    event: Raw = {
        "type": f"task-{kind}",
        "uuid": task_id,
        "timestamp": ts,
        "hostname": hostname,
        **fields,
        "clock": clock,
        "utcoffset": 0,
    }
    if pid is not None:
        event["pid"] = pid
    return event


def sent(
    task_id: str,
    ts: float,
    name: str,
    *,
    args: str = "()",
    kwargs: str = "{}",
    queue: str = "celery",
    root_id: str | None = None,
    parent_id: str | None = None,
    retries: int = 0,
    hostname: str = "gen1@client",
) -> Raw:
    return _task_event(
        "sent", task_id, ts, hostname, clock=1, pid=1,
        name=name, args=args, kwargs=kwargs, queue=queue, routing_key=queue,
        root_id=root_id or task_id, parent_id=parent_id, retries=retries,
        eta=None, expires=None, exchange="",
    )  # fmt: skip


def received(
    task_id: str,
    ts: float,
    name: str,
    *,
    args: str = "()",
    kwargs: str = "{}",
    root_id: str | None = None,
    parent_id: str | None = None,
    retries: int = 0,
    hostname: str = WORKER,
) -> Raw:
    return _task_event(
        "received", task_id, ts, hostname, clock=2, pid=2,
        name=name, args=args, kwargs=kwargs, root_id=root_id or task_id, parent_id=parent_id,
        retries=retries, eta=None, expires=None,
    )  # fmt: skip


def started(task_id: str, ts: float, hostname: str = WORKER) -> Raw:
    return _task_event("started", task_id, ts, hostname, clock=3, pid=3)


def failed(
    task_id: str, ts: float, exception: str = "ConnectionError('refused')", hostname: str = WORKER
) -> Raw:
    return _task_event(
        "failed", task_id, ts, hostname, clock=4, pid=2,
        exception=exception, traceback="Traceback (most recent call last): ...",
    )  # fmt: skip


def retried(
    task_id: str, ts: float, exception: str = "ConnectionError('refused')", hostname: str = WORKER
) -> Raw:
    return _task_event(
        "retried", task_id, ts, hostname, clock=4, pid=None,
        exception=exception, traceback="Traceback ...",
    )  # fmt: skip


def succeeded(task_id: str, ts: float, hostname: str = WORKER, runtime: float = 0.1) -> Raw:
    return _task_event(
        "succeeded", task_id, ts, hostname, clock=5, pid=2, result="None", runtime=runtime
    )


def heartbeat(ts: float, hostname: str = WORKER, freq: float = 2.0, kind: str = "heartbeat") -> Raw:
    return {
        "type": f"worker-{kind}",
        "hostname": hostname,
        "timestamp": ts,
        "freq": freq,
        "active": 0,
        "processed": 0,
        "sw_ident": "py-celery",
        "sw_ver": "5.7.0",
        "sw_sys": "Linux",
        "clock": 6,
        "utcoffset": 0,
        "pid": 1,
        "loadavg": [0.0, 0.0, 0.0],
    }


def online_then_offline(ts: float, *hostnames: str) -> list[Raw]:
    """Each worker comes online at ``ts``; then they go offline one by one, 3 s, 4 s, ... after."""
    online = [heartbeat(ts, hostname=h, kind="online") for h in hostnames]
    return online + [
        heartbeat(ts + 3 + n, hostname=h, kind="offline") for n, h in enumerate(hostnames)
    ]


def run(task_id: str, ts: float, name: str, *, outcome: str = "failed", **kw: Any) -> list[Raw]:
    """sent, received, started and the outcome, one second apart."""
    end = failed(
        task_id, ts + 3, **({"exception": kw.pop("exception")} if "exception" in kw else {})
    )
    if outcome == "succeeded":
        end = succeeded(task_id, ts + 3)
    return [
        sent(task_id, ts, name, **kw),
        received(task_id, ts + 1, name, **{k: v for k, v in kw.items() if k != "queue"}),
        started(task_id, ts + 2),
        end,
    ]

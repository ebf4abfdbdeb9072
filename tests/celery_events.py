"""Raw Celery event dicts, shaped as ``app.events.Receiver`` hands them over.

For synthetic unit tests; the acceptance tests use real recordings in tests/data/.
Each builder takes the fields Celery really sends on that event type and no more.
"""

from __future__ import annotations

from typing import Any

Raw = dict[str, Any]
WORKER = "celery@w1"


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
    return {
        "type": "task-sent",
        "uuid": task_id,
        "timestamp": ts,
        "hostname": hostname,
        "name": name,
        "args": args,
        "kwargs": kwargs,
        "queue": queue,
        "routing_key": queue,
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "retries": retries,
        "eta": None,
        "expires": None,
        "exchange": "",
        "clock": 1,
        "utcoffset": 0,
        "pid": 1,
    }


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
    return {
        "type": "task-received",
        "uuid": task_id,
        "timestamp": ts,
        "hostname": hostname,
        "name": name,
        "args": args,
        "kwargs": kwargs,
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "retries": retries,
        "eta": None,
        "expires": None,
        "clock": 2,
        "utcoffset": 0,
        "pid": 2,
    }


def started(task_id: str, ts: float, hostname: str = WORKER) -> Raw:
    return {
        "type": "task-started",
        "uuid": task_id,
        "timestamp": ts,
        "hostname": hostname,
        "pid": 3,
        "clock": 3,
        "utcoffset": 0,
    }


def failed(
    task_id: str, ts: float, exception: str = "ConnectionError('refused')", hostname: str = WORKER
) -> Raw:
    return {
        "type": "task-failed",
        "uuid": task_id,
        "timestamp": ts,
        "hostname": hostname,
        "exception": exception,
        "traceback": "Traceback (most recent call last): ...",
        "clock": 4,
        "utcoffset": 0,
        "pid": 2,
    }


def retried(
    task_id: str, ts: float, exception: str = "ConnectionError('refused')", hostname: str = WORKER
) -> Raw:
    return {
        "type": "task-retried",
        "uuid": task_id,
        "timestamp": ts,
        "hostname": hostname,
        "exception": exception,
        "traceback": "Traceback ...",
        "clock": 4,
        "utcoffset": 0,
    }


def succeeded(task_id: str, ts: float, hostname: str = WORKER, runtime: float = 0.1) -> Raw:
    return {
        "type": "task-succeeded",
        "uuid": task_id,
        "timestamp": ts,
        "hostname": hostname,
        "result": "None",
        "runtime": runtime,
        "clock": 5,
        "utcoffset": 0,
        "pid": 2,
    }


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

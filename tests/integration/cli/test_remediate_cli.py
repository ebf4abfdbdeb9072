"""``flowguard remediate`` against the real broker, on events published as a bridge does:
a refused retry (exit 1, recorded with its reason), the hour read before ``--since``, the
revoke selection, and Ctrl-C stopping a paced run (exit 3)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner, Result

from flowguard.cli import main as cli
from flowguard.control.kafka_admin import create_topics
from tests.processes import TEST_COMMAND_KEY, TopicReader, python_env, send_all
from topics.events import TaskFailed, TaskSent
from topics.registry import COMMANDS, EVENTS

NOW = time.time()


def remediate(*args: str) -> Result:
    return CliRunner().invoke(cli, ["remediate", *args])


def publish(bootstrap: str, prefix: str, *tasks: tuple[str, str, str, float, bool]) -> None:
    """``(task id, name, args, when it was sent, whether it failed 5 s later)``."""
    items: list[tuple[bytes, bytes, int | None]] = []
    for task_id, name, args, at, fails in tasks:
        events: list[TaskSent | TaskFailed] = [
            TaskSent(
                cluster="c",
                task_id=task_id,
                timestamp=at,
                name=name,
                args=args,
                kwargs="{}",
                queue="q",
                root_id=task_id,
            )
        ]
        if fails:
            events.append(TaskFailed(cluster="c", task_id=task_id, timestamp=at + 5,
                                     exception="ValueError('bad')"))  # fmt: skip
        for e in events:
            items.append((f"c/{task_id}".encode(), e.model_dump_json().encode(),
                          int(e.timestamp * 1000)))  # fmt: skip
    asyncio.run(send_all(bootstrap, EVENTS.name(prefix), items))


def test_refusals_the_hour_before_and_revokes(cli_env: str, kafka_bootstrap: str) -> None:
    asyncio.run(create_topics(kafka_bootstrap, cli_env, 30, specs=(COMMANDS,)))
    publish(
        kafka_bootstrap, cli_env,
        ("early", "x.job", "(1,)", NOW - 5400, False),  # sent 90 min ago ...
        ("cut", "x.job", "('aaaa...',", NOW - 600, True),  # args cut by Celery
        ("queued", "x.report", "(3,)", NOW - 300, False),  # never finished
    )  # fmt: skip
    publish(kafka_bootstrap, cli_env, ("early-fail", "x.job", "(2,)", NOW - 1800, True))
    # ... and the one it failed as: "early" failed 30 min ago, after --since 1h.
    asyncio.run(send_all(kafka_bootstrap, EVENTS.name(cli_env), [(
        b"c/early",
        TaskFailed(cluster="c", task_id="early", timestamp=NOW - 1800,
                   exception="ValueError('bad')").model_dump_json().encode(),
        int((NOW - 1800) * 1000),
    )]))  # fmt: skip

    shown = remediate("preview", "--task", "x.job", "--since", "1h", "--json")
    assert shown.exit_code == 0, shown.output
    sample = {s["task_id"]: s for s in json.loads(shown.stdout)["sample"]}
    assert set(sample) == {"early", "early-fail", "cut"}
    assert sample["early"]["args"] == "(1,)"  # from its task-sent, before --since

    refused = remediate("run", "--task", "x.job", "--since", "1h", "--name", "r1", "--yes",
                        "--rate", "100")  # fmt: skip
    assert refused.exit_code == 1, refused.output
    summary = json.loads(refused.stdout.splitlines()[-1])
    assert (summary["sent"], summary["refused"]) == (2, 1)
    assert "refused cut: " in refused.stderr
    log = TopicReader(kafka_bootstrap, f"{cli_env}.execution-log")
    records = log.wait_for(lambda v: len(v) >= 3 and v, timeout=30, what="3 records")
    [failed] = [r for r in records if r["task"]["id"] == "cut"]
    assert failed["actions"][0]["status"] == "failed"
    assert "args" in failed["actions"][0]["detail"]

    errors = remediate("preview", "--action", "revoke", "--error", "x", "--since", "1h")
    assert errors.exit_code == 2
    assert "error: only a retry filters by error" in errors.output
    revokes = remediate("preview", "--action", "revoke", "--since", "1h", "--json")
    assert [s["task_id"] for s in json.loads(revokes.stdout)["sample"]] == ["queued"]

    nothing = remediate("undo", "--workflow", "no-such-workflow", "--keep-enabled", "--yes")
    assert nothing.exit_code == 0, nothing.output
    assert json.loads(nothing.stdout)["disabled"] is False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_a_paced_run_after_the_task_at_hand(
    cli_env: str, kafka_bootstrap: str, signum: signal.Signals
) -> None:
    asyncio.run(create_topics(kafka_bootstrap, cli_env, 30, specs=(COMMANDS,)))
    publish(kafka_bootstrap, cli_env,
            *[(f"t{n}", "x.job", f"({n},)", NOW - 600 + n, True) for n in range(5)])  # fmt: skip
    env = python_env(FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                     FLOWGUARD_TOPIC_PREFIX=cli_env,
                     FLOWGUARD_COMMAND_KEYS=f"*={TEST_COMMAND_KEY}")  # fmt: skip
    argv = [sys.executable, "-m", "flowguard", "remediate", "run", "--since", "1h",
            "--name", "slow", "--rate", "0.5", "--yes"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        log = TopicReader(kafka_bootstrap, f"{cli_env}.execution-log")
        log.wait_for(lambda v: len(v) >= 1, timeout=60, what="the first action's record")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err.decode()
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["aborted"] is True
    assert 1 <= summary["done"] < 5
    assert len(log.poll()) == summary["done"]

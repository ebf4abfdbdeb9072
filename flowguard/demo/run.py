"""The local demo: a Celery cluster with flaky tasks, its bridge, a flowguard worker, the API/UI.

``python -m flowguard.demo.run start`` (what ``make demo`` runs after starting Kafka and
Redis) starts each part as a background process with its log and pid file under
``.flowguard/demo/``, applies the product page's four templates, sends tasks that really
fail, and waits until the execution log shows what flowguard did. ``stop`` stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
from celery import Celery

from flowguard.api.settings import ApiSettings
from flowguard.control.store import WorkflowStore
from flowguard.control.workflow_files import iter_documents
from flowguard.control.workflow_templates import TEMPLATE_DIR
from flowguard.settings import get_settings

HOME = Path(os.environ.get("FLOWGUARD_HOME", Path.cwd() / ".flowguard")) / "demo"
CLUSTER = "demo"
#: Local only: the API listens on 127.0.0.1. Set FLOWGUARD_API_TOKENS for anything else.
DEMO_TOKENS = "demo:admin:demo-admin-token"
# The API reads the workflow history and the execution log before it listens.
API_READY_SECONDS = 60.0


def api_url(api: ApiSettings) -> str:
    """Where the demo's API answers (a wildcard listen address is reached on loopback)."""
    host = "127.0.0.1" if api.host in ("", "0.0.0.0", "::") else api.host
    return f"http://{host}:{api.port}"


def _command_key() -> str:
    """The key the demo's worker signs commands with and its bridge checks them by: made once,
    random, kept in ``.flowguard/demo/command.key`` (owner only), so restarts agree."""
    path = HOME / "command.key"
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"demo-1:{secrets.token_hex(32)}\n")
    return path.read_text().strip()


def _spawn(name: str, argv: list[str], **env: str) -> subprocess.Popen[bytes] | None:
    """Start ``name`` in the background; None when it already runs (its pid file is live)."""
    pidfile = HOME / f"{name}.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), 0)
            click.echo(f"{name} already runs (pid {pidfile.read_text().strip()})")
            return None
        except (ProcessLookupError, ValueError):
            pass
    log = (HOME / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **env},
    )  # fmt: skip
    pidfile.write_text(str(proc.pid))
    click.echo(f"started {name} (pid {proc.pid}, log {HOME / (name + '.log')})")
    return proc


def _wait_for(name: str, text: str, timeout: float = 90) -> None:
    log = HOME / f"{name}.log"
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise click.ClickException(f"{name} did not say {text!r} in {timeout:g} s: see {log}")
        time.sleep(0.2)


def wait_for_api(
    base_url: str,
    proc: subprocess.Popen[bytes] | None,
    *,
    log: Path,
    timeout_seconds: float = API_READY_SECONDS,
) -> None:
    """Until ``GET /api/health`` answers 200; a clear error at the deadline or if it exits."""
    deadline = time.monotonic() + timeout_seconds
    last = "no answer"
    while True:
        if proc is not None and proc.poll() is not None:
            raise click.ClickException(
                f"the API exited (status {proc.returncode}) before answering: see {log}"
            )
        try:
            answer = httpx.get(f"{base_url}/api/health", timeout=2.0, trust_env=False)
            if answer.status_code == 200:
                return
            last = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        if time.monotonic() >= deadline:
            raise click.ClickException(
                f"the API at {base_url} did not answer in {timeout_seconds:g} s ({last}): see {log}"
            )
        time.sleep(0.25)


async def _apply_templates(bootstrap: str, prefix: str) -> None:
    async with WorkflowStore(bootstrap, prefix) as store:
        for source, document in iter_documents(TEMPLATE_DIR):
            saved = await store.save(document, saved_by="demo", source=source)
            click.echo(f"workflow {'applied' if saved else 'unchanged'}: {document['name']}")


@click.group()
def main() -> None:
    """The local demo stack."""


@main.command()
@click.option("--broker", default="redis://127.0.0.1:6379/0", show_default=True)
def start(broker: str) -> None:
    settings = get_settings()
    HOME.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    common = {
        "FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "FLOWGUARD_TOPIC_PREFIX": settings.topic_prefix,
    }
    asyncio.run(_apply_templates(settings.kafka_bootstrap_servers, settings.topic_prefix))
    _spawn(
        "celery",
        [python, "-m", "celery", "-A", "flowguard.demo.celery_app", "worker", "-n",
         "demo@%h", "-Q", "celery,email,priority-high", "-c", "2", "-E", "-l", "INFO"],
        FLOWGUARD_DEMO_BROKER=broker,
    )  # fmt: skip
    key = _command_key()
    _spawn("bridge", [python, "-m", "bridge.cli"], FLOWGUARD_CLUSTER=CLUSTER,
           FLOWGUARD_BROKER=broker, FLOWGUARD_BRIDGE_COMMAND_KEY=key, **common)  # fmt: skip
    _spawn("worker", [python, "-m", "flowguard", "worker"],
           FLOWGUARD_COMMAND_KEYS=f"{CLUSTER}={key}", **common)  # fmt: skip
    api = _spawn(
        "api", [python, "-m", "flowguard", "api"], FLOWGUARD_API_TOKENS=DEMO_TOKENS, **common
    )
    _wait_for("celery", "ready.")
    _wait_for("bridge", "consuming Celery events")
    _wait_for("worker", "workflows loaded from")
    url = api_url(ApiSettings())
    wait_for_api(url, api, log=HOME / "api.log")
    app = Celery("demo-client", broker=broker)
    app.conf.task_send_sent_event = True
    stamp = int(time.time())
    for n in range(3):
        app.send_task(
            "demo.tasks.flaky_network", (1000 + n,), {"fail_times": 1, "key": f"demo-{stamp}-{n}"}
        )
    for n in range(3):
        app.send_task("payments.process_payment", (4200 + n, "4242"))
    click.echo(
        "\nsent 3 flaky network tasks (each fails once with ConnectionError) and 3 payments that "
        "fail.\nThe 'Auto-retry network errors' template retries after 60 s. Watch:\n"
        "  .venv/bin/flowguard history\n"
        f"  {url}/ui/  (web UI and API; token: demo-admin-token)\n"
        "Stop everything with: make stop"
    )


#: How long ``stop`` lets the demo's processes shut down (the worker takes about 10 s) before
#: it kills what is left; and how long it then waits for the kill to take.
STOP_SECONDS = 30.0
KILL_SECONDS = 5.0


def _group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone while we looked
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def _wait_gone(groups: dict[str, int], seconds: float) -> dict[str, int]:
    """Until no process of ``groups`` is left, or ``seconds`` passed; returns those left."""
    deadline = time.monotonic() + seconds
    left = dict(groups)
    while left:
        left = {name: pgid for name, pgid in left.items() if _group_members(pgid)}
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return left


def stop_all(home: Path, *, stop_seconds: float = STOP_SECONDS) -> None:
    """SIGTERM each demo process's group, and return only once all of them have exited:
    whatever is left after ``stop_seconds`` gets SIGKILL (and is waited for too)."""
    groups: dict[str, int] = {}
    for pidfile in sorted(home.glob("*.pid")):
        try:
            pgid = int(pidfile.read_text())
            os.killpg(pgid, signal.SIGTERM)
            groups[pidfile.stem] = pgid
        except (ProcessLookupError, ValueError):
            pass
        pidfile.unlink()
    left = _wait_gone(groups, stop_seconds)
    for name, pgid in left.items():
        click.echo(f"{name} did not stop within {stop_seconds:g} s: sent SIGKILL", err=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    still = _wait_gone(left, KILL_SECONDS)
    for name in groups:
        if name in still:
            click.echo(f"{name} (process group {groups[name]}) is still running", err=True)
        else:
            click.echo(f"stopped {name}")
    if still:
        raise click.ClickException(f"could not stop: {', '.join(sorted(still))}")


@main.command()
def stop() -> None:
    """Stop the demo's processes; returns when they have exited."""
    stop_all(HOME)


if __name__ == "__main__":
    main()

"""bridge/routing.py: the user's app, Celery's routing of a retry, the active-queue cache."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import QueueNotFound

from bridge.routing import ActiveQueues, Replies, load_app, route
from bridge.settings import BridgeSettings
from flowguard.errors import ConfigError
from topics.commands import RetryCommand
from topics.record import iso


def retry(**fields: Any) -> RetryCommand:
    values: dict[str, Any] = {
        "command_id": "c1", "cluster": "prod", "execution_id": "e1", "workflow_id": "w",
        "issued_at": iso(time.time()), "task_id": "t1-retry", "original_task_id": "t1",
        "name": "proj.charge", "args": "(1,)", "kwargs": "{}", "root_id": "t1",
        "parent_id": "t1", "attempt": 1,
    }  # fmt: skip
    values.update(fields)
    return RetryCommand(**values)


def routed_app(**conf: Any) -> Celery:
    app = Celery("proj", broker="redis://127.0.0.1:1/0")
    app.conf.update(task_routes={"proj.charge": {"queue": "payments"}}, **conf)
    return app


def test_a_command_without_queue_goes_where_the_apps_routes_say() -> None:
    target = route(routed_app(), retry(), (1,), {})
    assert target.queue == "payments"


def test_glob_routes_and_the_default_queue_setting_apply() -> None:
    app = Celery("proj")
    app.conf.task_routes = {"proj.*": {"queue": "proj-work"}}
    assert route(app, retry(), (1,), {}).queue == "proj-work"


def test_the_commands_own_queue_wins_over_the_routes() -> None:
    assert route(routed_app(), retry(queue="email"), (1,), {}).queue == "email"


def test_a_task_no_route_names_goes_to_the_default_queue() -> None:
    assert route(routed_app(), retry(name="proj.other"), (1,), {}).queue == "celery"
    assert route(Celery("bare"), retry(), (1,), {}).queue == "celery"
    app = routed_app(task_default_queue="default")
    assert route(app, retry(name="proj.other"), (1,), {}).queue == "default"


def test_a_router_function_sees_the_args() -> None:
    def by_amount(name: str, args: Any, kwargs: Any, options: Any, **_: Any) -> Any:
        return {"queue": "big" if args[0] > 100 else "small"}

    app = Celery("proj")
    app.conf.task_routes = (by_amount,)
    assert route(app, retry(), (500,), {}).queue == "big"
    assert route(app, retry(), (5,), {}).queue == "small"


def test_a_queue_the_app_does_not_declare_is_refused_when_it_creates_none() -> None:
    app = routed_app(task_create_missing_queues=False)
    with pytest.raises(QueueNotFound):
        route(app, retry(), (1,), {})


class Workers:
    """What ``inspect().active_queues()`` answers, and how often it was asked."""

    def __init__(self, replies: Replies) -> None:
        self.replies, self.asked = replies, 0
        self.limits: list[int | None] = []

    def __call__(self, limit: int | None) -> Replies:
        self.asked += 1
        self.limits.append(limit)
        return self.replies


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_active_queues_are_cached_and_refreshed_on_a_miss_at_most_once_a_second() -> None:
    workers = Workers({"w1@h": [{"name": "payments"}], "w2@h": [{"name": "email"}]})
    clock = Clock()
    queues = ActiveQueues(workers, ttl_seconds=10, timeout_seconds=1, clock=clock)
    found = queues.check("payments")
    assert (found.answered, found.consumed, found.queues) == (True, True, ("email", "payments"))
    assert queues.check("email").consumed
    assert workers.asked == 1  # cached
    assert not queues.check("celery").consumed
    assert workers.asked == 1  # a miss within a second of the last answer: not asked again
    clock.now += 1.5
    workers.replies = {"w1@h": [{"name": "payments"}, {"name": "celery"}]}
    assert queues.check("celery").consumed  # a miss asks again: a worker came up meanwhile
    assert workers.asked == 2
    clock.now += 5
    assert queues.check("payments").consumed
    assert workers.asked == 2
    clock.now += 10  # past the TTL: asked again even for a hit
    workers.replies = {"w1@h": [{"name": "celery"}]}
    assert not queues.check("payments").consumed
    assert workers.asked == 3
    # A miss waits for every reply; a refresh of a hit stops at the workers last heard.
    assert workers.limits == [None, None, 1]


def test_no_answer_at_all_is_told_apart_from_no_consumer() -> None:
    found = ActiveQueues(Workers(None), ttl_seconds=10, timeout_seconds=1).check("payments")
    assert (found.answered, found.consumed, found.queues) == (False, False, ())


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user's project in the current directory (as ``celery -A`` finds it)."""
    package = tmp_path / "proj_fg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "celery.py").write_text(textwrap.dedent("""
        from celery import Celery
        app = Celery("proj_fg", broker="redis://127.0.0.1:6399/3")
        app.conf.task_routes = {"proj.charge": {"queue": "payments"}}
    """))  # fmt: skip
    (package / "celeryconfig.py").write_text(
        "task_routes = {'proj.charge': {'queue': 'from-config'}}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    for name in [m for m in sys.modules if m == "proj_fg" or m.startswith("proj_fg.")]:
        del sys.modules[name]


@pytest.mark.parametrize("spec", ["proj_fg.celery:app", "proj_fg.celery", "proj_fg"])
def test_the_users_app_is_found_as_celery_finds_it(project: Path, spec: str) -> None:
    app = load_app(spec, None, "bridge")
    assert app.main == "proj_fg"
    assert route(app, retry(), (1,), {}).queue == "payments"
    assert app.conf.broker_url == "redis://127.0.0.1:6399/3"


def test_a_config_module_routes_like_the_app(project: Path) -> None:
    app = load_app(None, "proj_fg.celeryconfig", "bridge")
    assert route(app, retry(), (1,), {}).queue == "from-config"


@pytest.mark.parametrize(
    ("spec", "config", "expected"),
    [
        ("proj_missing.celery:app", None, "app: cannot load 'proj_missing.celery:app': "
         "ModuleNotFoundError"),
        ("proj_fg.celery:nothing", None, "app: cannot load 'proj_fg.celery:nothing': "
         "module 'proj_fg.celery' has no attribute 'nothing'"),
        ("proj_fg.celeryconfig:task_routes", None, "app: 'proj_fg.celeryconfig:task_routes' "
         "is a dict, not a Celery app"),
        (None, "proj_fg.nothing", "config: cannot load 'proj_fg.nothing'"),
    ],
)  # fmt: skip
def test_an_app_that_cannot_be_loaded_is_a_config_error_naming_the_field(
    project: Path, spec: str | None, config: str | None, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_app(spec, config, "bridge")
    assert str(caught.value).startswith(expected), caught.value


def test_the_broker_may_come_from_the_app() -> None:
    settings = BridgeSettings(cluster="prod", app="proj.celery:app")
    assert settings.broker is None
    with pytest.raises(ConfigError, match="broker: Field required"):
        _ = settings.broker_url  # the app names none: the bridge says so before starting

"""bridge/settings.py and the errors of ``flowguard-bridge`` when a setting is wrong."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from bridge.cli import main
from bridge.settings import BridgeSettings

SECRET = "s3cr3t-pw"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's or CI's FLOWGUARD_* variables must not leak into these settings."""
    for name in list(os.environ):
        if name.startswith("FLOWGUARD_"):
            monkeypatch.delenv(name)


def settings(**given: Any) -> BridgeSettings:
    values: dict[str, Any] = {"cluster": "prod", "broker": "redis://localhost:6379/0", **given}
    return BridgeSettings(**values)


def test_defaults() -> None:
    s = settings()
    assert (s.kafka_compression, s.buffer_size, s.batch_size, s.commands, s.dump) == (
        "none", 100_000, 2000, True, None
    )  # fmt: skip
    assert s.topic_prefix == "flowguard"


def test_environment_variables_set_the_same_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWGUARD_CLUSTER", "eu-1")
    monkeypatch.setenv("FLOWGUARD_BROKER", "amqp://guest:guest@rabbit:5672//")
    monkeypatch.setenv("FLOWGUARD_BUFFER_SIZE", "50")
    monkeypatch.setenv("FLOWGUARD_KAFKA_COMPRESSION", "gzip")
    s = BridgeSettings()
    assert (s.cluster, s.buffer_size, s.kafka_compression) == ("eu-1", 50, "gzip")


@pytest.mark.parametrize(
    ("given", "field", "reason"),
    [
        ({"cluster": ""}, "cluster", "at least 1 character"),
        ({"cluster": "prod cluster"}, "cluster", "should match pattern"),
        ({"broker": "localhost:6379"}, "broker", "expected a URL such as redis://"),
        ({"dedup_url": "localhost"}, "dedup_url", "expected a URL"),
        ({"buffer_size": 0}, "buffer_size", "greater than or equal to 1"),
        ({"kafka_compression": "brotli"}, "kafka_compression", "'none', 'gzip'"),
        ({"status_interval_seconds": 0}, "status_interval_seconds", "greater than 0"),
        ({"max_record_bytes": 100}, "max_record_bytes", "greater than or equal to 10000"),
    ],
)
def test_a_bad_value_names_the_field_and_the_reason(
    given: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as info:
        settings(**given)
    (error,) = info.value.errors()
    assert error["loc"] == (field,)
    assert reason in error["msg"]


@pytest.mark.parametrize(
    ("broker", "shown"),
    [
        (f"redis://:{SECRET}@cache:6379/0", "redis://:**@cache:6379/0"),
        (f"amqp://user:{SECRET}@rabbit:5672//", "amqp://user:**@rabbit:5672//"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
    ],
)
def test_the_broker_is_shown_masked_and_never_in_repr(broker: str, shown: str) -> None:
    s = settings(broker=broker, dedup_url=f"redis://:{SECRET}@dedup:6379/1")
    assert s.broker_display == shown
    assert SECRET not in repr(s)
    assert SECRET not in str(s.model_dump())


def test_a_bad_broker_url_is_not_echoed() -> None:
    with pytest.raises(ValidationError) as info:
        settings(broker=f"{SECRET}@nowhere")
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("broker", "dedup_url", "expected"),
    [
        ("redis://cache:6379/0", None, "redis://cache:6379/0"),
        ("rediss://:pw@cache:6380/2", None, "rediss://:pw@cache:6380/2"),
        ("amqp://rabbit//", None, None),
        ("amqp://rabbit//", "redis://dedup:6379/3", "redis://dedup:6379/3"),
        ("redis://cache:6379/0", "redis://dedup:6379/3", "redis://dedup:6379/3"),
    ],
)
def test_command_ids_live_in_the_dedup_url_else_a_redis_broker(
    broker: str, dedup_url: str | None, expected: str | None
) -> None:
    assert settings(broker=broker, dedup_url=dedup_url).dedup_redis_url() == expected


# --- flowguard-bridge: errors name the field, and the flag or variable that sets it ------------


def run_cli(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, args, env=env)
    return result.exit_code, result.stderr


def test_missing_settings_name_their_flag_and_variable() -> None:
    code, err = run_cli([])
    assert code == 2
    assert "error: cluster: Field required (--cluster or FLOWGUARD_CLUSTER)" in err
    assert "error: broker: Field required (--broker or FLOWGUARD_BROKER)" in err


def test_a_bad_flag_value_names_the_flag() -> None:
    code, err = run_cli(["--cluster", "prod", "--broker", "redis://x", "--buffer-size", "0"])
    assert code == 2
    assert err.startswith("error: buffer_size: Input should be greater than or equal to 1")
    assert "(--buffer-size or FLOWGUARD_BUFFER_SIZE)" in err


def test_a_setting_without_a_flag_names_only_its_variable() -> None:
    env = {"FLOWGUARD_STATUS_INTERVAL_SECONDS": "-1"}
    code, err = run_cli(["--cluster", "prod", "--broker", "redis://x"], env)
    assert code == 2
    assert "error: status_interval_seconds: Input should be greater than 0" in err
    assert err.rstrip().endswith("(FLOWGUARD_STATUS_INTERVAL_SECONDS)")


def test_a_bad_broker_flag_is_refused_without_echoing_it() -> None:
    code, err = run_cli(["--cluster", "prod", "--broker", f"{SECRET}@host"])
    assert code == 2
    assert "error: broker: Value error, expected a URL such as redis://" in err
    assert SECRET not in err


def test_commands_without_a_dedup_store_stop_the_bridge_with_exit_code_2() -> None:
    """Valid alone, not together: a non-Redis broker needs FLOWGUARD_DEDUP_URL for commands.
    One line and exit 2 like any bad setting, before the bridge waits for Kafka (none here)."""
    result = CliRunner().invoke(
        main,
        ["--cluster", "prod", "--broker", f"amqp://guest:{SECRET}@127.0.0.1:1//",
         "--kafka", "127.0.0.1:1"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: dedup_url: required when the broker is not Redis (FLOWGUARD_DEDUP_URL, a Redis "
        "URL where the bridge keeps the ids of commands it carried out)"
    ]
    assert SECRET not in result.output


def test_an_app_that_cannot_be_loaded_stops_the_bridge_with_exit_code_2() -> None:
    """No --broker needed with --app (the app's is used); an app that is not there is one line
    naming the field, before the bridge waits for Kafka (none here)."""
    code, err = run_cli(["--cluster", "prod", "--app", "proj_missing.celery:app",
                         "--kafka", "127.0.0.1:1"])  # fmt: skip
    assert code == 2
    assert err.splitlines() == [
        "error: app: cannot load 'proj_missing.celery:app': ModuleNotFoundError: "
        "No module named 'proj_missing'"
    ]


def test_a_type_is_not_an_app() -> None:
    code, err = run_cli(["--cluster", "prod", "--app", "celery:Celery", "--kafka", "127.0.0.1:1"])
    assert code == 2
    assert err.startswith("error: app: 'celery:Celery' is a type, not a Celery app")


def test_an_app_that_names_no_broker_needs_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fg_no_broker.py").write_text("from celery import Celery\napp = Celery('x')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "fg_no_broker", raising=False)
    code, err = run_cli(["--cluster", "prod", "--app", "fg_no_broker", "--kafka", "127.0.0.1:1"])
    assert code == 2
    assert err.splitlines() == [
        "error: broker: Field required (--broker or FLOWGUARD_BROKER), unless the Celery app "
        "(--app or --config) names its broker_url"
    ]

"""``flowguard doctor`` without a broker: bad settings, Kafka down, and the topic report."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from flowguard.cli import doctor
from flowguard.cli import main as cli
from flowguard.control.kafka_admin import ClusterInfo
from flowguard.settings import get_settings
from topics.registry import ALL_TOPICS


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings are read once per process; each test sets its own environment."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound but not listening: connections are refused, and nobody else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def run_doctor(monkeypatch: pytest.MonkeyPatch, **env: str) -> Result:
    for name, value in env.items():
        monkeypatch.setenv(f"FLOWGUARD_{name.upper()}", value)
    return CliRunner().invoke(cli, ["doctor"])


def test_kafka_down_is_one_failure_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, refused_port: int
) -> None:
    result = run_doctor(
        monkeypatch, kafka_bootstrap_servers=f"127.0.0.1:{refused_port}", kafka_timeout_seconds="5"
    )
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("ok   configuration: kafka 127.0.0.1:")
    assert lines[1:] == [
        f"FAIL kafka: Kafka at 127.0.0.1:{refused_port} did not answer: cannot connect"
    ]
    assert "Traceback" not in result.output


def test_invalid_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_doctor(monkeypatch, kafka_timeout_seconds="0")
    assert result.exit_code == 1
    assert result.output.startswith("FAIL configuration: FLOWGUARD_KAFKA_TIMEOUT_SECONDS: ")
    assert len(result.output.splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("topic_prefix", "team/flowguard", "FLOWGUARD_TOPIC_PREFIX: 'team/flowguard' may only"),
        ("kafka_bootstrap_servers", "kafka:9092,", "FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS: '' is not"),
        (
            "kafka_bootstrap_servers",
            "kafka:port",
            "FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS: 'kafka:port'",
        ),
    ],
)
def test_unusable_values_fail_before_any_network_call(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    result = run_doctor(monkeypatch, **{name: value})
    assert result.exit_code == 1
    assert result.output.startswith(f"FAIL configuration: {says}")


def fake_cluster(monkeypatch: pytest.MonkeyPatch, topics: list[str]) -> None:
    async def cluster_info(bootstrap: str, timeout_seconds: float) -> ClusterInfo:
        return ClusterInfo(broker_count=1, controller_id=1, cluster_id="c", topics=tuple(topics))

    async def recent_events(bootstrap: str, topic: str, timeout_seconds: float) -> dict[str, Any]:
        return {}  # a fake cluster holds no records

    monkeypatch.setattr(doctor, "cluster_info", cluster_info)
    monkeypatch.setattr(doctor, "_recent_events", recent_events)


def test_missing_topics_warn_and_exit_0(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cluster(monkeypatch, ["shop.events", "other.events"])
    result = run_doctor(monkeypatch, topic_prefix="shop")
    assert result.exit_code == 0, result.output
    last = result.output.splitlines()[2]
    assert last.startswith(f"warn topics: 1 of {len(ALL_TOPICS)} exist; missing: shop.commands, ")
    assert last.endswith("(run `flowguard topics create`)")


def test_all_topics_present_is_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cluster(monkeypatch, [spec.name("shop") for spec in ALL_TOPICS])
    result = run_doctor(monkeypatch, topic_prefix="shop")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[2].startswith(f"ok   topics: all {len(ALL_TOPICS)} exist")
    assert lines[3] == "ok   task-sent: no task events in shop.events in the last hour"

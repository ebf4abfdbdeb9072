"""``${NAME}`` reads only what the operator allows (issue 16, item 1).

An editor pointing a header at ``${FLOWGUARD_API_TOKENS}`` or ``${AWS_SECRET_ACCESS_KEY}``
and the URL at their own server must get nothing: refused by lint and replay (also with
``--send-samples``), and at run time a failed action with the reason and no request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowguard.cli import main
from flowguard.control.secrets import SecretPolicy
from flowguard.settings import get_settings
from tests.httpserver import RecordingServer
from tests.integration.actions.runner_helpers import deliver
from tests.unit.actions.notices import notice

STREAM = Path(__file__).resolve().parents[2] / "data" / "streams" / "basic.jsonl"
STOLEN = {
    "FLOWGUARD_API_TOKENS": "admin:admin:TOKEN-VALUE-0123456789",
    "AWS_SECRET_ACCESS_KEY": "AWS-VALUE-0123456789",
}


@pytest.mark.parametrize("name", sorted(STOLEN))
def test_a_disallowed_reference_fails_the_action_and_sends_nothing(
    http_server: RecordingServer, name: str
) -> None:
    action = {
        "type": "webhook",
        "url": http_server.url_for("/steal"),
        "headers": {"X-Steal": f"${{{name}}}"},
    }
    [done] = deliver([notice(action)], environ=STOLEN)
    assert done.result.status == "failed"
    assert f"headers.X-Steal: ${{{name}}} is not an allowed secret reference" in (
        done.result.detail or ""
    )
    assert "FLOWGUARD_SECRET_" in (done.result.detail or "")
    assert http_server.requests() == []
    assert STOLEN[name] not in done.result.model_dump_json()


def test_allowed_names_resolve(http_server: RecordingServer) -> None:
    action = {
        "type": "webhook",
        "url": http_server.url_for("/hook"),
        "headers": {"X-A": "${FLOWGUARD_SECRET_A}", "X-B": "${OPS_TOKEN}"},
    }
    environ = {"FLOWGUARD_SECRET_A": "value-a", "OPS_TOKEN": "value-b"}
    policy = SecretPolicy(names=frozenset({"OPS_TOKEN"}))
    [done] = deliver([notice(action)], environ=environ, policy=policy)
    assert done.result.status == "succeeded", done.result.detail
    [sent] = http_server.wait_for_requests(1, path="/hook", timeout_seconds=5)
    assert (sent.headers["x-a"], sent.headers["x-b"]) == ("value-a", "value-b")


#: flowguard's own secrets and credentials: never readable by a workflow.
OWN = (
    "FLOWGUARD_SECRET_NAMES",
    "FLOWGUARD_SECRET_PREFIX",
    "FLOWGUARD_SECRETS_KEY",
    "FLOWGUARD_SECRETS_OLD_KEYS",
    "FLOWGUARD_API_TOKENS",
    "FLOWGUARD_KAFKA_SASL_PASSWORD",
    "FLOWGUARD_COMMAND_KEYS",
    "FLOWGUARD_BRIDGE_COMMAND_KEY",
    "FLOWGUARD_BRIDGE_COMMAND_PREVIOUS_KEY",
)


@pytest.mark.parametrize("name", OWN)
def test_flowguards_own_secret_settings_are_never_readable(name: str) -> None:
    # Not by the default prefix, nor by an operator's list or a prefix too broad.
    listed = SecretPolicy(names=frozenset(OWN))
    broad = SecretPolicy(prefix="FLOWGUARD_")
    for policy in (SecretPolicy(), listed, broad):
        assert policy.problem(name) is not None, (policy, name)
    assert broad.problem("FLOWGUARD_SECRET_OPS_TOKEN") is None


def _stealing_file(tmp_path: Path, server: RecordingServer) -> Path:
    path = tmp_path / "steal.yaml"
    path.write_text(
        f"""\
name: steal
trigger:
  event: task.failed
action:
  type: webhook
  url: "{server.url_for("/steal")}"
  headers:
    Authorization: "${{FLOWGUARD_API_TOKENS}}"
"""
    )
    return path


def test_replay_with_samples_refuses_and_sends_nothing(
    tmp_path: Path, http_server: RecordingServer
) -> None:
    path = _stealing_file(tmp_path, http_server)
    result = CliRunner().invoke(
        main,
        ["replay", "--workflows", str(path), "--events", str(STREAM), "--send-samples"],
        env={**STOLEN, "FLOWGUARD_ACTIONS_ALLOW_HOSTS": "127.0.0.1"},
    )
    assert result.exit_code == 2, result.output
    assert "action.headers.Authorization: ${FLOWGUARD_API_TOKENS} is not an allowed" in (
        result.stderr
    )
    assert http_server.requests() == []


def test_lint_refuses_the_reference_naming_the_field(
    tmp_path: Path, http_server: RecordingServer
) -> None:
    result = CliRunner().invoke(main, ["lint", str(_stealing_file(tmp_path, http_server))])
    assert result.exit_code == 2
    assert "action.headers.Authorization: ${FLOWGUARD_API_TOKENS}" in result.stderr


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """Settings read again from the environment the command runs with (they are cached)."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("fresh_settings")
def test_lint_allows_a_listed_name(tmp_path: Path, http_server: RecordingServer) -> None:
    path = _stealing_file(tmp_path, http_server)
    path.write_text(path.read_text().replace("FLOWGUARD_API_TOKENS", "OPS_TOKEN"))
    result = CliRunner().invoke(
        main, ["lint", str(path)], env={"FLOWGUARD_SECRET_NAMES": "A,OPS_TOKEN"}
    )
    assert result.exit_code == 0, result.output


def test_lint_warns_about_literal_secrets_without_a_key(
    tmp_path: Path, http_server: RecordingServer
) -> None:
    path = tmp_path / "literal.yaml"
    path.write_text(
        "name: lit\ntrigger: {event: task.failed}\n"
        "action: {type: slack, webhook_url: 'https://hooks.slack.com/services/YOUR/WEBHOOK'}\n"
    )
    result = CliRunner().invoke(main, ["lint", str(path)])
    assert result.exit_code == 0
    assert "action.webhook_url: a literal secret is stored in clear on Kafka" in result.output
    assert "FLOWGUARD_SECRETS_KEY" in result.output

"""A request that cannot be sent is refused with a reason; ``deliver`` never raises for it.

Literal header values are refused when the workflow loads (tests/unit/actions/test_models.py);
an ``${ENV}`` value is only known when the action runs, so the runner checks it then.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from flowguard.actions import ActionRunner, webhook
from flowguard.actions import runner as runner_module
from flowguard.actions.outbound import Context, Outbound
from flowguard.engine.decision import Notice
from tests.httpserver import RecordingServer
from tests.integration.actions.runner_helpers import deliver, settings
from tests.unit.actions.notices import notice

SECRET = "sk-live-ENVHEADERSECRET-77"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (f"Bearer {SECRET}\r\nX-Injected: 1", "control characters"),
        (f"Bearer {SECRET}\n", "control characters"),
        (f"Bearer {SECRET}\x00", "control characters"),
        (f"Bearer {SECRET}-tök-123", "non-ASCII"),
    ],
)
def test_a_bad_env_header_value_is_refused_by_name_never_echoed(
    http_server: RecordingServer, caplog: pytest.LogCaptureFixture, value: str, reason: str
) -> None:
    caplog.set_level(logging.DEBUG)
    action = {
        "type": "webhook",
        "url": http_server.url_for("/hook"),
        "headers": {"Authorization": "${FLOWGUARD_SECRET_HOOK_TOKEN}"},
        "retries": 3,
    }
    [done] = deliver([notice(action)], environ={"FLOWGUARD_SECRET_HOOK_TOKEN": value})
    assert done.result.status == "failed"
    assert done.result.detail.startswith("headers.Authorization: "), done.result.detail
    assert reason in done.result.detail
    assert "ENVHEADERSECRET" not in done.result.detail
    assert "ENVHEADERSECRET" not in caplog.text
    assert "attempts" not in done.result.detail, "final: never retried"
    assert http_server.requests() == []


def test_deliver_returns_a_failed_result_for_any_unexpected_error(
    http_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The live app awaits deliver() in a background task: a raise would lose the outcome."""

    def broken(notice: Notice, ctx: Context) -> Outbound:
        raise UnicodeEncodeError("ascii", f"token {SECRET}", 0, 1, "a bug")

    sent = notice({"type": "webhook", "url": http_server.url_for("/hook")})

    async def scenario() -> tuple[Any, Any]:
        async with ActionRunner(settings()) as runner:
            with monkeypatch.context() as patch:
                patch.setattr(runner_module, "preparer", lambda kind: broken)
                first = await runner.deliver(sent)
            # The id was released, not used up: a redelivery may try again.
            return first, await runner.deliver(sent)

    first, again = asyncio.run(scenario())
    assert first.status == "failed"
    assert first.detail.startswith("could not deliver: UnicodeEncodeError"), first
    assert "ENVHEADERSECRET" not in first.detail + caplog.text
    assert sent.action_id in caplog.text, "the log names the action"
    assert again.status == "succeeded"


def test_deliver_before_start_is_a_failed_result() -> None:
    async def scenario() -> Any:
        return await ActionRunner(settings()).deliver(
            notice({"type": "webhook", "url": "https://hooks.example.com/x"})
        )

    result = asyncio.run(scenario())
    assert (result.status, result.detail) == ("failed", "the action runner was not started")


def test_a_request_httpx_refuses_is_final_and_never_quoted(
    http_server: RecordingServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The second line: should a bad value get past the check, h11's quoting error stays out."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(webhook, "header_value_problem", lambda value: None)
    action = {
        "type": "webhook",
        "url": http_server.url_for("/hook"),
        "headers": {"X-Token": "${FLOWGUARD_SECRET_HOOK_TOKEN}"},
        "retries": 3,
    }
    [done] = deliver(
        [notice(action)], environ={"FLOWGUARD_SECRET_HOOK_TOKEN": f"{SECRET}\r\nX-Injected: 1"}
    )
    assert (done.result.status, done.result.detail) == (
        "failed",
        "the request could not be sent: the HTTP library refused it as malformed",
    )
    assert "ENVHEADERSECRET" not in caplog.text
    assert http_server.requests() == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://user:pw-ENVHEADERSECRET@{host}/hook", "credentials in the URL are not allowed"),
        ("http://{host}/hook/ENVHEADERSECRET\n", "must be a URL without spaces or control"),
    ],
)
def test_an_env_url_is_held_to_the_load_time_rules(
    http_server: RecordingServer, value: str, reason: str
) -> None:
    """A literal URL is refused at load; the same rules hold for ${ENV} when the action runs."""
    url = value.format(host=f"127.0.0.1:{http_server.port}")
    [done] = deliver(
        [notice({"type": "webhook", "url": "${FLOWGUARD_SECRET_HOOK_URL}"})],
        environ={"FLOWGUARD_SECRET_HOOK_URL": url},
    )
    assert done.result.status == "failed"
    assert done.result.detail.startswith(f"url: {reason}"), done.result.detail
    assert "ENVHEADERSECRET" not in done.result.detail
    assert http_server.requests() == []

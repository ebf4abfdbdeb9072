"""Secrets never leave the process; actions cannot be pointed at internal services."""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest

from flowguard.actions import ActionSettings
from flowguard.engine.documents import parse_workflow
from tests.httpserver import RecordingServer, Reply
from tests.integration.actions.runner_helpers import deliver, settings
from tests.unit.actions.notices import (
    HEADER_SECRET,
    ROUTING_KEY,
    SIGNING_SECRET,
    SLACK_SECRET_URL_PATH,
    notice,
)

SECRET_PARTS = (
    "T0SECRET",
    "B0SECRET",
    "XXXXSECRETXXXX",
    "HEADERSECRET",
    "SIGNING-SECRET",
    "SECRETKEY",
)


def _echo_everything(server: RecordingServer) -> None:
    """Answer errors whose bodies quote the request: the worst case for an excerpt."""
    for path in ("/slack" + SLACK_SECRET_URL_PATH, "/hook", "/v2/enqueue"):
        server.script(path, Reply(400, echo=True))


def test_a_secret_never_appears_in_logs_records_or_exports(
    http_server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _echo_everything(http_server)
    environ = {"FLOWGUARD_SECRET_SLACK_URL": http_server.url_for("/slack" + SLACK_SECRET_URL_PATH)}
    actions = [
        {"type": "slack", "webhook_url": "${FLOWGUARD_SECRET_SLACK_URL}", "blocks": True},
        {
            "type": "webhook",
            "url": http_server.url_for("/hook?token=XXXXSECRETXXXXquery"),
            "headers": {"Authorization": HEADER_SECRET},
            "secret": SIGNING_SECRET,
            "retries": 1,
        },
        {"type": "pagerduty", "routing_key": ROUTING_KEY},
        {"type": "webhook", "url": "${FLOWGUARD_SECRET_MISSING_HOOK_URL}"},
    ]
    notices = [notice(a) for a in actions]
    config = settings(pagerduty_url=http_server.url_for("/v2/enqueue"))
    results = [t.result for t in deliver(notices, config=config, environ=environ)]
    assert [r.status for r in results] == ["failed"] * 4
    assert "environment variable FLOWGUARD_SECRET_MISSING_HOOK_URL is not set" in results[3].detail
    assert "POST ***abcd" in results[0].detail, "the echoed URL path is masked"
    workflow = parse_workflow(
        {"name": "all", "trigger": {"event": "task.failed"}, "actions": actions}, source="t"
    )
    leaks = {
        "logs": caplog.text,
        "results": " ".join(r.model_dump_json() for r in results),
        "records": " ".join(n.record.to_json() for n in notices),
        "export": str(workflow.to_document()),
        "repr": repr(workflow) + repr(notices),
    }
    for where, text in leaks.items():
        for part in SECRET_PARTS:
            assert part not in text, f"{part} leaked into {where}"
    # The secrets did reach the wire, where they belong.
    sent = http_server.requests()
    assert sent[0].path == "/slack" + SLACK_SECRET_URL_PATH
    assert sent[1].headers["authorization"] == HEADER_SECRET
    assert any(r.path == "/v2/enqueue" and ROUTING_KEY in r.body.decode() for r in sent)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/hook", "refused http://127.0.0.1: only https is allowed"),
        ("https://127.0.0.1:{port}/hook", "refused 127.0.0.1: loopback address"),
        ("https://localhost:{port}/hook", "refused localhost (resolves to 127.0.0.1): loopback"),
        ("https://169.254.169.254/latest/meta-data", "refused 169.254.169.254: cloud metadata"),
        ("https://10.1.2.3/hook", "refused 10.1.2.3: private address"),
        ("https://[::1]:{port}/hook", "refused ::1: loopback address"),
        ("https://[::ffff:127.0.0.1]:{port}/hook", "refused ::ffff:127.0.0.1: loopback address"),
    ],
)
def test_internal_addresses_are_refused_without_the_allowlist(
    http_server: RecordingServer, url: str, reason: str
) -> None:
    sent = notice({"type": "webhook", "url": url.format(port=http_server.port)})
    [done] = deliver([sent], config=ActionSettings(max_total_seconds=5))
    assert done.result.status == "failed"
    assert done.result.detail.startswith(reason), done.result.detail
    assert "FLOWGUARD_ACTIONS_ALLOW_HOSTS" in done.result.detail
    assert done.seconds < 1, "a refusal is final: never retried"
    assert http_server.requests() == []


def test_a_host_pattern_opens_a_name(http_server: RecordingServer) -> None:
    sent = notice({"type": "webhook", "url": f"http://localhost:{http_server.port}/hook"})
    [done] = deliver([sent], config=ActionSettings(allow_hosts="localhost"))
    assert done.result.status == "succeeded"


def test_a_name_resolving_to_metadata_stays_refused_under_a_pattern() -> None:
    """``*.nip.io``-style tricks: a host pattern never opens a metadata address."""
    sent = notice({"type": "webhook", "url": "http://169.254.169.254/latest"})
    [done] = deliver([sent], config=ActionSettings(allow_hosts="169.254.*"))
    assert done.result.detail.startswith("refused 169.254.169.254: cloud metadata")


def test_an_echo_with_escaped_slashes_or_percent_encoding_is_masked(
    http_server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Endpoints quote the URL back JSON-escaped (``https:\\/\\/...``) or percent-encoded."""
    caplog.set_level(logging.DEBUG)
    path = "/slack" + SLACK_SECRET_URL_PATH
    url = http_server.url_for(path)
    escaped = url.replace("/", "\\/")
    body = f'{{"error":"no_service","url":"{escaped}","path":"{quote(path, safe="")}"}}'
    http_server.script(path, Reply(404, body=body))
    [done] = deliver([notice({"type": "slack", "webhook_url": url})])
    assert done.result.status == "failed"
    assert "no_service" in done.result.detail
    for part in SECRET_PARTS:
        assert part not in done.result.detail, done.result.detail
        assert part not in caplog.text

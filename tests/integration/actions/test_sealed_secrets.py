"""Sealed workflow secrets are opened only where a request is prepared (issue 16, item 1).

A webhook whose URL, header and signing secret were sealed by the store reaches the right
URL with the right header; a value sealed with a key the runner does not hold fails the
action with a reason naming the key id, and nothing is sent.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet

from flowguard.control.secrets import Keyring
from tests.httpserver import RecordingServer
from tests.integration.actions.runner_helpers import deliver
from tests.unit.actions.notices import notice

HEADER = "Bearer SEALED-HEADER-0123456789"
SIGNING = "SEALED-SIGNING-0123456789"


def key(key_id: str) -> str:
    return f"{key_id}:{Fernet.generate_key().decode()}"


def _sealed_webhook(server: RecordingServer, sealer: Keyring) -> dict[str, str | dict[str, str]]:
    return {
        "type": "webhook",
        "url": sealer.seal(server.url_for("/sealed/hook?token=QUERYSECRET99")),
        "headers": {"Authorization": sealer.seal(HEADER)},
        "secret": sealer.seal(SIGNING),
    }


def test_a_sealed_webhook_reaches_its_url_with_its_header(http_server: RecordingServer) -> None:
    old, new = key("old"), key("new")
    action = _sealed_webhook(http_server, Keyring.of(old))
    # After a rotation: the current key is new, the value opens with the old one by its id.
    [done] = deliver([notice(action)], keyring=Keyring.of(new, [old]))
    assert done.result.status == "succeeded", done.result.detail
    [sent] = http_server.wait_for_requests(1, path="/sealed/hook", timeout_seconds=5)
    assert sent.headers["authorization"] == HEADER
    timestamp = sent.headers["flowguard-timestamp"]
    mac = hmac.new(SIGNING.encode(), f"{timestamp}.".encode() + sent.body, hashlib.sha256)
    assert sent.headers["flowguard-signature"] == f"v1={mac.hexdigest()}"


def test_an_unknown_key_id_fails_the_action_naming_it(http_server: RecordingServer) -> None:
    action = _sealed_webhook(http_server, Keyring.of(key("2025-q4")))
    [done] = deliver([notice(action)], keyring=Keyring.of(key("2026-q1")))
    assert done.result.status == "failed"
    detail = done.result.detail or ""
    assert "url: sealed with key '2025-q4'" in detail
    assert "FLOWGUARD_SECRETS_OLD_KEYS" in detail
    assert "sealed:v1:" not in done.result.model_dump_json()
    assert http_server.requests() == []


def test_a_sealed_slack_url_without_any_key_fails_cleanly(http_server: RecordingServer) -> None:
    action = {"type": "slack", "webhook_url": Keyring.of(key("k1")).seal(http_server.url_for("/s"))}
    [done] = deliver([notice(action)], keyring=Keyring())
    assert done.result.status == "failed"
    assert "webhook_url: sealed with key 'k1'" in (done.result.detail or "")
    assert http_server.requests() == []

"""bridge/gate.py and topics/signing.py: a bridge carries out only commands flowguard signed.

Tampering with any field, an unknown key id, a wrong key, a missing signature and a stale
``issued_at`` are each refused; a key rotation accepts the previous key while it lasts.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.gate import CommandGate
from bridge.settings import BridgeSettings
from flowguard.live.settings import LiveSettings
from topics.commands import COMMAND_ADAPTER, RetryCommand, RevokeCommand
from topics.record import iso
from topics.signing import (
    CommandKey,
    canonical,
    key_for,
    parse_cluster_keys,
    sign,
    wire_object,
)

CURRENT = CommandKey.parse("k2:current-secret-0123456789")
PREVIOUS = CommandKey.parse("k1:previous-secret-0123456789")
OTHER = CommandKey.parse("k2:somebody-elses-secret-0123")


def retry(**fields: Any) -> RetryCommand:
    values: dict[str, Any] = {
        "command_id": "c1", "cluster": "prod", "execution_id": "e1", "workflow_id": "w1",
        "issued_at": iso(time.time()), "task_id": "t1-r", "original_task_id": "t1",
        "name": "billing.charge", "args": "(7,)", "kwargs": "{'retry': True}",
        "queue": "payments", "routing_key": "payments", "exchange": "tasks", "root_id": "t1",
        "parent_id": "t1", "attempt": 1, "not_before": iso(time.time() + 30),
    }  # fmt: skip
    values.update(fields)
    return RetryCommand(**values)


def wire(command: RetryCommand | RevokeCommand) -> dict[str, Any]:
    """The command as the bridge reads it off the topic."""
    return wire_object(command.model_dump_json().encode())


def gate(**options: Any) -> CommandGate:
    values: dict[str, Any] = {
        "keys": {CURRENT.key_id: CURRENT, PREVIOUS.key_id: PREVIOUS},
        "allow_unsigned": False, "allowed_tasks": (), "max_age_seconds": 3600,
    }  # fmt: skip
    values.update(options)
    return CommandGate(**values)


def check(g: CommandGate, payload: dict[str, Any]) -> str | None:
    command = COMMAND_ADAPTER.validate_python(payload)
    refusal = g.check(payload, command, time.time())
    return None if refusal is None else refusal.reason


def test_a_signed_command_passes_and_its_wire_form_round_trips() -> None:
    signed = sign(retry(), CURRENT)
    assert signed.signature is not None
    assert signed.signature.startswith("k2:")
    assert check(gate(), wire(signed)) is None
    # The revoke too; and the key id says which key: the previous one still verifies.
    revoke = RevokeCommand(command_id="c2", cluster="prod", issued_at=iso(time.time()) or "",
                           task_id="t9", terminate=True)  # fmt: skip
    assert check(gate(), wire(sign(revoke, PREVIOUS))) is None


SIGNED_FIELDS = sorted(set(RetryCommand.model_fields) - {"signature", "kind", "version"})


@pytest.mark.parametrize("field", SIGNED_FIELDS)
def test_tampering_with_any_field_is_refused(field: str) -> None:
    payload = wire(sign(retry(), CURRENT))
    value = payload[field]
    payload[field] = (value + 1) if isinstance(value, int) else f"{value}x"
    if field in ("issued_at", "not_before"):
        payload[field] = iso(time.time() - 1)
    reason = check(gate(), payload)
    assert reason is not None
    assert reason.startswith("refused: bad signature (key 'k2')")


def test_a_field_added_or_removed_is_refused() -> None:
    payload = wire(sign(retry(), CURRENT))
    del payload["exchange"]  # optional: the record still decodes
    assert check(gate(), payload) == (
        "refused: bad signature (key 'k2'): the command was altered or signed with another key"
    )
    revoke = wire(sign(RevokeCommand(command_id="c2", cluster="prod", task_id="t9",
                                     issued_at=iso(time.time()) or ""), CURRENT))  # fmt: skip
    revoke["terminate"] = True  # absent before (its default): now a terminate
    assert check(gate(), revoke) is not None


def test_unsigned_wrong_key_unknown_key_id_and_malformed_are_refused() -> None:
    assert check(gate(), wire(retry())) == "refused: unsigned"
    assert check(gate(keys={}), wire(retry())) == (
        "refused: unsigned (this bridge has no command key: FLOWGUARD_BRIDGE_COMMAND_KEY)"
    )
    assert check(gate(), wire(sign(retry(), OTHER))).startswith(  # type: ignore[union-attr]
        "refused: bad signature (key 'k2')"
    )
    unknown = CommandKey.parse("k9:current-secret-0123456789")
    assert check(gate(), wire(sign(retry(), unknown))) == (
        "refused: unknown key id 'k9' (this bridge knows: k1, k2)"
    )
    assert check(gate(), {**wire(retry()), "signature": "k2:nothex"}) == (
        "refused: signature malformed: expected '<key id>:<hex HMAC-SHA256>'"
    )


def test_rotation_the_previous_key_passes_until_it_is_dropped() -> None:
    old = wire(sign(retry(), PREVIOUS))
    assert check(gate(), old) is None
    after = gate(keys={CURRENT.key_id: CURRENT})
    assert check(after, old) == "refused: unknown key id 'k1' (this bridge knows: k2)"
    assert check(after, wire(sign(retry(), CURRENT))) is None


def test_unsigned_passes_only_when_allowed_and_a_signature_is_still_checked() -> None:
    allowing = gate(allow_unsigned=True)
    assert check(allowing, wire(retry())) is None
    assert check(allowing, wire(sign(retry(), OTHER))) is not None


def test_stale_is_refused_with_a_dead_letter_and_trusted() -> None:
    payload = wire(sign(retry(issued_at=iso(time.time() - 7200)), CURRENT))
    command = COMMAND_ADAPTER.validate_python(payload)
    refusal = gate().check(payload, command, time.time())
    assert refusal is not None
    assert refusal.reason.startswith("stale: issued 7200 s ago (limit 3600 s)")
    assert (refusal.trusted, refusal.dead_letter) == (True, True)
    forged = gate().check(wire(retry()), command, time.time())
    assert forged is not None
    assert (forged.trusted, forged.dead_letter) == (False, True)


def test_the_task_allowlist_takes_globs() -> None:
    allowing = gate(allowed_tasks=("billing.*", "demo.tasks.flaky_network"))
    assert check(allowing, wire(sign(retry(name="billing.charge"), CURRENT))) is None
    assert check(allowing, wire(sign(retry(name="demo.tasks.flaky_network"), CURRENT))) is None
    assert check(allowing, wire(sign(retry(name="os.system"), CURRENT))) == (
        "refused: task 'os.system' is not in this bridge's allowed tasks "
        "(FLOWGUARD_BRIDGE_ALLOWED_TASKS)"
    )
    revoke = RevokeCommand(command_id="c2", cluster="prod", issued_at=iso(time.time()) or "",
                           task_id="t9")  # fmt: skip
    assert check(allowing, wire(sign(revoke, CURRENT))) is None  # names no task


def test_the_canonical_encoding_is_sorted_compact_ascii_and_leaves_the_signature_out() -> None:
    payload = {"b": 1, "a": "é", "signature": "k:00", "c": None, "d": True}
    assert canonical(payload) == b'{"a":"\\u00e9","b":1,"c":null,"d":true}'


def test_a_member_named_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="member named twice: name"):
        wire_object(b'{"name": "billing.charge", "name": "os.system"}')


def test_worker_keys_parse_per_cluster_with_a_default() -> None:
    keys = parse_cluster_keys(
        "# keys\nprod=k2:current-secret-0123456789, *=k1:previous-secret-0123456789"
    )
    assert key_for(keys, "prod") == CURRENT
    assert key_for(keys, "staging") == PREVIOUS
    assert key_for(parse_cluster_keys(""), "prod") is None
    with pytest.raises(ValueError, match=r"entry 2 \(cluster 'b'\): secret: at least 16") as info:
        parse_cluster_keys("a=k:0123456789abcdef,b=k:short")
    assert "short" not in str(info.value)
    with pytest.raises(ValueError, match="entry 2: cluster 'a' given twice"):
        parse_cluster_keys("a=k:0123456789abcdef,a=k:0123456789abcdef")


def test_settings_name_the_variable_and_never_echo_a_secret(tmp_path: Any) -> None:
    with pytest.raises(ValidationError) as info:
        LiveSettings(command_keys="prod=k1:tiny")  # type: ignore[arg-type]
    assert "command_keys" in str(info.value)
    assert "tiny" not in str(info.value)
    keys_file = tmp_path / "keys"
    keys_file.write_text("staging=k3:another-secret-0123456789\n")
    settings = LiveSettings(
        command_keys="prod=k2:current-secret-0123456789",  # type: ignore[arg-type]
        command_keys_file=keys_file,
    )
    assert set(settings.command_signing_keys) == {"prod", "staging"}
    base = {"cluster": "prod", "broker": "redis://127.0.0.1:6379/0"}
    with pytest.raises(ValidationError) as info:
        BridgeSettings(**base, bridge_command_key="k1:tiny")  # type: ignore[arg-type]
    assert "bridge_command_key" in str(info.value)
    assert "tiny" not in str(info.value)
    with pytest.raises(ValidationError, match="must differ from the current key's"):
        BridgeSettings(**base, bridge_command_key="k1:current-secret-0123456789",
                       bridge_command_previous_key="k1:previous-secret-0123456789")  # type: ignore[arg-type]  # fmt: skip
    bridge = BridgeSettings(**base, bridge_command_key="k2:current-secret-0123456789",
                            bridge_command_previous_key="k1:previous-secret-0123456789",
                            bridge_allowed_tasks="billing.*, demo.*")  # type: ignore[arg-type]  # fmt: skip
    built = CommandGate.of(bridge, 60)
    assert set(built.keys) == {"k1", "k2"}
    assert built.allowed_tasks == ("billing.*", "demo.*")
    assert not built.allow_unsigned
    assert "current-secret" not in repr(built)
    assert "current-secret" not in json.dumps(bridge.model_dump(mode="json"))


def test_a_bridge_that_refuses_everything_or_allows_unsigned_says_so_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", "flowguard.bridge")
    gate(keys={}).announce("fg.commands")
    gate(allow_unsigned=True).announce("fg.commands")
    gate().announce("fg.commands")  # a key, unsigned refused: the safe default, nothing said
    assert [r.getMessage() for r in caplog.records] == [
        "no command key (FLOWGUARD_BRIDGE_COMMAND_KEY): every command on fg.commands is "
        "refused; set the key the flowguard worker signs with (FLOWGUARD_COMMAND_KEYS)",
        "FLOWGUARD_BRIDGE_ALLOW_UNSIGNED=true: unsigned commands are carried out; anyone who "
        "can write to fg.commands can run any task on this cluster",
    ]

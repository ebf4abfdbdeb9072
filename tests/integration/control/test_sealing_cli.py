"""``flowguard workflows reseal`` and the rotation story of docs/security.md, end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from flowguard.cli import main as cli
from flowguard.settings import get_settings
from tests.integration.control.topics import compacted

HOOK = "https://hooks.slack.com/services/T123/B456/R0TAT10NS3CR3T0123"
DOC = f"""\
name: Rotated
trigger:
  event: task.failed
action:
  type: slack
  webhook_url: "{HOOK}"
"""


def run(args: list[str], **env: str) -> Result:
    get_settings.cache_clear()  # settings are read once per process: read this env
    try:
        return CliRunner().invoke(cli, args, env=env)
    finally:
        get_settings.cache_clear()


def test_rotate_and_reseal(cli_env: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    old = f"k1:{Fernet.generate_key().decode()}"
    new = f"k2:{Fernet.generate_key().decode()}"
    path = tmp_path / "rotated.yaml"
    path.write_text(DOC)
    assert run(["workflows", "apply", str(path)], FLOWGUARD_SECRETS_KEY=old).exit_code == 0

    # The new key without the old one: the live version cannot be resealed, and it says why.
    lost = run(["workflows", "reseal"], FLOWGUARD_SECRETS_KEY=new)
    assert lost.exit_code == 1
    assert "workflow 'rotated': action.webhook_url: sealed with key 'k1'" in lost.stderr

    rotated = {"FLOWGUARD_SECRETS_KEY": new, "FLOWGUARD_SECRETS_OLD_KEYS": old}
    first = run(["workflows", "reseal"], **rotated)
    assert first.exit_code == 0, first.output
    assert "resealed rotated as v2" in first.output
    again = run(["workflows", "reseal"], **rotated)
    assert "0 resealed, 1 already sealed with the current key" in again.output

    # The old key dropped: the live workflow still opens, and the compacted topic holds k2 only.
    shown = run(["workflows", "export", "rotated", "--reveal-secrets"], FLOWGUARD_SECRETS_KEY=new)
    assert HOOK in shown.output
    masked = run(["workflows", "export", "rotated"], FLOWGUARD_SECRETS_KEY=new)
    assert HOOK not in masked.output
    assert "sealed:" not in masked.output
    *_, (_, value) = asyncio.run(compacted(kafka_bootstrap, cli_env))
    assert value is not None
    assert b"sealed:v1:k2:" in value
    assert HOOK.encode() not in value


def test_reseal_without_a_key_refuses(cli_env: str) -> None:
    result = run(["workflows", "reseal"])
    assert result.exit_code == 1
    assert "FLOWGUARD_SECRETS_KEY is not set" in result.stderr

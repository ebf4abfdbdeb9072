"""ActionSettings from the environment."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from flowguard.actions.settings import ActionSettings


def test_allow_hosts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWGUARD_ACTIONS_ALLOW_HOSTS", "127.0.0.1, 10.0.0.0/8,*.corp.example")
    monkeypatch.setenv("FLOWGUARD_ACTIONS_PER_HOST_CONCURRENCY", "3")
    settings = ActionSettings()
    assert settings.allow_hosts.networks == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
    )
    assert settings.allow_hosts.host_patterns == ("*.corp.example",)
    assert settings.per_host_concurrency == 3


def test_a_bad_setting_names_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWGUARD_ACTIONS_ALLOW_HOSTS", "http://nope")
    with pytest.raises(Exception, match="FLOWGUARD_ACTIONS_ALLOW_HOSTS: 'http://nope'"):
        ActionSettings()
    monkeypatch.delenv("FLOWGUARD_ACTIONS_ALLOW_HOSTS")
    monkeypatch.setenv("FLOWGUARD_ACTIONS_MAX_TOTAL_SECONDS", "0")
    with pytest.raises(ValidationError, match="max_total_seconds"):
        ActionSettings()

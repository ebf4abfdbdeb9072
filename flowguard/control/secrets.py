"""Secrets in workflow definitions: webhook URLs, headers, routing keys, signing secrets.

A secret is either a literal or an ``${NAME}`` reference resolved when the action runs.
Only :func:`reveal` shows a literal; everything that leaves the process (logs, records,
exports, the API) goes through :func:`mask`.

References are scoped (:class:`SecretPolicy`): an editor writes the workflow, and the
process's environment holds the API tokens and cloud keys, so ``${NAME}`` may read only
what the operator allows: names starting with ``FLOWGUARD_SECRET_`` (the prefix is a
setting) and the names listed in ``FLOWGUARD_SECRET_NAMES``. Anything else is refused
when a workflow is saved, applied, linted, tested or replayed, and again at run time.

Literals are sealed on Kafka when the operator sets a key (:class:`Keyring`): the store
publishes ``sealed:v1:<key id>:<wrapped data key>:<token>`` in place of the literal
(envelope encryption: a fresh Fernet data key per value, wrapped by the operator's key), and
only :func:`reveal` opens it, with the current key or an old one named by its id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from flowguard.errors import ConfigError

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
DEFAULT_SECRET_PREFIX = "FLOWGUARD_SECRET_"
# flowguard's own settings about secrets, and its own credentials (API tokens, the Kafka
# password, command keys): never readable, whatever the prefix or list says, so a prefix set
# too broad (FLOWGUARD_) cannot hand an editor the admin tokens.
OWN_SETTINGS = frozenset(
    {
        "FLOWGUARD_SECRET_NAMES",
        "FLOWGUARD_SECRET_PREFIX",
        "FLOWGUARD_SECRETS_KEY",
        "FLOWGUARD_SECRETS_OLD_KEYS",
        "FLOWGUARD_API_TOKENS",
        "FLOWGUARD_KAFKA_SASL_PASSWORD",
        "FLOWGUARD_COMMAND_KEYS",
        "FLOWGUARD_BRIDGE_COMMAND_KEY",
        "FLOWGUARD_BRIDGE_COMMAND_PREVIOUS_KEY",
    }
)


@dataclass(frozen=True, slots=True)
class SecretPolicy:
    """Which ``${NAME}`` references a workflow may use (see the module docstring)."""

    prefix: str = DEFAULT_SECRET_PREFIX
    names: frozenset[str] = field(default_factory=frozenset)

    def problem(self, name: str) -> str | None:
        """Why ``${name}`` may not be read, or ``None``. Names the rule, never a value."""
        allowed = name not in OWN_SETTINGS and (
            name in self.names or (bool(self.prefix) and name.startswith(self.prefix))
        )
        if allowed:
            return None
        own = "flowguard's own secret settings are never readable; " if name in OWN_SETTINGS else ""
        rule = f"names starting with {self.prefix}" if self.prefix else "no prefix"
        return (
            f"${{{name}}} is not an allowed secret reference: {own}a workflow may read only "
            f"{rule} or the names listed in FLOWGUARD_SECRET_NAMES"
        )


def env_ref_name(value: str) -> str | None:
    """``NAME`` for ``${NAME}``, else ``None``."""
    match = _ENV_REF.match(value)
    return match.group(1) if match else None


def is_env_ref(value: str) -> bool:
    """True for a value resolved only when the action runs: ``${NAME}``, or a sealed literal.

    Neither is checked as a URL or key when a workflow loads (the engine asks this), and
    neither is a literal in clear (lint's warning); :func:`reveal` checks what they resolve to.
    """
    return _ENV_REF.match(value) is not None or is_sealed(value)


def mask(secret: SecretStr | str | None) -> str | None:
    """``***`` plus at most the last four characters; an ``${ENV}`` reference is shown as is.

    A sealed value is a secret too, shown as ``***`` (its last characters are ciphertext).
    """
    if secret is None:
        return None
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if is_sealed(value):
        return "***"
    if is_env_ref(value):
        return value
    return "***" + value[-4:] if len(value) >= 16 else "***"


def reveal(
    secret: SecretStr,
    environ: Mapping[str, str] | None = None,
    policy: SecretPolicy | None = None,
    keyring: Keyring | None = None,
) -> str:
    """The value to use on the wire: a literal, a sealed literal opened, or the allowed
    variable it references. Raises :class:`ConfigError` (no value in it) otherwise."""
    value = secret.get_secret_value()
    if is_sealed(value):
        return (keyring or Keyring()).open(value)
    name = env_ref_name(value)
    if name is None:
        return value
    problem = (policy or SecretPolicy()).problem(name)
    if problem is not None:
        raise ConfigError(problem)
    env = os.environ if environ is None else environ
    if name not in env:
        raise ConfigError(f"environment variable {name} is not set (referenced by a workflow)")
    return env[name]


# -- sealing -----------------------------------------------------------------------------------

SEALED_PREFIX = "sealed:v1:"
_KEY_ID = r"[A-Za-z0-9_.-]{1,64}"
_TOKEN = r"[A-Za-z0-9_=-]+"
_SEALED = re.compile(rf"^sealed:v1:({_KEY_ID}):({_TOKEN}):({_TOKEN})$")
_KEY_ID_RE = re.compile(rf"^{_KEY_ID}$")


def is_sealed(value: str) -> bool:
    """True for ``sealed:v1:<key id>:<wrapped data key>:<token>`` (what the store publishes)."""
    return _SEALED.match(value) is not None


def sealed_key_id(value: str) -> str | None:
    """The id of the operator key a sealed value needs, else ``None``."""
    match = _SEALED.match(value)
    return match.group(1) if match else None


def parse_key(text: str) -> tuple[str, Fernet]:
    """``'<key id>:<Fernet key>'`` as (id, key). The ValueError names the rule, never the key."""
    key_id, sep, key = text.partition(":")
    if not sep or not _KEY_ID_RE.match(key_id):
        raise ValueError(
            "must be '<key id>:<Fernet key>', the id 1-64 letters, digits, '_', '.' or '-'"
        )
    try:
        return key_id, Fernet(key.encode())
    except (ValueError, TypeError):
        raise ValueError(
            f"key {key_id!r} is not a Fernet key (32 url-safe base64-encoded bytes: "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())')"
        ) from None


@dataclass(frozen=True, slots=True)
class Keyring:
    """The operator's sealing keys: the current one seals, any of them opens (by key id).

    Envelope encryption: each value gets its own Fernet data key; the operator key only wraps
    that data key, so a value is opened by unwrapping its data key with the key its id names.
    """

    current_id: str | None = None
    keys: Mapping[str, Fernet] = field(default_factory=dict)

    @classmethod
    def of(cls, current: str | None, old: Iterable[str] = ()) -> Keyring:
        """From the settings' ``'<key id>:<Fernet key>'`` texts (see :func:`parse_key`)."""
        keys: dict[str, Fernet] = {}
        for text in old:
            key_id, key = parse_key(text)
            keys[key_id] = key
        current_id = None
        if current is not None:
            current_id, key = parse_key(current)
            keys[current_id] = key
        return cls(current_id, keys)

    @property
    def sealing(self) -> bool:
        """Is there a current key, so literals are sealed?"""
        return self.current_id is not None

    def seal(self, value: str) -> str:
        """``value`` sealed with the current key (a fresh data key each time)."""
        if self.current_id is None:
            raise ConfigError("FLOWGUARD_SECRETS_KEY is not set: nothing to seal with")
        data_key = Fernet.generate_key()
        wrapped = self.keys[self.current_id].encrypt(data_key).decode()
        token = Fernet(data_key).encrypt(value.encode()).decode()
        return f"{SEALED_PREFIX}{self.current_id}:{wrapped}:{token}"

    def open(self, value: str) -> str:
        """A sealed value's clear text; :class:`ConfigError` naming the key id if it won't open."""
        match = _SEALED.match(value)
        if match is None:
            raise ConfigError("not a sealed value (sealed:v1:<key id>:...)")
        key_id, wrapped, token = match.groups()
        key = self.keys.get(key_id)
        if key is None:
            raise ConfigError(
                f"sealed with key {key_id!r}, which is neither FLOWGUARD_SECRETS_KEY nor in "
                "FLOWGUARD_SECRETS_OLD_KEYS"
            )
        try:
            return Fernet(key.decrypt(wrapped.encode())).decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            raise ConfigError(
                f"sealed value does not open with key {key_id!r}: another key under that id, "
                "or the value was altered"
            ) from None

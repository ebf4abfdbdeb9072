"""Secrets in workflow definitions: webhook URLs, headers, routing keys, signing secrets.

A secret is either a literal or an ``${NAME}`` reference resolved when the action runs.
Only :func:`reveal` shows a literal; everything that leaves the process (logs, records,
exports, the API) goes through :func:`mask`.

References are scoped (:class:`SecretPolicy`): an editor writes the workflow, and the
process's environment holds the API tokens and cloud keys, so ``${NAME}`` may read only
what the operator allows: names starting with ``FLOWGUARD_SECRET_`` (the prefix is a
setting) and the names listed in ``FLOWGUARD_SECRET_NAMES``. Anything else is refused
when a workflow is saved, applied, linted, tested or replayed, and again at run time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import SecretStr

from flowguard.errors import ConfigError

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
DEFAULT_SECRET_PREFIX = "FLOWGUARD_SECRET_"
# flowguard's own settings about secrets: never readable, whatever the prefix or list says.
OWN_SETTINGS = frozenset(
    {
        "FLOWGUARD_SECRET_NAMES",
        "FLOWGUARD_SECRET_PREFIX",
        "FLOWGUARD_SECRETS_KEY",
        "FLOWGUARD_SECRETS_OLD_KEYS",
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
        rule = f"names starting with {self.prefix}" if self.prefix else "no prefix"
        return (
            f"${{{name}}} is not an allowed secret reference: a workflow may read only "
            f"{rule} or the names listed in FLOWGUARD_SECRET_NAMES"
        )


def env_ref_name(value: str) -> str | None:
    """``NAME`` for ``${NAME}``, else ``None``."""
    match = _ENV_REF.match(value)
    return match.group(1) if match else None


def is_env_ref(value: str) -> bool:
    """True for ``${NAME}``: a reference is not itself secret."""
    return _ENV_REF.match(value) is not None


def mask(secret: SecretStr | str | None) -> str | None:
    """``***`` plus at most the last four characters; an ``${ENV}`` reference is shown as is."""
    if secret is None:
        return None
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if is_env_ref(value):
        return value
    return "***" + value[-4:] if len(value) >= 16 else "***"


def reveal(
    secret: SecretStr,
    environ: Mapping[str, str] | None = None,
    policy: SecretPolicy | None = None,
) -> str:
    """The value to use on the wire: a literal, or the allowed variable it references."""
    value = secret.get_secret_value()
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

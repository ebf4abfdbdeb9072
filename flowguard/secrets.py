"""Secrets in workflow definitions: webhook URLs, headers, routing keys, signing secrets.

A secret is either a literal or an ``${ENV_VAR}`` reference resolved when the
action runs. Only :func:`reveal` shows a literal; everything that leaves the
process (logs, records, exports, the API) goes through :func:`mask`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from pydantic import SecretStr

from flowguard.errors import ConfigError

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


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


def reveal(secret: SecretStr, environ: Mapping[str, str] | None = None) -> str:
    """The value to use on the wire: a literal, or the environment variable it references."""
    value = secret.get_secret_value()
    match = _ENV_REF.match(value)
    if match is None:
        return value
    env = os.environ if environ is None else environ
    name = match.group(1)
    if name not in env:
        raise ConfigError(f"environment variable {name} is not set (referenced by a workflow)")
    return env[name]

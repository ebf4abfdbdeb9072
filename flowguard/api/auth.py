"""API tokens with roles, checked on every request.

The browser UI sends the token in the ``Authorization`` header from script: no
cookie ever carries it, so a cross-site request cannot ride on a user's
session (no CSRF), and a request without the header gets nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Coroutine
from enum import IntEnum
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from flowguard.errors import AuthError, ConfigError


class Role(IntEnum):
    """Each role can do what the ones below it can."""

    viewer = 1
    editor = 2
    admin = 3


class Principal(BaseModel):
    """Who made a request: the token's name (recorded as ``saved_by``) and its role."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: Role


class _TokenEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[^\s:,]+$")
    role: Literal["viewer", "editor", "admin"]
    token: SecretStr = Field(min_length=16)


def _role(text: str, where: str) -> Role:
    try:
        return Role[text.strip()]
    except KeyError:
        raise ConfigError(
            f"FLOWGUARD_API_TOKENS: {where}: unknown role {text.strip()!r} "
            "(viewer, editor or admin)"
        ) from None


def _from_text(text: str) -> list[dict[str, Any]]:
    entries = []
    for number, item in enumerate((i.strip() for i in text.split(",")), start=1):
        if not item:
            continue
        parts = item.split(":")
        where = f"entry {number}"
        if len(parts) == 2:
            token, role = parts
            # A name that identifies the token in saved_by without revealing it.
            name = f"{role.strip()}-{hashlib.sha256(token.encode()).hexdigest()[:8]}"
        elif len(parts) == 3:
            name, role, token = parts
        else:
            raise ConfigError(
                f"FLOWGUARD_API_TOKENS: {where}: expected 'name:role:token' or 'token:role'"
            )
        entries.append(
            {"name": name.strip(), "role": _role(role, where).name, "token": token.strip()}
        )
    return entries


def parse_tokens(value: SecretStr) -> dict[str, Principal]:
    """Token -> principal; a ``ConfigError`` names the entry and the reason (never a token)."""
    text = value.get_secret_value().strip()
    if text.startswith("["):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"FLOWGUARD_API_TOKENS: not valid JSON: {exc.msg}") from None
        if not isinstance(raw, list):
            raise ConfigError("FLOWGUARD_API_TOKENS: JSON must be a list of objects")
        entries = raw
    else:
        entries = _from_text(text)
    principals: dict[str, Principal] = {}
    for number, entry in enumerate(entries, start=1):
        try:
            parsed = _TokenEntry.model_validate(entry)
        except ValidationError as exc:
            error = exc.errors(include_input=False)[0]
            field = ".".join(str(p) for p in error["loc"]) or "(entry)"
            raise ConfigError(
                f"FLOWGUARD_API_TOKENS: entry {number}: {field}: {error['msg']}"
            ) from None
        principals[parsed.token.get_secret_value()] = Principal(
            name=parsed.name, role=Role[parsed.role]
        )
    names = [p.name for p in principals.values()]
    if len(set(names)) != len(names):
        raise ConfigError("FLOWGUARD_API_TOKENS: two tokens share a name")
    return principals


class TokenAuth:
    """Looks a bearer token up in constant time per known token."""

    def __init__(self, principals: dict[str, Principal]) -> None:
        self._principals = principals

    @property
    def known(self) -> int:
        """How many tokens there are (none: nobody can sign in)."""
        return len(self._principals)

    def authenticate(self, header: str | None) -> Principal:
        if not header or not header.startswith("Bearer "):
            raise AuthError(401, "missing token: send 'Authorization: Bearer <token>'")
        given = header.removeprefix("Bearer ").strip().encode()
        found = None
        for token, principal in self._principals.items():
            if hmac.compare_digest(token.encode(), given):
                found = principal
        if found is None:
            raise AuthError(401, "unknown token")
        return found


def require(role: Role) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """A FastAPI dependency: the caller, who must hold at least ``role``."""

    async def dependency(request: Request) -> Principal:
        auth: TokenAuth = request.app.state.auth
        principal = auth.authenticate(request.headers.get("authorization"))
        if principal.role < role:
            raise AuthError(403, f"this needs the {role.name} role; you are {principal.role.name}")
        return principal

    return dependency

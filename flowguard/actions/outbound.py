"""What an action module hands the runner: one prepared HTTP request and its secrets.

Action modules are pure: they turn a :class:`~flowguard.engine.execute.Notice`
into an :class:`Outbound` (method, URL, headers, body) and never send
anything. The runner owns the network, the retries and the bookkeeping.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from flowguard.actions.settings import ActionSettings
from flowguard.errors import ActionFailed, ConfigError
from flowguard.secrets import mask, reveal

SAMPLE_BANNER = "[flowguard test] This is a sample notification: no task failed."


@dataclass(frozen=True, slots=True)
class Context:
    """What preparing a request may read besides the notice: settings, the mode, the time."""

    settings: ActionSettings
    sample: bool
    now: float
    environ: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Outbound:
    """One request, ready to send; ``secrets`` are the revealed values to keep out of records."""

    method: str
    url: httpx.URL
    body: bytes
    headers: Mapping[str, str]
    timeout_seconds: float
    retries: int
    secrets: tuple[str, ...] = ()
    # Per-attempt headers (a fresh signature timestamp each try): wall-clock seconds -> headers.
    sign: Callable[[bytes, int], Mapping[str, str]] | None = field(default=None)

    @property
    def host(self) -> str:
        """``host:port``: the key of the per-host limits, and what logs may name."""
        return f"{self.url.host}:{self.url.port or (443 if self.url.scheme == 'https' else 80)}"


def reveal_secret(secret: SecretStr, field_name: str, ctx: Context) -> str:
    """Reveal a workflow secret; a missing ``${ENV}`` fails the action naming the field."""
    try:
        return reveal(secret, ctx.environ)
    except ConfigError as exc:
        raise ActionFailed(f"{field_name}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def parse_url(value: str, field_name: str) -> httpx.URL:
    """The revealed URL as httpx sees it; the value itself never enters the error.

    Cached: a workflow sends to the same few URLs over and over, and parsing is
    a fair share of a delivery's own CPU (``httpx.URL`` is immutable).
    """
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        raise ActionFailed(f"{field_name}: not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ActionFailed(f"{field_name}: must be an http:// or https:// URL with a host")
    return url


def url_secrets(raw_url: str) -> tuple[str, ...]:
    """A secret URL's values to scrub: the whole URL, and its path and query (the token part)."""
    url = parse_url(raw_url, "url")
    parts = [raw_url, url.raw_path.decode("ascii", "replace")]
    return tuple(p for p in parts if len(p) >= 8)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace each secret by its mask (longest first, so no secret survives in part)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, mask(secret) or "***")
    return text


_SPACE = re.compile(r"\s+")


def excerpt(body: bytes, limit: int, secrets: tuple[str, ...]) -> str:
    """A short, single-line, secret-free excerpt of a response body (any bytes at all)."""
    text = _SPACE.sub(" ", body.decode("utf-8", errors="replace")).strip()
    text = scrub(text, secrets)
    return cut(text, limit)


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"

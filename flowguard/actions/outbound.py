"""What an action module hands the runner: one prepared HTTP request and its secrets.

Action modules are pure: they turn a :class:`~flowguard.engine.decision.Notice`
into an :class:`Outbound` (method, URL, headers, body) and never send
anything. The runner owns the network, the retries and the bookkeeping.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

import httpx
from pydantic import SecretStr

from flowguard.actions.settings import ActionSettings
from flowguard.control.secrets import Keyring, SecretPolicy, mask, reveal
from flowguard.engine.workflow import url_problem
from flowguard.errors import ActionFailed, ConfigError

SAMPLE_BANNER = "[flowguard test] This is a sample notification: no task failed."


@dataclass(frozen=True, slots=True)
class Context:
    """What preparing a request may read besides the notice: settings, the mode, the time."""

    settings: ActionSettings
    sample: bool
    now: float
    environ: Mapping[str, str] | None = None
    policy: SecretPolicy = field(default_factory=SecretPolicy)
    keyring: Keyring = field(default_factory=Keyring)


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
        """``host:port``: the key of the per-host cap, and what logs and errors may name."""
        return f"{self.url.host}:{self.url.port or (443 if self.url.scheme == 'https' else 80)}"

    @property
    def endpoint(self) -> tuple[str, str, bytes]:
        """Scheme, ``host:port`` and path (no query): the key of a lane. Never shown: secret."""
        return (self.url.scheme, self.host, self.url.raw_path.partition(b"?")[0])


def reveal_secret(secret: SecretStr, field_name: str, ctx: Context) -> str:
    """Reveal a workflow secret; a missing or disallowed ``${ENV}``, or a sealed value no key
    opens, fails the action naming the field (and the key id), before any request is made."""
    try:
        return reveal(secret, ctx.environ, ctx.policy, ctx.keyring)
    except ConfigError as exc:
        raise ActionFailed(f"{field_name}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def parse_url(value: str, field_name: str) -> httpx.URL:
    """The revealed URL as httpx sees it; the value itself never enters the error.

    The rules are the load-time ones (a literal was checked then; an ``${ENV}``
    value is only known now): no credentials, spaces or control characters.
    Cached: a workflow sends to the same few URLs over and over, and parsing is
    a fair share of a delivery's own CPU (``httpx.URL`` is immutable).
    """
    problem = url_problem(value)
    if problem is not None:
        raise ActionFailed(f"{field_name}: {problem}")
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        raise ActionFailed(f"{field_name}: not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ActionFailed(f"{field_name}: must be an http:// or https:// URL with a host")
    return url


# Parts of a secret URL scrubbed on their own: query values from this length, path
# segments from this one (tokens are long; "services", "hooks" are not secrets).
_QUERY_VALUE_MIN_CHARS = 8
_SEGMENT_MIN_CHARS = 16


def url_secrets(raw_url: str) -> tuple[str, ...]:
    """A secret URL's values to scrub: the whole URL, its path and query, and their tokens."""
    url = parse_url(raw_url, "url")
    parts = [raw_url, url.raw_path.decode("ascii", "replace"), url.path, url.query.decode()]
    parts += [v for _, v in url.params.multi_items() if len(v) >= _QUERY_VALUE_MIN_CHARS]
    parts += [seg for seg in url.path.split("/") if len(seg) >= _SEGMENT_MIN_CHARS]
    return tuple(dict.fromkeys(p for p in parts if len(p) >= 8))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace each secret by its mask, as written or as an echo would encode it.

    An endpoint that quotes the request back may escape it: JSON's ``\\/`` and
    ``\\uXXXX``, percent-encoding (either case of hex digits), ``+`` for spaces,
    HTML entities. Every form is masked; longer forms first, so none survives in part.
    """
    found = _pattern(tuple(s for s in secrets if s))
    if found is None:
        return text
    pattern, masks = found
    return pattern.sub(lambda m: masks[(m.lastindex or 1) - 1], text)


@functools.lru_cache(maxsize=1024)
def _pattern(secrets: tuple[str, ...]) -> tuple[re.Pattern[str], tuple[str, ...]] | None:
    """One regex for every form of every secret, with each group's mask (cached per secret set)."""
    forms: dict[str, str] = {}
    for secret in secrets:
        for form in _forms(secret):
            forms.setdefault(form, mask(secret) or "***")
    if not forms:
        return None
    ordered = sorted(forms, key=len, reverse=True)
    regex = "|".join(f"({_literal(form)})" for form in ordered)
    return re.compile(regex), tuple(forms[form] for form in ordered)


def _forms(secret: str) -> set[str]:
    escaped = json.dumps(secret)[1:-1]
    forms = {secret, escaped, secret.replace("/", "\\/"), escaped.replace("/", "\\/")}
    for safe in ("", "/", ":/?#[]@!$&'()*+,;="):
        forms.add(quote(secret, safe=safe))
    forms |= {quote_plus(secret), html.escape(secret), html.escape(secret, quote=False)}
    return forms


_PERCENT = re.compile(r"%([0-9A-Fa-f])([0-9A-Fa-f])")


def _literal(form: str) -> str:
    """``form`` as a regex, a ``%2F`` matching ``%2f`` too."""
    pieces = _PERCENT.split(form)
    out = []
    for index, piece in enumerate(pieces):
        if index % 3 == 0:
            out.append(re.escape(piece))
        else:
            if index % 3 == 1:
                out.append("%")
            out.append(f"[{piece.upper()}{piece.lower()}]" if piece.isalpha() else piece)
    return "".join(out)


_SPACE = re.compile(r"\s+")


def excerpt(body: bytes, limit: int, secrets: tuple[str, ...]) -> str:
    """A short, single-line, secret-free excerpt of a response body (any bytes at all)."""
    text = scrub(body.decode("utf-8", errors="replace"), secrets)
    return cut(_SPACE.sub(" ", text).strip(), limit)


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"

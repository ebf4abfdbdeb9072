"""Scrubbing response excerpts: a secret echoed back in any usual encoding is masked."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote, quote_plus

import pytest

from flowguard.actions.outbound import excerpt, scrub, url_secrets

URL = "https://hooks.example.com/services/T0SECRET/B0SECRET/XXXXSECRETXXXXabcd?token=QSECRETQ1&x=1"


def _forms(value: str) -> list[str]:
    return [
        value,
        value.replace("/", "\\/"),  # JSON with escaped slashes (PHP's json_encode, Slack)
        json.dumps(value)[1:-1],
        quote(value, safe=""),  # percent-encoded, upper-case hex
        re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(value, safe="")),
        quote(value, safe="/"),
        quote_plus(value),
        html.escape(value),
    ]


@pytest.mark.parametrize("form", _forms(URL), ids=range(len(_forms(URL))))
def test_an_echoed_url_is_masked_in_every_usual_encoding(form: str) -> None:
    body = f'{{"error": "no such hook", "url": "{form}"}}'.encode()
    text = excerpt(body, 2000, url_secrets(URL))
    assert "secret" not in text.lower(), text
    assert "no such hook" in text


def test_the_path_alone_escaped_is_masked_too() -> None:
    path = "/services/T0SECRET/B0SECRET/XXXXSECRETXXXXabcd"
    text = scrub(f"bad path {path.replace('/', chr(92) + '/')} here", url_secrets(URL))
    assert "secret" not in text.lower()
    assert text.startswith("bad path ***")
    assert text.endswith(" here")


def test_a_header_secret_percent_encoded_is_masked() -> None:
    secret = "Bearer sk-live/HEADER+SECRET=="
    for form in _forms(secret):
        assert "secret" not in scrub(f"got {form}", (secret,)).lower(), form


def test_text_without_secrets_is_unchanged() -> None:
    text = 'ok {"a": "b\\/c", "d": "%2F"}'
    assert scrub(text, url_secrets(URL)) == text

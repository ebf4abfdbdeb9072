"""bridge/cli.py logging: aiokafka's per-attempt connection errors only at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from bridge.cli import configure_logging


@pytest.fixture
def aiokafka_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("aiokafka")
    before = list(logger.filters)
    yield logger
    logger.filters[:] = before


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", logging.ERROR, "client.py", 216, msg, args, None)


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("warning", False), ("DEBUG", True)])
def test_connection_attempts_are_logged_only_at_debug(
    aiokafka_logger: logging.Logger, level: str, shown: bool
) -> None:
    configure_logging(level)
    attempt = record('Unable connect to "%s:%s": %s', "127.0.0.1", 1, "[Errno 111]")
    assert aiokafka_logger.filter(attempt) is shown
    assert aiokafka_logger.filter(record("Unable to update metadata from %s", [0])) is shown
    # Anything else aiokafka says still shows.
    assert aiokafka_logger.filter(record("Unexpected error in sender routine"))


@pytest.mark.parametrize(
    "error",
    [
        "[Error 58] SaslAuthenticationFailed: Authentication failed during authentication due to "
        "invalid credentials with SASL mechanism SCRAM-SHA-512",
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer",
    ],
)
def test_a_refused_kafka_login_or_certificate_is_always_shown(
    aiokafka_logger: logging.Logger, error: str
) -> None:
    """A wrong FLOWGUARD_KAFKA_SASL_PASSWORD or CA is a setting to fix, not an outage."""
    configure_logging("INFO")
    assert aiokafka_logger.filter(record('Unable connect to "%s:%s": %s', "127.0.0.1", 1, error))

"""flowguard/kafka_security.py: the FLOWGUARD_KAFKA_* security settings, their checks, and what
every Kafka client is given (aiokafka keyword arguments, Faust credentials)."""

from __future__ import annotations

import ast
import ssl
import subprocess
from pathlib import Path
from typing import Any

import faust
import pytest
from pydantic import ValidationError

from bridge.settings import BridgeSettings
from flowguard.kafka_security import client_options, faust_credentials
from flowguard.live.settings import LiveSettings
from flowguard.settings import Settings
from flowguard.settings_base import setting_problem

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-not-in-any-log"
SASL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "flowguard",
    "kafka_sasl_password": PASSWORD,
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a broker and a client certificate, made by the same code as the SASL_SSL broker's."""
    home = tmp_path_factory.mktemp("kafka")
    script = ". deploy/lib.sh; . deploy/kafka/secure.sh; home=$1; make_tls"
    subprocess.run(["bash", "-c", script, "_", str(home)], cwd=REPO, check=True, timeout=60)
    return home / "tls"


def _problem(**values: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    return setting_problem(caught.value)


def test_plaintext_by_default() -> None:
    settings = Settings()
    assert client_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


@pytest.mark.parametrize(
    ("values", "variable", "reason"),
    [
        ({"kafka_security_protocol": "TLS"}, "SECURITY_PROTOCOL", "'PLAINTEXT', 'SSL'"),
        ({**SASL, "kafka_sasl_mechanism": None}, "SASL_MECHANISM", "required when"),
        ({**SASL, "kafka_sasl_mechanism": "GSSAPI"}, "SASL_MECHANISM", "'SCRAM-SHA-512'"),
        ({**SASL, "kafka_sasl_username": None}, "SASL_USERNAME", "required when"),
        ({**SASL, "kafka_sasl_password": None}, "SASL_PASSWORD", "required when"),
        ({**SASL, "kafka_sasl_password": ""}, "SASL_PASSWORD", "must not be empty"),
        ({**SASL, "kafka_sasl_username": ""}, "SASL_USERNAME", "at least 1 character"),
        # A SASL setting without a SASL protocol would connect in clear: refused, not ignored.
        ({"kafka_sasl_username": "flowguard"}, "SASL_USERNAME", "only used when"),
        ({"kafka_ssl_cafile": "/etc/hostname"}, "SSL_CAFILE", "only used when"),
        ({**SASL, "kafka_ssl_cafile": "/nonexistent/ca.crt"}, "SSL_CAFILE", "not point to a file"),
        ({**SASL, "kafka_ssl_cafile": "/etc/hostname"}, "SSL_CAFILE", "cannot load a PEM CA"),
    ],
)
def test_a_bad_combination_names_the_variable_and_the_reason(
    values: dict[str, Any], variable: str, reason: str
) -> None:
    problem = _problem(**values)
    assert problem.startswith(f"FLOWGUARD_KAFKA_{variable}: "), problem
    assert reason in problem
    assert PASSWORD not in problem


def test_a_client_key_needs_its_certificate_and_they_must_match(tls: Path) -> None:
    problem = _problem(**SASL, kafka_ssl_keyfile=tls / "client.key")
    assert problem.startswith("FLOWGUARD_KAFKA_SSL_CERTFILE: "), problem
    assert "required when FLOWGUARD_KAFKA_SSL_KEYFILE" in problem
    mismatch = {"kafka_ssl_certfile": tls / "client.crt", "kafka_ssl_keyfile": tls / "broker.key"}
    problem = _problem(**SASL, **mismatch)
    assert problem.startswith("FLOWGUARD_KAFKA_SSL_CERTFILE: "), problem
    assert "cannot load the client certificate and key: [X509: KEY_VALUES_MISMATCH]" in problem
    assert "PRIVATE KEY" not in problem


def test_the_password_is_never_shown(tls: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**SASL, kafka_ssl_cafile=tls / "ca.crt", kafka_timeout_seconds=-1)
    assert PASSWORD not in str(caught.value)
    settings = Settings(**SASL, kafka_ssl_cafile=tls / "ca.crt")
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings.model_dump())


def test_sasl_ssl_gives_aiokafka_and_faust_the_same_login_and_tls(tls: Path) -> None:
    settings = Settings(
        **SASL,
        kafka_ssl_cafile=tls / "ca.crt",
        kafka_ssl_certfile=tls / "client.crt",
        kafka_ssl_keyfile=tls / "client.key",
    )
    options = client_options(settings)
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "flowguard",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1  # our CA only, not the system's as well
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.username == "flowguard"
    assert credentials.password == PASSWORD


def test_ssl_alone_and_sasl_in_clear() -> None:
    unchecked = Settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=False)
    options = client_options(unchecked)
    assert options["security_protocol"] == "SSL"
    assert not options["ssl_context"].check_hostname
    assert isinstance(faust_credentials(unchecked), faust.SSLCredentials)
    plain = Settings(**{**SASL, "kafka_security_protocol": "SASL_PLAINTEXT"})
    assert "ssl_context" not in client_options(plain)
    credentials = faust_credentials(plain)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_every_process_reads_the_same_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker, the API/CLI and the bridge: one set of FLOWGUARD_KAFKA_* names and checks."""
    for name, value in SASL.items():
        monkeypatch.setenv(f"FLOWGUARD_{name.upper()}", value)
    bridge = BridgeSettings(cluster="a", broker="redis://127.0.0.1:6379/0")
    for settings in (Settings(), LiveSettings(), bridge):
        assert client_options(settings)["sasl_plain_password"] == PASSWORD
    monkeypatch.delenv("FLOWGUARD_KAFKA_SASL_USERNAME")
    with pytest.raises(ValidationError, match="kafka_sasl_username"):
        BridgeSettings(cluster="a", broker="redis://127.0.0.1:6379/0")


_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}


def _constructions(path: Path) -> list[tuple[int, str, set[str]]]:
    """Each Kafka client built in ``path``: its line, its class, and how it is secured."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else ast.unparse(func)
        if name not in _CLIENTS and name != "faust.App":
            continue
        secured = {kw.arg for kw in node.keywords if kw.arg}
        secured |= {
            ast.unparse(kw.value.func)
            for kw in node.keywords
            if kw.arg is None and isinstance(kw.value, ast.Call)
        }
        found.append((node.lineno, name, secured))
    return found


def test_no_kafka_client_is_left_plain() -> None:
    """Every aiokafka client in flowguard/ and bridge/ gets client_options(), the Faust app its
    broker_credentials: a new client without them would ignore FLOWGUARD_KAFKA_SECURITY_*."""
    seen = []
    for path in sorted([*(REPO / "flowguard").rglob("*.py"), *(REPO / "bridge").rglob("*.py")]):
        for line, name, secured in _constructions(path):
            where = f"{path.relative_to(REPO)}:{line} {name}"
            wanted = "broker_credentials" if name == "faust.App" else "client_options"
            assert wanted in secured, f"{where} is built without {wanted}"
            seen.append(where)
    assert len(seen) >= 10, seen  # the walk found the clients at all


def test_the_summary_doctor_prints_names_the_login_but_not_the_password(tls: Path) -> None:
    assert Settings().kafka_security_summary() == "PLAINTEXT"
    mtls = Settings(
        **SASL, kafka_ssl_certfile=tls / "client.crt", kafka_ssl_keyfile=tls / "client.key"
    )
    summary = mtls.kafka_security_summary()
    assert summary == "SASL_SSL, SCRAM-SHA-512 as flowguard, client certificate"

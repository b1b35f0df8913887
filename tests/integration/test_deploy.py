"""What ``deploy/`` ships, checked by the real tools where this machine has them (promtool,
amtool, the Kubernetes API schemas, systemd-analyze, pip building the image's wheel) and
against each other everywhere: a path, port or name that one file expects of another is
the same in both."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from watchkeeper.daemon.config import Config, load_config
from watchkeeper.daemon.ingest.sources import option_checks
from watchkeeper.policies.loader import load_policy

from tests.conftest import _binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENV = {
    "WATCHKEEPER_STORE_URL": "postgresql+psycopg://watchkeeper:pw@postgres:5432/watchkeeper",
    "WATCHKEEPER_HTTP_TOKEN": "t0ken-for-tests",
    "SLACK_BOT_TOKEN": "xoxb-test",
    "RETRAIN_WEBHOOK_SECRET": "whsec_test",
}


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def load_config_text(text: str, tmp_path: Path, name: str = "watchkeeper.yaml") -> Config:
    path = tmp_path / name
    path.write_text(text)
    return load_config(path, env=ENV, clients=option_checks())


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def k8s_documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if d]


def test_the_image_runs_as_a_non_root_user_with_a_health_check_and_copies_what_exists(
    tmp_path: Path,
) -> None:
    steps = dockerfile()
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = " ".join(args for word, args in steps if word == "HEALTHCHECK")
    assert "/healthz" in health
    for word, args in steps:
        if word == "COPY" and not args.startswith("--from"):
            *sources, _target = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
    exposed = {args for word, args in steps if word == "EXPOSE"}
    config = load_config_text(
        (DEPLOY / "compose" / "watchkeeper.yaml").read_text(), tmp_path, "image.yaml"
    )
    assert {str(config.http.port)} == exposed
    # the image's build step: a wheel of the package, with every sub-package and the CLI
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("watchkeeper-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "watchkeeper = watchkeeper.daemon.cli.main:main" in z.read(entry_points).decode()
    for module in ("daemon/app.py", "detectors/psi.py", "policies/engine.py", "alerts/slack.py"):
        assert f"watchkeeper/{module}" in names
    migrations = "watchkeeper/daemon/store/migrations/"
    for shipped in ("env.py", "script.py.mako", "versions/0001_initial.py"):
        assert migrations + shipped in names
    # every subpackage of the daemon is in the wheel (the package list is kept by hand)
    for package in sorted((ROOT / "daemon").rglob("__init__.py")):
        assert f"watchkeeper/{package.relative_to(ROOT).as_posix()}" in names


def test_the_compose_stack_fits_together(tmp_path: Path) -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) >= {
        "kafka",
        "postgres",
        "watchkeeper",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    assert services["kafka"]["image"].startswith("apache/kafka:")  # the official image
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
    assert (DEPLOY / "compose" / "env.example").is_file()  # copied to the ignored .env
    env_example = (DEPLOY / "compose" / "env.example").read_text()
    wk = services["watchkeeper"]
    mounts = dict(v.split(":")[1::-1] for v in wk["volumes"] if v.startswith("."))
    config = load_config_text(
        (DEPLOY / "compose" / "watchkeeper.yaml").read_text(), tmp_path, "compose.yaml"
    )
    # every secret the config names is set by the compose file or the env example
    for variable in ENV:
        if variable in (DEPLOY / "compose" / "watchkeeper.yaml").read_text():
            assert variable in wk.get("environment", {}) or f"{variable}=" in env_example
    assert mounts["/etc/watchkeeper/policies"] == "../policies/examples"
    assert config.policies.paths == ["/etc/watchkeeper/policies"]
    assert wk["ports"] == [f"127.0.0.1:{config.http.port}:{config.http.port}"]
    host, port = config.kafka.bootstrap_servers[0].split(":")
    assert (
        host == "kafka"
        and f"PLAINTEXT://kafka:{port}"
        in (services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"])
    )
    alertmanager = config.alerts.channels["alertmanager"]
    assert getattr(alertmanager, "url", "").startswith("http://alertmanager:9093")
    assert "postgres:5432" in wk["environment"]["WATCHKEEPER_STORE_URL"]
    # Grafana: the dashboards provider reads the folder the dashboard is mounted into
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "watchkeeper.yaml").read_text()
    )
    folder = provider["providers"][0]["options"]["path"]
    assert any(
        v.endswith(f"{folder}/watchkeeper-dashboard.json:ro")
        for v in services["grafana"]["volumes"]
    )
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    # the shipped policies name only channels the compose config defines
    for path in sorted((ROOT / "policies" / "examples").glob("*.yaml")):
        if not path.name.endswith(".test.yaml"):
            for rule in load_policy(path, cross_check=False).policy.rules:
                for channel in (*rule.actions.warn, *rule.actions.critical):
                    assert channel in config.alerts.channels, (path.name, channel)


def test_prometheus_config_and_alertmanager_config_pass_their_own_checkers(
    promtool: str,
) -> None:
    result = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "watchkeeper-rules.yml" in result.stdout + result.stderr  # the rules were read
    amtool = _binary("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(DEPLOY / "compose" / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["sidecar.yaml", "deployment.yaml"])
def test_kubernetes_examples_are_valid_and_carry_a_loadable_config(
    name: str, tmp_path: Path
) -> None:
    documents = k8s_documents(name)
    for doc in documents:
        kubernetes_validate.validate(doc, "1.30", strict=True)
    config_maps = [d for d in documents if d["kind"] == "ConfigMap"]
    config_text = next(
        d["data"]["watchkeeper.yaml"] for d in config_maps if "watchkeeper.yaml" in d["data"]
    )
    config = load_config_text(config_text, tmp_path)
    assert config.http.token_env  # it listens beyond loopback: changes need a token
    for secret in [d for d in documents if d["kind"] == "Secret"]:
        for value in secret.get("stringData", {}).values():
            assert "REPLACE-ME" in value  # placeholders only, never a secret
    policies = [d for d in config_maps if d["metadata"]["name"] == "watchkeeper-policies"]
    for cm in policies:
        for file_name, text in cm["data"].items():
            (tmp_path / file_name).write_text(text)
            loaded = load_policy(tmp_path / file_name, cross_check=False)
            for rule in loaded.policy.rules:
                for channel in (*rule.actions.warn, *rule.actions.critical):
                    assert channel in config.alerts.channels
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    assert deployments
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = [c for c in pod["containers"] if c["name"] == "watchkeeper"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"secretRef": {"name": "watchkeeper-secrets"}} in container["envFrom"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert set(config.policies.paths) <= mounts
        port = next(p["containerPort"] for p in container["ports"])
        assert port == config.http.port


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = _binary("systemd-analyze")  # fails in CI when missing, like promtool
    unit = (DEPLOY / "systemd" / "watchkeeper.service").read_text()
    assert re.search(r"^User=watchkeeper$", unit, re.M)
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit  # SIGHUP reloads policies
    # verify with the binary this checkout has (the unit names /opt/watchkeeper's)
    local = unit.replace(
        "/opt/watchkeeper/bin/watchkeeper", str(Path(sys.executable).parent / "watchkeeper")
    )
    local = local.replace("User=watchkeeper", "User=root").replace(
        "Group=watchkeeper", "Group=root"
    )
    local = local.replace(
        "EnvironmentFile=/etc/watchkeeper/env", f"EnvironmentFile=-{tmp_path}/env"
    )
    path = tmp_path / "watchkeeper.service"
    path.write_text(local)
    result = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, check=False
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "watchkeeper.service" in line
    ]
    assert not problems, problems

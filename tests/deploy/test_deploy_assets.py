"""The deployment assets agree with the program and with each other.

Every config shipped in a ConfigMap, the compose file or ``config/example.yaml`` passes the real
schema; the Kubernetes workloads run non-root and read-only, probe the real endpoints and wire the
Secret, ConfigMap, Services and ServiceMonitor by the same names and labels; the PrometheusRule is
exactly the alert rules; the Dockerfile's final stage is slim and non-root; the compose stack
mounts files that exist; the Grafana dashboard queries documented metrics with valid PromQL; and
the systemd unit passes ``systemd-analyze verify``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from monitor.config.loading import parse_settings
from monitor.config.settings import Settings
from monitor.exposition.families import USAGE_FAMILIES
from monitor.exposition.own import MonitorMetrics
from tests.harness import require

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
COMPOSE = DEPLOY / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "modelarts-monitor.json"
UNIT = DEPLOY / "systemd" / "modelarts-monitor.service"
DOCKERFILE = ROOT / "Dockerfile"

PORT = 9888
IMAGE_UID = 10001
SECRET_KEYS = {"HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_PROJECT_ID"}
DUMMY_ENV = {
    "HUAWEICLOUD_SDK_AK": "DUMMYAK",
    "HUAWEICLOUD_SDK_SK": "dummy-sk",
    "HUAWEICLOUD_SDK_PROJECT_ID": "dummy-project",
}
# What the e2e test (tests/e2e) substitutes before running each panel query.
DASHBOARD_VARIABLES = {
    "target": ".*",
    "team": ".*",
    "job_name": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
}


# --- loading ----------------------------------------------------------------------------------


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object in deploy/kubernetes/."""
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in load_yaml_docs(path)]


def objects(kind: str, path: Path | None = None) -> list[dict[str, Any]]:
    docs = load_yaml_docs(path) if path else manifests()
    return [d for d in docs if d.get("kind") == kind]


def one(kind: str, path: Path) -> dict[str, Any]:
    found = objects(kind, path)
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def config_map(name: str) -> dict[str, Any]:
    for cm in objects("ConfigMap"):
        if cm["metadata"]["name"] == name:
            return cm
    raise AssertionError(f"no ConfigMap {name} in deploy/kubernetes/")


def config_of(cm: dict[str, Any]) -> dict[str, Any]:
    doc = yaml.safe_load(cm["data"]["config.yaml"])
    assert isinstance(doc, dict)
    return doc


DEPLOYMENT = K8S / "deployment.yaml"
STATEFULSET = K8S / "statefulset-sharded.yaml"


def workloads() -> list[dict[str, Any]]:
    return [one("Deployment", DEPLOYMENT), one("StatefulSet", STATEFULSET)]


WORKLOAD_IDS = ["deployment", "statefulset-sharded"]


@pytest.fixture(params=[0, 1], ids=WORKLOAD_IDS)
def workload(request: pytest.FixtureRequest) -> dict[str, Any]:
    return workloads()[request.param]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def mounted_config(workload: dict[str, Any]) -> dict[str, Any]:
    """The config the workload's container reads: the ConfigMap behind its --config path."""
    spec = workload["spec"]["template"]["spec"]
    args = container(workload)["args"]
    path = PurePosixPath(args[args.index("--config") + 1])
    for mount in container(workload)["volumeMounts"]:
        if PurePosixPath(mount["mountPath"]) == path.parent:
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            cm = config_map(volume["configMap"]["name"])
            assert path.name in cm["data"], f"{cm['metadata']['name']} has no key {path.name}"
            return yaml.safe_load(cm["data"][path.name])  # type: ignore[no-any-return]
    raise AssertionError(f"nothing is mounted at {path.parent}")


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def compose_config() -> dict[str, Any]:
    doc = yaml.safe_load(compose()["configs"]["modelarts-monitor-config"]["content"])
    assert isinstance(doc, dict)
    return doc


def validate(doc: dict[str, Any], **env: str) -> Settings:
    return parse_settings(doc, env={**DUMMY_ENV, **env})


# --- every shipped config passes the schema ---------------------------------------------------


SHIPPED_CONFIGS = {
    "config/example.yaml": lambda: yaml.safe_load(
        (ROOT / "config" / "example.yaml").read_text(encoding="utf-8")
    ),
    "kubernetes/configmap.yaml": lambda: config_of(config_map("modelarts-monitor-config")),
    "docker-compose.yml": compose_config,
}


@pytest.mark.parametrize("name", sorted(SHIPPED_CONFIGS))
def test_shipped_config_passes_the_schema_with_credentials_from_the_environment(
    name: str,
) -> None:
    settings = validate(SHIPPED_CONFIGS[name]())
    assert settings.auth.ak == DUMMY_ENV["HUAWEICLOUD_SDK_AK"]
    assert settings.api.project_id == DUMMY_ENV["HUAWEICLOUD_SDK_PROJECT_ID"]
    assert settings.jobs, "a shipped config should show at least one job"


def test_sharded_config_gives_each_statefulset_pod_its_own_shard() -> None:
    """`shard: {index: auto}` resolves from the pod host name <statefulset>-<N>; every ordinal
    the StatefulSet creates is a valid shard, and `total` equals the replicas."""
    sts = one("StatefulSet", STATEFULSET)
    doc = mounted_config(sts)
    assert doc["shard"] == {"index": "auto", "total": sts["spec"]["replicas"]}
    name = sts["metadata"]["name"]
    for ordinal in range(sts["spec"]["replicas"]):
        settings = validate(doc, HOSTNAME=f"{name}-{ordinal}")
        assert settings.shard.index == ordinal
        assert settings.shard.total == sts["spec"]["replicas"]


@pytest.mark.parametrize(
    "config",
    [
        lambda: config_of(config_map("modelarts-monitor-config")),
        lambda: mounted_config(one("StatefulSet", STATEFULSET)),
        compose_config,
    ],
    ids=["configmap", "sharded-configmap", "compose"],
)
def test_deployed_configs_carry_no_credentials(config: Any) -> None:
    """AK, SK, project id and passwords come from the environment (the Secret), never from a
    ConfigMap or the compose file."""
    doc = config()
    assert not {"ak", "sk", "password"} & set(doc.get("auth", {}))
    assert "project_id" not in doc["api"]


def test_workload_config_listens_on_the_container_port_and_keeps_state_on_a_volume(
    workload: dict[str, Any],
) -> None:
    doc = mounted_config(workload)
    assert doc["server"]["listen"] == f"0.0.0.0:{PORT}"
    state_dir = PurePosixPath(doc["state"]["path"]).parent
    mounts = {PurePosixPath(m["mountPath"]): m for m in container(workload)["volumeMounts"]}
    assert state_dir in mounts, f"state directory {state_dir} is not a volume"
    assert not mounts[state_dir].get("readOnly", False)


# --- PrometheusRule == alerts.yml -------------------------------------------------------------


def test_prometheusrule_groups_are_exactly_the_alert_rules_groups() -> None:
    rule = one("PrometheusRule", K8S / "prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert [g["name"] for g in alerts["groups"]] == ["modelarts-monitor"]
    assert rule["spec"]["groups"] == alerts["groups"]


def test_regenerating_the_prometheusrule_gives_identical_bytes(tmp_path: Path) -> None:
    script = K8S / "generate_prometheusrule.py"
    shipped = K8S / "prometheusrule.yaml"
    assert shipped.read_text(encoding="utf-8").startswith("# generated by ")
    out = tmp_path / "prometheusrule.yaml"
    run = subprocess.run(
        [sys.executable, str(script), "--output", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == shipped.read_bytes(), (
        "prometheusrule.yaml is stale: run python deploy/kubernetes/generate_prometheusrule.py"
    )
    check = subprocess.run(
        [sys.executable, str(script), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr


# --- Kubernetes workloads ---------------------------------------------------------------------


def test_workload_runs_non_root_read_only_without_capabilities(workload: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == IMAGE_UID != 0
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container(workload)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not sc["capabilities"].get("add")


def test_workload_has_requests_and_a_memory_limit(workload: dict[str, Any]) -> None:
    resources = container(workload)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_workload_probes_healthz_for_liveness_and_readyz_for_readiness(
    workload: dict[str, Any],
) -> None:
    c = container(workload)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": PORT}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in c:
            assert c[probe]["httpGet"]["port"] in ("metrics", PORT)


def test_workload_reads_credentials_from_the_secret(workload: dict[str, Any]) -> None:
    secret = one("Secret", K8S / "secret-example.yaml")
    assert set(secret["stringData"]) == SECRET_KEYS
    c = container(workload)
    from_secret = {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
    keyed = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secret["metadata"]["name"] in from_secret | keyed


def test_secret_example_holds_placeholders_only() -> None:
    text = (K8S / "secret-example.yaml").read_text(encoding="utf-8")
    assert "EXAMPLE" in text.splitlines()[0]
    for value in one("Secret", K8S / "secret-example.yaml")["stringData"].values():
        assert value.startswith("EXAMPLE-REPLACE"), value


def test_workload_runs_the_daemon_and_drains_within_its_grace_period(
    workload: dict[str, Any],
) -> None:
    spec = workload["spec"]["template"]["spec"]
    assert container(workload)["args"][0] == "run"
    # In-flight polls (api.timeout 10 s) plus up to 10 s of sink drain, with room to spare.
    assert spec["terminationGracePeriodSeconds"] >= 30
    tmp = [m for m in container(workload)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp, "SQLite needs a writable /tmp under a read-only root filesystem"


def test_deployment_runs_exactly_one_replica() -> None:
    assert one("Deployment", DEPLOYMENT)["spec"]["replicas"] == 1


def test_statefulset_claims_a_volume_per_shard_for_its_state() -> None:
    sts = one("StatefulSet", STATEFULSET)
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    state_dir = str(PurePosixPath(mounted_config(sts)["state"]["path"]).parent)
    mounted = {m["mountPath"]: m["name"] for m in container(sts)["volumeMounts"]}
    assert mounted[state_dir] in claims
    assert sts["spec"]["replicas"] == 3


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize(
    ("service_file", "workload_index"),
    [(K8S / "service.yaml", 0), (STATEFULSET, 1)],
    ids=WORKLOAD_IDS,
)
def test_service_selects_the_pods_and_names_their_metrics_port(
    service_file: Path, workload_index: int
) -> None:
    service = one("Service", service_file)
    wl = workloads()[workload_index]
    pod_labels = wl["spec"]["template"]["metadata"]["labels"]
    assert matches(service["spec"]["selector"], pod_labels)
    assert matches(wl["spec"]["selector"]["matchLabels"], pod_labels)
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics"
    assert port["port"] == PORT
    assert port["targetPort"] in ("metrics", PORT)
    # The other workload's pods are not behind this Service.
    other = workloads()[1 - workload_index]["spec"]["template"]["metadata"]["labels"]
    assert not matches(service["spec"]["selector"], other)
    if wl["kind"] == "StatefulSet":
        assert service["spec"]["clusterIP"] == "None"
        assert wl["spec"]["serviceName"] == service["metadata"]["name"]


def test_servicemonitor_scrapes_every_service_on_the_metrics_port_every_30s() -> None:
    """Both Services are scraped, under the job name the alert rules use
    (up{job="modelarts-monitor"})."""
    sm = one("ServiceMonitor", K8S / "servicemonitor.yaml")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    services = [one("Service", K8S / "service.yaml"), one("Service", STATEFULSET)]
    namespaces = sm["spec"]["namespaceSelector"]["matchNames"]
    for service in services:
        assert matches(sm["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        assert service["metadata"]["namespace"] in namespaces
        assert service["metadata"]["labels"][sm["spec"]["jobLabel"]] == "modelarts-monitor"
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["interval"] == "30s"
    assert endpoint.get("path", "/metrics") == "/metrics"
    assert 'up{job="modelarts-monitor"}' in ALERTS.read_text(encoding="utf-8")


def test_every_manifest_lives_in_the_shipped_namespace() -> None:
    namespace = one("Namespace", K8S / "namespace.yaml")["metadata"]["name"]
    for obj in manifests():
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace, obj["metadata"]["name"]


# --- Dockerfile -------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, rest = text.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    stages: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def final_stage() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for keyword, rest in dockerfile_stages()[-1]:
        found.setdefault(keyword, []).append(rest)
    return found


def test_dockerfile_final_stage_is_slim_python_without_build_tools() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a builder and the final image"
    assert stages[0][0][1].startswith("python:3.11-slim")
    final = final_stage()
    assert final["FROM"] == ["python:3.11-slim"]
    text = " ".join(" ".join(v) for v in final.values())
    for tool in ("gcc", "build-essential", "apt-get install", "pip install", "pip wheel"):
        assert tool not in text, f"{tool} in the final stage"
    assert any("--from=builder" in c for c in final["COPY"])


def test_dockerfile_runs_as_the_non_root_user_kubernetes_expects() -> None:
    (user,) = final_stage()["USER"]
    assert user.split(":")[0] == str(IMAGE_UID)
    assert "WORKDIR" in final_stage()
    for wl in workloads():
        assert wl["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == IMAGE_UID


def test_dockerfile_healthcheck_gets_healthz_with_the_stdlib() -> None:
    (healthcheck,) = final_stage()["HEALTHCHECK"]
    assert f"127.0.0.1:{PORT}/healthz" in healthcheck
    assert "urllib.request" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck


def test_dockerfile_runs_the_daemon_on_the_mounted_config_and_stops_on_sigterm() -> None:
    final = final_stage()
    assert [json.loads(e) for e in final["ENTRYPOINT"]] == [["modelarts-monitor"]]
    assert [json.loads(c) for c in final["CMD"]] == [
        ["run", "--config", "/etc/modelarts-monitor/config.yaml"]
    ]
    assert final["EXPOSE"] == [str(PORT)]
    assert final["STOPSIGNAL"] == ["SIGTERM"]
    assert "/var/lib/modelarts-monitor" in " ".join(final["VOLUME"])


def test_dockerignore_admits_exactly_what_the_build_copies() -> None:
    """The context is an allow-list (no .git, venvs, state databases or local configs), and
    every file the builder COPYs from the context is in it."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for keyword, rest in dockerfile_stages()[0]:
        if keyword == "COPY" and "--from" not in rest:
            *sources, _target = shlex.split(rest)
            for source in sources:
                assert source.rstrip("/") in allowed, source
                assert (ROOT / source).exists(), source


# --- docker compose ---------------------------------------------------------------------------


def bind_mounts(service: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            yield (COMPOSE.parent / source).resolve(), target


def test_compose_runs_the_demo_from_the_dockerfile() -> None:
    monitor = compose()["services"]["modelarts-monitor"]
    build = monitor["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert monitor["command"] == ["demo", "--listen", f"0.0.0.0:{PORT}", "--keep-running"]
    assert any(str(p).endswith(f":{PORT}") for p in monitor["ports"])


def test_compose_wires_prometheus_alertmanager_and_grafana_to_existing_files() -> None:
    services = compose()["services"]
    assert set(services) >= {"modelarts-monitor", "prometheus", "alertmanager", "grafana"}
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["alertmanager"]["image"].startswith("prom/alertmanager:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    for name, service in services.items():
        for source, _target in bind_mounts(service):
            assert source.exists(), f"{name} mounts {source}, which is not in the repository"

    prom_mounts = {t: s for s, t in bind_mounts(services["prometheus"])}
    assert prom_mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS_YML
    prom = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    for rule_file in prom["rule_files"]:
        target = str(PurePosixPath("/etc/prometheus") / rule_file)
        assert prom_mounts[target] == PROMETHEUS_YML.parent / rule_file
    (scrape,) = [s for s in prom["scrape_configs"] if s["job_name"] == "modelarts-monitor"]
    targets = [t for sc in scrape["static_configs"] for t in sc["targets"]]
    assert targets == [f"modelarts-monitor:{PORT}"]
    alertmanagers = [
        t
        for am in prom["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert {t.split(":")[0] for t in alertmanagers} == {"alertmanager"}

    am_mounts = {t: s for s, t in bind_mounts(services["alertmanager"])}
    assert am_mounts["/etc/alertmanager/alertmanager.yml"] == (
        DEPLOY / "alertmanager" / "alertmanager.yml"
    )


def test_compose_grafana_provisions_the_prometheus_datasource_and_the_dashboard() -> None:
    grafana = {t: s for s, t in bind_mounts(compose()["services"]["grafana"])}
    datasources = load_yaml_docs(
        grafana["/etc/grafana/provisioning/datasources"] / "prometheus.yml"
    )
    (ds,) = datasources[0]["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    providers = load_yaml_docs(grafana["/etc/grafana/provisioning/dashboards"] / "dashboards.yml")
    (provider,) = providers[0]["providers"]
    folder = provider["options"]["path"]
    dashboards = [s for t, s in grafana.items() if PurePosixPath(t).parent == PurePosixPath(folder)]
    assert dashboards == [DASHBOARD]


# --- Grafana dashboard ------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def targets() -> list[tuple[str, str]]:
    """(panel title, expr) of every query."""
    return [
        (panel["title"], target["expr"])
        for panel in all_panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def rows() -> dict[str, list[dict[str, Any]]]:
    """Each row's title and the panels Grafana shows under it: a collapsed row's own
    ``panels``, an open row's the top-level panels that follow it up to the next row."""
    found: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            current = found[panel["title"]] = list(panel["panels"])
        else:
            current.append(panel)
    return found


def documented_metrics() -> tuple[set[str], set[str]]:
    """(job series, monitor-wide series) names from docs/metrics.md, histogram parts included."""
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    job_part, _, monitor_part = text.partition("## The monitor itself")

    def names(part: str) -> set[str]:
        found = set()
        for name, kind in re.findall(r"^\| `([a-z_:][a-z0-9_:]*)` \| (\w+) \|", part, re.M):
            found.add(name)
            if kind == "histogram":
                found |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        return found

    return names(job_part), names(monitor_part)


def per_target_monitor_series() -> set[str]:
    """The monitor's own series that carry a ``target`` label when targets are configured."""
    registry = MonitorMetrics(targets=["a", "b"]).registry
    return {s.name for f in registry.collect() for s in f.samples if "target" in s.labels}


PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (identifiers that are not functions, keywords,
    label names or label values)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    return {
        m.group(0)
        for m in re.finditer(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*(?![\w:]|\s*\()", text)
        if m.group(0).lower() not in PROMQL_WORDS
    }


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, label matchers) of every selector in an expression."""
    return re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?", expr)


def test_dashboard_picks_its_prometheus_through_a_datasource_variable() -> None:
    dash = dashboard()
    assert 39 <= dash["schemaVersion"] < 42
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in all_panels(dash["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    ids = [p["id"] for p in all_panels(dash["panels"])]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", ["target", "team", "job_name"])
def test_dashboard_filters_by_multi_select_variable(name: str) -> None:
    """`target`, `team` and `job_name` are label_values() queries on job series, multi-select,
    with an All that also matches jobs without the label (allValue .*): a config without
    `targets:` exports no target label, and its jobs show under All."""
    variable = {v["name"]: v for v in dashboard()["templating"]["list"]}[name]
    assert variable["type"] == "query"
    query = variable["query"]
    query = query["query"] if isinstance(query, dict) else query
    match = re.fullmatch(r"label_values\((\w+)(\{[^}]*\})?, *(\w+)\)", query)
    assert match, query
    assert match.group(1) in {"modelarts_training_job_info", "modelarts_monitor_up"}
    assert match.group(3) == name
    assert variable["multi"] is True
    assert variable["includeAll"] is True
    assert variable["allValue"] == ".*"


@pytest.mark.parametrize(
    ("topic", "pattern"),
    [
        ("job phase", r"modelarts_training_job_phase\{[^}]*\}\s*==\s*1"),
        (
            "restarts by strategy",
            r"by \(.*end_recover.*\) \(increase\(modelarts_training_job_restarts_total",
        ),
        ("nodes", r"modelarts_training_job_nodes\{"),
        ("requested nodes", r"modelarts_training_job_requested_nodes\{"),
        ("duration", r"modelarts_training_job_duration_seconds\{"),
        ("poll health", r"modelarts_monitor_up\{"),
        (
            "polls by result",
            r"by \(result\) \(rate\(modelarts_monitor_polls_total(\{[^}]*\})?\[",
        ),
        (
            "p50 latency",
            r"histogram_quantile\(0\.5, sum by \(le\) \(rate\(modelarts_monitor_poll_duration_seconds_bucket\[",
        ),
        (
            "p99 latency",
            r"histogram_quantile\(0\.99, sum by \(le\) \(rate\(modelarts_monitor_poll_duration_seconds_bucket\[",
        ),
        ("event rate", r"by \(type\) \(rate\(modelarts_monitor_events_total\["),
        (
            "API requests by endpoint",
            r"by \(endpoint, result\) \(rate\(modelarts_monitor_api_requests_total(\{[^}]*\})?\[",
        ),
        ("outbox", r"modelarts_monitor_outbox_pending"),
    ],
)
def test_dashboard_has_a_panel_for(topic: str, pattern: str) -> None:
    assert any(re.search(pattern, expr) for _, expr in targets()), topic


def test_dashboard_shows_nodes_and_requested_nodes_in_one_panel() -> None:
    for panel in all_panels(dashboard()["panels"]):
        exprs = " ".join(t["expr"] for t in panel.get("targets", []))
        if "modelarts_training_job_nodes{" in exprs and "requested_nodes{" in exprs:
            return
    pytest.fail("no panel compares nodes with requested nodes")


def test_dashboard_queries_name_only_documented_metrics() -> None:
    job_series, monitor_series = documented_metrics()
    known = job_series | monitor_series | {"up"}
    assert "modelarts_training_job_phase" in job_series
    assert "modelarts_monitor_poll_duration_seconds_bucket" in monitor_series
    for title, expr in targets():
        unknown = metric_names(expr) - known
        assert not unknown, f"{title}: {expr} uses {unknown}"


def test_job_series_follow_the_target_team_and_job_name_filters_and_monitor_series_do_not() -> None:
    """Job series follow every filter; the monitor's own follow `target` where they carry it,
    and never `team` or `job_name`, labels they do not have."""
    job_series, monitor_series = documented_metrics()
    per_target = per_target_monitor_series()
    assert "modelarts_monitor_api_requests_total" in per_target
    for title, expr in targets():
        for metric, matchers in selectors(expr):
            if metric in job_series:
                assert 'team=~"$team"' in matchers, (title, expr)
                assert 'job_name=~"$job_name"' in matchers, (title, expr)
                assert 'target=~"$target"' in matchers, (title, expr)
            elif metric in monitor_series:
                assert "team" not in matchers and "job_name" not in matchers, (title, expr)
                if metric in per_target:
                    assert 'target=~"$target"' in matchers, (title, expr)


def test_dashboard_reads_state_sets_only_at_1_so_sparse_mode_shows_the_same() -> None:
    """With `metrics.state_sets: sparse` only the current state's series exists, at 1: a query
    that read the 0-valued states (or every state) would show something else in each mode."""
    state_set = re.compile(r"modelarts_training_job_(?:secondary_)?phase\{[^}]*\}(\s*==\s*1)?")
    seen = 0
    for title, expr in targets():
        for match in state_set.finditer(expr):
            seen += 1
            assert match.group(1), f"{title}: {expr} reads a state set without == 1"
    assert seen, "no state set read at all: is the pattern still right?"


ROW_TOPICS: list[tuple[str, str, str]] = [
    *(
        ("Usage and hangs", f"per-task {f.name}", rf"^{f.name}\{{[^}}]*\}}$")
        for f in USAGE_FAMILIES
    ),
    (
        "Usage and hangs",
        "jobs whose every accelerator is idle while Running",
        r"max without \(task\) \(modelarts_training_job_task_gpu_utilization_ratio\{[^}]*\}"
        r" or modelarts_training_job_task_npu_utilization_ratio\{[^}]*\}\) == 0\)"
        r' and ignoring \(phase\) \(modelarts_training_job_phase\{[^}]*phase="Running"\} == 1\)',
    ),
    (
        "Usage and hangs",
        "hang events",
        r'modelarts_monitor_events_total\{type=~"hang_suspected\|hang_cleared"\}',
    ),
    (
        "Recoveries",
        "recoveries by strategy and result",
        r"by \(.*\brecover, recover_result\) \(modelarts_training_job_recoveries_total\{",
    ),
    (
        "Recoveries",
        "restarts by strategy",
        r"by \(.*end_recover\) \(increase\(modelarts_training_job_restarts_total\{",
    ),
    (
        "Task exit codes",
        "non-zero exit codes per task",
        r"by \(.*\btask\) \(modelarts_training_job_task_exit_code\{[^}]*\} != 0\)",
    ),
    (
        "Time in phase",
        "now minus the last phase change, by phase",
        r"^\(time\(\) - modelarts_training_job_phase_last_change_timestamp_seconds\{[^}]*\}\)"
        r" \* ignoring \(phase\) group_right \(\) \(modelarts_training_job_phase\{[^}]*\} == 1\)$",
    ),
]
"""(row, what it must show, a pattern one of its queries matches)."""


@pytest.mark.parametrize(
    ("row", "topic", "pattern"), ROW_TOPICS, ids=[f"{r}: {t}" for r, t, _ in ROW_TOPICS]
)
def test_dashboard_row_shows_its_topic(row: str, topic: str, pattern: str) -> None:
    exprs = [t["expr"] for panel in rows()[row] for t in panel.get("targets", [])]
    assert any(re.search(pattern, expr) for expr in exprs), f"{row}: nothing shows {topic}"


def test_exit_codes_show_as_a_table_of_tasks() -> None:
    (panel,) = rows()["Task exit codes"]
    assert panel["type"] == "table"
    assert all(t["format"] == "table" and t["instant"] for t in panel["targets"])


def test_open_rows_hold_no_panels_and_collapsed_rows_hold_theirs() -> None:
    """Grafana draws an open row's panels from the top level and a collapsed row's from its
    own ``panels`` (queried when it is opened): a panel in the wrong place is never shown."""
    collapsed = 0
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            continue
        if panel["collapsed"]:
            collapsed += 1
            assert panel["panels"], panel["title"]
            assert all(p["gridPos"]["y"] > panel["gridPos"]["y"] for p in panel["panels"])
        else:
            assert panel["panels"] == [], panel["title"]
    assert collapsed >= 1


def substitute(expr: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: DASHBOARD_VARIABLES.get(m.group(1), m.group(0)), expr)


def test_dashboard_queries_use_only_variables_the_e2e_test_substitutes() -> None:
    for title, expr in targets():
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= set(DASHBOARD_VARIABLES), (title, expr)
        assert "${" not in expr, f"{title}: write $name, not ${{name}}"


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    """promtool (Prometheus 2.42 from Debian, where installed) parses every query, with the
    variables substituted, as a recording rule."""
    promtool = require("promtool")
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": substitute(expr)}
                    for i, (_, expr) in enumerate(targets())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    run = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


# --- systemd ----------------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_unit_runs_the_daemon_and_reloads_and_stops_it_by_signal() -> None:
    unit = unit_settings()
    assert unit["Type"] == ["simple"]
    assert unit["ExecStart"] == [
        "/usr/local/bin/modelarts-monitor run --config /etc/modelarts-monitor/config.yaml"
    ]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["EnvironmentFile"] == ["-/etc/modelarts-monitor/env"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["TimeoutStopSec"] == ["30"]
    # A dynamic user that owns state.path's default directory.
    assert unit["DynamicUser"] == ["yes"]
    assert unit["StateDirectory"] == ["modelarts-monitor"]


def test_systemd_unit_is_hardened() -> None:
    unit = unit_settings()
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert unit.get(key) == ["yes"], key
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert unit["SystemCallFilter"][0] == "@system-service"
    assert unit["CapabilityBoundingSet"] == [""]


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed")
    return path


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The unit, with only ExecStart's binary swapped for this environment's installed
    modelarts-monitor (verify checks that it exists), verifies without a complaint."""
    installed = Path(sys.executable).parent / "modelarts-monitor"
    assert installed.exists(), "the project must be installed into the test environment"
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("/usr/local/bin/modelarts-monitor ") == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("/usr/local/bin/modelarts-monitor ", f"{installed} "))
    run = verify(copy)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (run.stdout + run.stderr).strip() == ""


def test_systemd_unit_as_shipped_complains_at_most_about_a_missing_binary() -> None:
    """Where modelarts-monitor is not installed in /usr/local/bin, that is the only problem."""
    run = verify(UNIT)
    complaints = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    for line in complaints:
        assert "/usr/local/bin/modelarts-monitor" in line, line

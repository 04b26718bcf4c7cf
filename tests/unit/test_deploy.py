"""docker-compose.yml, Prometheus and Grafana provisioning and the Kubernetes
manifest agree with each other and with the settings object."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from aiokafka import codec
from packaging.requirements import Requirement

from console.metrics import ConsoleMetrics
from console.settings import CONSOLE_ENV_NAMES, console_from_env
from stream.settings import ENV_NAMES, from_env

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_has_the_whole_stack() -> None:
    services = compose()["services"]
    assert set(services) == {
        "kafka",
        "redis",
        "topic-init",
        "worker",
        "postgres",
        "console",
        "prometheus",
        "grafana",
    }
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["topic-init"]["command"] == ["topics"]
    assert services["worker"]["command"] == ["worker"]
    assert services["console"]["command"] == ["console"]


def test_compose_env_names_are_settings_and_values_parse() -> None:
    services = compose()["services"]
    for name in ("worker", "topic-init"):
        env = services[name]["environment"]
        assert set(env) <= ENV_NAMES, set(env) - ENV_NAMES
        from_env({k: str(v) for k, v in env.items()})


def test_compose_console_reaches_its_postgres_and_parses() -> None:
    services = compose()["services"]
    env = {k: str(v) for k, v in services["console"]["environment"].items()}
    assert set(env) <= ENV_NAMES | CONSOLE_ENV_NAMES, set(env) - ENV_NAMES - CONSOLE_ENV_NAMES
    from_env(env)
    console = console_from_env(env)
    database = urlsplit(console.database_url)
    pg_env = services["postgres"]["environment"]
    assert database.hostname == "postgres" and database.port == 5432
    assert (database.username, database.password) == (
        pg_env["POSTGRES_USER"],
        pg_env["POSTGRES_PASSWORD"],
    )
    assert database.path == "/" + pg_env["POSTGRES_DB"]
    assert f"{console.web_port}:{console.web_port}" in services["console"]["ports"]


def test_compose_ports_and_hosts_agree_with_settings() -> None:
    services = compose()["services"]
    env = {k: str(v) for k, v in services["worker"]["environment"].items()}
    settings = from_env(env)
    kafka_host, kafka_port = settings.kafka_host_port()
    assert kafka_host in services
    assert f"PLAINTEXT://:{kafka_port}" in services["kafka"]["environment"]["KAFKA_LISTENERS"]
    redis = urlsplit(settings.redis_url)
    assert redis.hostname in services and f"{redis.port}:6379" in services["redis"]["ports"]
    assert f"{settings.web_port}:{settings.web_port}" in services["worker"]["ports"]
    assert settings.web_host == "0.0.0.0"  # reachable from the Prometheus container
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"worker:{settings.web_port}"]


def test_compose_mounts_exist() -> None:
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (REPO / source).exists(), source


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen", REPO / "deploy/grafana/generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_equal_a_regeneration() -> None:
    gen = _generator()
    committed = {p.name for p in (REPO / "deploy/grafana/dashboards").glob("*.json")}
    assert committed == set(gen.DASHBOARDS) == {"fraudstream-sre.json", "fraudstream-risk.json"}
    for name, board in gen.DASHBOARDS.items():
        text = (REPO / "deploy/grafana/dashboards" / name).read_text(encoding="utf-8")
        assert text == gen.render(board), f"run python deploy/grafana/generate.py ({name})"


def test_grafana_dashboards_are_well_formed() -> None:
    ds = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = ds["datasources"][0]["uid"]
    uids = set()
    for path in (REPO / "deploy/grafana/dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        assert board["uid"] not in uids
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == uid
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and all(refs) and len(refs) == len(set(refs))
            assert all(t["expr"] and t["datasource"]["uid"] == uid for t in panel["targets"])


def test_prometheus_scrapes_the_console_where_compose_serves_it() -> None:
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    port = compose()["services"]["console"]["environment"]["FRAUD_CONSOLE_WEB_PORT"]
    assert jobs["fraudstream-console"]["static_configs"][0]["targets"] == [f"console:{port}"]


def test_console_panels_query_metrics_the_console_exports() -> None:
    exported = {m.name for m in ConsoleMetrics().registry.collect()}
    used = set()
    for board in _generator().DASHBOARDS.values():
        for panel in board["panels"]:
            for target in panel["targets"]:
                used |= set(re.findall(r"fraud_console_\w+", target["expr"]))
    assert "fraud_console_rule_precision" in used  # the risk board's precision panel
    assert {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used} <= exported


def test_compose_provisions_dashboards_and_alert_rules() -> None:
    services = compose()["services"]
    grafana_mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/dashboards/fraudstream.yml").read_text()
    )
    dashboards_in_container = provider["providers"][0]["options"]["path"]
    assert grafana_mounts["./deploy/grafana/dashboards"] == dashboards_in_container
    assert grafana_mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    prom_mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert f"/etc/prometheus/{rule_file}" in prom_mounts.values()
        assert (REPO / "deploy/prometheus" / rule_file).exists()


def test_every_alert_rule_has_a_runbook_section() -> None:
    rules = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    runbook = (REPO / "deploy/RUNBOOK.md").read_text()
    names = [r["alert"] for g in rules["groups"] for r in g["rules"]]
    assert len(names) >= 9 and len(set(names)) == len(names)  # none lost, none twice
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        assert f"## {rule['alert']}" in runbook
        assert rule["annotations"]["runbook"] == f"deploy/RUNBOOK.md#{rule['alert'].lower()}"


def test_the_package_and_its_image_read_every_kafka_codec() -> None:
    """Producers compress with gzip, snappy, lz4 or zstd; aiokafka reads the
    last three only with cramjam, which its extras bring (scripts/setup and
    the image both install the package with its dependencies)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (aiokafka,) = [Requirement(d) for d in project["dependencies"] if d.startswith("aiokafka")]
    assert {"lz4", "snappy", "zstd"} <= aiokafka.extras
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install [^\n&]*\s\.\s", dockerfile, re.M), dockerfile
    assert codec.has_gzip() and codec.has_snappy() and codec.has_lz4() and codec.has_zstd()

"""Prometheus config, rules and alert tests (promtool), Grafana dashboards and their
provisioning stay valid and agree with the metrics the code exports.

The end-to-end proof that every panel and rule returns data from running services is
tests/e2e/test_prometheus_dashboards.py; these checks are the fast, static half.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

import crmsync.common.kafka
from crmsync.common.settings import repo_root
from crmsync.settings.admin import AdminSettings
from crmsync.settings.ingest import IngestSettings
from crmsync.settings.outbound import OutboundSettings
from crmsync.settings.processor import ProcessorSettings

ROOT = repo_root()
PROMETHEUS = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
SERVICE_PORTS = {
    "ingest": IngestSettings.model_fields["ingest_port"].default,
    "processor": ProcessorSettings.model_fields["processor_port"].default,
    "outbound": OutboundSettings.model_fields["outbound_port"].default,
    "admin": AdminSettings.model_fields["admin_port"].default,
}
# Every metrics module of ours (services/*/metrics.py, crmsync/*/metrics.py, ...), imported
# here so the registry holds all of them whatever else the session imported.
METRIC_MODULES = (
    crmsync.common.kafka,
    *(
        importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for package in ("crmsync", "services", "connectors")
        for path in sorted((ROOT / package).rglob("metrics.py"))
    ),
)
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds"})


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool not found: install the Debian package `prometheus` (scripts/bootstrap)"
        )
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            yield from group["rules"]


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def recorded() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in DASHBOARD_FILES}


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, board in dashboards().items():
        for panel in board["panels"]:
            yield f"{name}: {panel.get('title')!r}", panel


def panel_queries() -> list[str]:
    return [t["expr"] for _, p in panels() for t in p["targets"]]


def exported_series() -> set[str]:
    """Every series name the crmsync metric modules can export, labelled or not."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    family: Metric
    for family in REGISTRY.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def referenced_names(expr: str) -> set[str]:
    """Metric and recorded-series names in a PromQL expression (ours only: crmsync)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings (label values)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return {t for t in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if "crmsync" in t or t == "up"}


# --- Prometheus --------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config() -> None:
    result = promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_accepts_the_alertmanager_config_and_routes_pages() -> None:
    exe = shutil.which("amtool")
    assert exe, "amtool not found: install the Debian package `prometheus-alertmanager`"
    config = ROOT / "infra" / "alertmanager" / "alertmanager.yml"
    checked = subprocess.run(
        [exe, "check-config", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    routed = subprocess.run(
        [exe, "config", "routes", "test", f"--config.file={config}", "severity=page"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert routed.stdout.strip() == "operator"


def test_prometheus_sends_alerts_to_the_compose_alertmanager() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert targets == ["alertmanager:9093"]
    assert "alertmanager" in compose["services"]


def test_promtool_accepts_every_rule_file() -> None:
    assert RULE_FILES
    result = promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    result = promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_file_is_loaded_by_the_config_and_the_rule_tests() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    loaded = {p for pattern in config["rule_files"] for p in PROMETHEUS.glob(pattern)}
    assert set(RULE_FILES) <= loaded
    for test_file in RULE_TESTS:
        tested = {(test_file.parent / f).resolve() for f in load_yaml(test_file)["rule_files"]}
        assert {p.resolve() for p in RULE_FILES} <= tested, test_file.name


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for test_file in RULE_TESTS:
        for case in load_yaml(test_file)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names, "no alert rules found"
    assert names - fired == set(), "alerts no promtool test expects to fire"
    assert names - quiet == set(), "alerts no promtool test expects to stay quiet"


def test_the_required_alerts_exist() -> None:
    exprs = {a["alert"]: a["expr"] for a in alerts()}
    needed = {
        "signature failure spike": "crmsync_ingest_signature_failures_total",
        "dead letters growing": "crmsync_dead_letters_open",
        "consumer lag": "crmsync_kafka_consumer_lag",
        "e2e p99 over SLO (commit)": "crmsync_processor_received_to_committed_seconds_bucket",
        "e2e p99 over SLO (push)": "crmsync_outbound_committed_to_pushed_seconds_bucket",
        "circuit open": "crmsync_outbound_circuit_state",
        "needs re-auth": "crmsync_outbound_connections_needing_reauth",
        "service down": "up",
    }
    for what, metric in needed.items():
        assert any(metric in referenced_names(e) for e in exprs.values()), what


def test_every_alert_says_how_bad_it_is_and_what_it_means() -> None:
    for alert in alerts():
        assert alert["labels"]["severity"] in {"page", "warning"}, alert["alert"]
        for key in ("summary", "description", "runbook"):
            assert alert["annotations"].get(key), f"{alert['alert']} has no {key}"
        assert alert["alert"] in (ROOT / "README.md").read_text(), (
            f"{alert['alert']} is not explained in README's Alerts table"
        )


def test_recording_rules_follow_the_naming_convention() -> None:
    for name in recorded():
        level, metric, operations = name.split(":")
        assert metric.startswith("crmsync_"), name
        assert operations, name
        assert re.fullmatch(r"[a-z_]*", level), name


def test_rules_and_panels_use_only_series_the_code_exports() -> None:
    known = exported_series() | recorded() | PROMETHEUS_SERIES
    exprs = [r["expr"] for r in rules()] + panel_queries()
    unknown = {n for e in exprs for n in referenced_names(e)} - known
    assert unknown == set(), "renamed or missing metrics (or recording rules)"


def test_metric_labels_are_bounded() -> None:
    # Never one series per tenant, connection, record or event.
    unbounded = {"tenant", "tenant_id", "connection", "connection_id", "entity_id", "event_id"}
    family: Metric
    for family in REGISTRY.collect():
        if not family.name.startswith("crmsync_"):
            continue
        for sample in family.samples:
            assert not unbounded & set(sample.labels), f"{family.name}: {sample.labels}"
    for module in METRIC_MODULES:
        for value in vars(module).values():
            labels = getattr(value, "_labelnames", ())
            assert not unbounded & set(labels), f"{module.__name__}: {labels}"


# Scaled out with `docker compose up --scale`: every replica found by its name in DNS.
SCALED_SERVICES = {"processor", "outbound"}


def test_prometheus_scrapes_every_service_at_its_default_port() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for service, port in SERVICE_PORTS.items():
        job = jobs[f"crmsync-{service}"]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        if service in SCALED_SERVICES:
            (found,) = job["dns_sd_configs"]
            assert found == {"names": [service], "type": "A", "port": port}
            assert job["relabel_configs"] == [{"target_label": "service", "replacement": service}]
            continue
        (static,) = job["static_configs"]
        assert static["targets"] == [f"{service}:{port}"]
        assert static["labels"]["service"] == service


def test_every_exported_metric_is_listed_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Observability", 1)[1].split("\n## ", 1)[0]
    names = {f.name for f in REGISTRY.collect() if f.name.startswith("crmsync_")}
    missing = {n for n in names if n not in section}
    assert missing == set(), "metrics the README's Observability section does not list"


# --- Grafana -------------------------------------------------------------------------------


def _builder() -> Any:
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", GRAFANA / "build_dashboards.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses resolve their annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_dashboard_json_is_what_the_builder_writes() -> None:
    builder = _builder()
    assert set(builder.DASHBOARDS) == {p.name for p in DASHBOARD_FILES}
    for name, build in builder.DASHBOARDS.items():
        on_disk = (GRAFANA / "dashboards" / name).read_text()
        assert on_disk == builder.render(build), (
            f"{name} is stale: run .venv/bin/python infra/grafana/build_dashboards.py"
        )


def test_the_required_dashboards_exist() -> None:
    titles = {board["title"] for board in dashboards().values()}
    for title in ("Overview", "Ingest", "Processor", "Outbound"):
        assert f"crmsync / {title}" in titles
    overview = " ".join(
        t["expr"] for p in dashboards()["overview.json"]["panels"] for t in p["targets"]
    )
    for shown in ("events", "error_ratio", "received_to_committed", "consumer_lag", "dead"):
        assert shown in overview, shown


def test_every_panel_has_a_title_unit_description_and_a_query() -> None:
    for where, panel in panels():
        assert panel.get("title"), where
        assert len(panel.get("description", "")) >= 20, f"{where} has no description"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where} has no unit"
        assert panel["targets"], f"{where} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), where
            assert target["datasource"]["uid"] == panel["datasource"]["uid"], where


def test_dashboards_have_unique_uids_and_panel_ids_on_the_grid() -> None:
    boards = dashboards().values()
    uids = [b["uid"] for b in boards]
    assert len(uids) == len(set(uids))
    for board in boards:
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]
        for p in board["panels"]:
            grid = p["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (board["uid"], p["title"])


def test_dashboards_use_the_provisioned_datasource() -> None:
    provisioned = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = provisioned["datasources"]
    for where, panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, where


# --- docker-compose ------------------------------------------------------------------------


def test_compose_mounts_prometheus_and_grafana_files_where_they_are_read() -> None:
    compose = load_yaml(ROOT / "docker-compose.yml")["services"]
    prometheus_mounts = [v.split(":")[:2] for v in compose["prometheus"]["volumes"]]
    assert ["./infra/prometheus", "/etc/prometheus"] in prometheus_mounts

    grafana = compose["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./infra/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "crmsync.yml")["providers"][0]
    assert mounts["./infra/grafana/dashboards"] == provider["options"]["path"]

    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (GRAFANA / "dashboards" / Path(home).name).exists(), home

    source = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    assert "prometheus" in compose

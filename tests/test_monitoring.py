"""The monitoring shipped in k8s/components/: alerts checked and unit-tested by promtool, every
metric a rule or a dashboard panel names exported by the code, and the optional components
(monitoring, audit-pvc) building on the base into objects the CLI and the cluster accept.

kubernetes-validate has no schemas for the Prometheus Operator's CRDs (ServiceMonitor,
PrometheusRule), so those are checked here by shape: what a rule says goes through
promtool, what a ServiceMonitor selects is compared with the Service it should find.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from cleaner.planning.model import RepositoryReport
from cleaner.receiver.metrics import Metrics
from cleaner.settings import parse_args
from cleaner.sweep_metrics import SweepMetrics
from tests.support.deploy import COMPONENTS, K8S, overlay
from tests.support.servers import debian_binary

MONITORING = COMPONENTS / "monitoring"
RULES = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "dashboard.json"
ALERT_TESTS = Path(__file__).parent / "data" / "prometheus" / "alerts-test.yaml"
PROMTOOL_PACKAGE = "prometheus"  # Debian's package that ships promtool
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Series Prometheus makes itself for every target (docs: "Jobs and instances").
PROMETHEUS_OWN = {"up"}
# Labels the scrape adds (target labels, the Pushgateway's grouping key), not the code.
TARGET_LABELS = {"job", "instance", "pod", "namespace", "shard"}


def promtool() -> str:
    return debian_binary("promtool", PROMTOOL_PACKAGE)


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


@cache
def rule() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return loaded


def rule_file(directory: Path, spec: dict[str, Any] | None = None) -> Path:
    """The PrometheusRule's spec is a Prometheus rule file: promtool reads it as one."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(spec or rule()["spec"]), encoding="utf-8")
    return path


def alert_rules() -> Iterator[dict[str, Any]]:
    for group in rule()["spec"]["groups"]:
        yield from group["rules"]


@cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def panel_queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


# --- the alerts ------------------------------------------------------------------------------


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    result = run(promtool(), "check", "rules", str(rule_file(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def unit_test(
    directory: Path, spec: dict[str, Any] | None = None, first: int | None = None
) -> subprocess.CompletedProcess[str]:
    """promtool's unit tests (the `first` few only, if given) against the rules."""
    rule_file(directory, spec)
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    tests["tests"] = tests["tests"][:first]
    (directory / ALERT_TESTS.name).write_text(yaml.safe_dump(tests), encoding="utf-8")
    return run(promtool(), "test", "rules", ALERT_TESTS.name, cwd=directory)


def test_promtool_unit_tests_pass_for_every_alert(tmp_path: Path) -> None:
    result = unit_test(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text(encoding="utf-8")))
    assert tested == {r["alert"] for r in alert_rules()}, "an alert without a promtool test"


def test_the_no_successful_sweep_alert_waits_four_days_and_the_unit_test_would_notice(
    tmp_path: Path,
) -> None:
    """The schedule is every third day; an alert at 3 days would page after every run that
    is a little late. The unit test must fail for it, and for one that never fires."""
    (stale,) = (r for r in alert_rules() if r["alert"] == "EcrCleanerNoSuccessfulSweep")
    assert "> 4 * 24 * 3600" in stale["expr"]
    for wrong in ("> 3 * 24 * 3600", "> 5 * 24 * 3600"):
        spec = json.loads(json.dumps(rule()["spec"]))
        for group in spec["groups"]:
            for candidate in group["rules"]:
                if candidate.get("alert") == "EcrCleanerNoSuccessfulSweep":
                    candidate["expr"] = candidate["expr"].replace("> 4 * 24 * 3600", wrong)
        mutant = tmp_path / wrong.split()[1]
        mutant.mkdir()
        result = unit_test(mutant, spec, first=1)  # one success, then silence
        assert result.returncode != 0, f"promtool's tests pass with the alert at {wrong}"
        assert "EcrCleanerNoSuccessfulSweep" in result.stdout + result.stderr


def test_every_alert_says_what_is_wrong_and_how_bad() -> None:
    for alert in alert_rules():
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert {"summary", "description"} <= alert["annotations"].keys(), alert["alert"]


# --- metric names: every one a rule or a panel names is exported by the code ------------------

PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_selectors(expr: str) -> Iterator[tuple[str, str]]:
    """(metric name, its label matchers) for every series selector in a PromQL expression."""
    text = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    for match in re.finditer(r"(?<![\w:$\"])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?", text):
        name, matchers = match.group(1), match.group(2) or ""
        if not matchers and text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if name.lower() in PROMQL_KEYWORDS or re.fullmatch(r"\d+\w*", name):
            continue
        yield name, matchers


def test_the_selector_parser_finds_names_not_functions() -> None:
    expr = (
        'sum by (le) (rate(a_bucket{x="1", y=~"b|c"}[$__rate_interval])) / ignoring(z) up'
        " > 4 * 24 * 3600 or absent(c_total) and time() - d"
    )
    assert [name for name, _ in metric_selectors(expr)] == ["a_bucket", "up", "c_total", "d"]


@cache
def exported() -> dict[str, dict[str, set[str]]]:
    """Series name -> label -> values seen, from the receiver's and the sweep's registries."""
    receiver = Metrics()
    for outcome in ("ok", "throttled", "error"):  # clients.aws's outcomes
        receiver.record_ecr_call("DescribeImages", outcome)
    sweep = SweepMetrics(dry_run=False)
    sweep.repository_done(RepositoryReport("app"))
    sweep.record_ecr_call("DescribeImages", "throttled")
    sweep.ok = True
    sweep.finish(1.0)  # a success: the last-success gauge exists only then
    found: dict[str, dict[str, set[str]]] = {}
    for registry in (receiver.registry, sweep.registry):
        for family in registry.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
            for suffix in suffixes.get(family.type, ("",)):
                found.setdefault(family.name + suffix, {})
            for sample in family.samples:
                labels = found.setdefault(sample.name, {})
                for key, value in sample.labels.items():
                    labels.setdefault(key, set()).add(value)
    return found


def named_queries() -> Iterator[tuple[str, str]]:
    for alert in alert_rules():
        yield f"alert {alert['alert']}", alert["expr"]
    for panel in panels():
        for target in panel["targets"]:
            yield f"panel {panel['title']!r}", target["expr"]


def test_every_metric_a_rule_or_a_panel_names_is_exported_with_those_labels() -> None:
    known = exported()
    for where, expr in named_queries():
        for name, matchers in metric_selectors(expr):
            if name in PROMETHEUS_OWN:
                continue
            assert name in known, f"{where}: {name} is not a metric the code exports"
            for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
                if label in TARGET_LABELS:
                    continue
                assert label in known[name], f"{where}: {name} has no label {label}"
                if op in ("=", "=~"):
                    wanted = set(value.split("|")) if op == "=~" else {value}
                    assert wanted <= known[name][label], f"{where}: {name}{{{label}}} {wanted}"


def test_the_metric_check_would_catch_a_missing_suffix() -> None:
    known = exported()
    assert "ecr_cleaner_prunes_total" in known and "ecr_cleaner_prunes" not in known
    assert "ecr_cleaner_push_to_pruned_seconds_bucket" in known
    assert "ecr_cleaner_sweep_last_success_timestamp_seconds" in known
    assert known["ecr_cleaner_repository_errors_total"]["cause"] >= {"in_use", "registry"}


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_shows_what_the_team_asks_about() -> None:
    queries = " ".join(panel_queries())
    for metric in (
        "ecr_cleaner_bytes_reclaimed_total",  # reclaimed bytes over time
        "ecr_cleaner_sweep_bytes_reclaimed",
        "ecr_cleaner_images_deleted_total",  # deletions over time
        "ecr_cleaner_sweep_images_deleted",
        "ecr_cleaner_prunes_total",  # prunes by result
        "ecr_cleaner_ecr_calls_total",  # ECR calls and throttling
        "ecr_cleaner_push_to_pruned_seconds_bucket",  # push-to-pruned latency
        "ecr_cleaner_queue_depth",  # queue depth
        "ecr_cleaner_sweep_last_success_timestamp_seconds",
    ):
        assert metric in queries, f"no panel shows {metric}"
    assert "sum by (result)" in queries and 'outcome!="ok"' in queries


def test_the_dashboard_is_well_formed_grafana_json() -> None:
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    (variable,) = board["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource", "datasource", "prometheus",
    )  # fmt: skip
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and panel["title"], panel["id"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert [t["refId"] for t in panel["targets"]] == [
            chr(65 + i) for i in range(len(panel["targets"]))
        ]


def test_promtool_parses_every_panel_query(tmp_path: Path) -> None:
    """As recording rules, so promtool's PromQL parser reads each panel's query."""
    grafana = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}
    rules = []
    for i, expr in enumerate(panel_queries()):
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = rule_file(tmp_path, {"groups": [{"name": "dashboard", "rules": rules}]})
    result = run(promtool(), "check", "rules", "--lint=none", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# --- the components build on the base -----------------------------------------------------------


def component_files(name: str) -> list[dict[str, Any]]:
    found = []
    kustomization = yaml.safe_load((COMPONENTS / name / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    for resource in kustomization.get("resources", []):
        found += [d for d in yaml.safe_load_all((COMPONENTS / name / resource).read_text()) if d]
    return found


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def sweep_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (cron,) = by_kind(objects, "CronJob")
    return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return overlay(tmp_path_factory.mktemp("overlay"), "monitoring", "audit-pvc")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_both_components_build_on_the_base_into_valid_objects(
    built: list[dict[str, Any]], version: str
) -> None:
    for doc in built:
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
            continue
        kubernetes_validate.validate(doc, version, strict=True)
    assert {doc["metadata"].get("namespace") for doc in built if doc["kind"] in CRD_KINDS} == {
        "ecr-cleaner"
    }


def test_the_service_monitor_scrapes_the_receivers_metrics_port(
    built: list[dict[str, Any]],
) -> None:
    (monitor,) = by_kind(built, "ServiceMonitor")
    (service,) = by_kind(built, "Service")
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The alerts name the receiver's job: Prometheus Operator makes it the Service's name.
    assert 'job="ecr-cleaner-receiver"' in RULES.read_text(encoding="utf-8")
    assert service["metadata"]["name"] == "ecr-cleaner-receiver"


def test_the_prometheus_rule_is_the_file_promtool_checked(built: list[dict[str, Any]]) -> None:
    (rules,) = by_kind(built, "PrometheusRule")
    assert rules["spec"] == rule()["spec"]
    for group in rules["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
        for alert in group["rules"]:
            assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}


def test_the_dashboard_config_map_is_the_json_and_the_sidecar_finds_it(
    built: list[dict[str, Any]],
) -> None:
    (config,) = (c for c in by_kind(built, "ConfigMap") if "dashboard.json" in c.get("data", {}))
    assert config["metadata"]["name"] == "ecr-cleaner-dashboard", "a fixed name, no hash"
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config["data"]["dashboard.json"]) == dashboard()


def test_the_sweep_pushes_where_its_network_policy_lets_it(built: list[dict[str, Any]]) -> None:
    container = sweep_container(built)
    env = {e["name"]: e["value"] for e in container["env"]}
    args = [a.replace("$(JOB_COMPLETION_INDEX)", "0") for a in container["args"]]
    run_settings = parse_args(args, environ={**env, "JOB_COMPLETION_INDEX": "0"}).run
    assert run_settings is not None and run_settings.metrics is not None
    pushgateway = run_settings.metrics.pushgateway
    assert pushgateway is not None
    port = int(pushgateway.rsplit(":", 1)[1])
    (policy,) = (
        p for p in by_kind(built, "NetworkPolicy") if "pushgateway" in p["metadata"]["name"]
    )
    (cron,) = by_kind(built, "CronJob")
    pod_labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    opened = [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]
    assert opened == [port]


def test_the_sweep_writes_its_audit_log_per_shard_on_the_claim(built: list[dict[str, Any]]) -> None:
    container = sweep_container(built)
    assert container["args"][1] == "--dry-run", "the overlay that goes live removes args[1]"
    for index in ("0", "1"):
        args = [a.replace("$(JOB_COMPLETION_INDEX)", index) for a in container["args"]]
        run_settings = parse_args(args, environ={"JOB_COMPLETION_INDEX": index}).run
        assert run_settings is not None and run_settings.audit_log is not None
        assert run_settings.audit_log.endswith(f"/shard-{index}.jsonl")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert run_settings.audit_log.startswith(mounts["audit"] + "/")
    (cron,) = by_kind(built, "CronJob")
    volumes = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    (claim,) = (v["persistentVolumeClaim"]["claimName"] for v in volumes if v["name"] == "audit")
    (pvc,) = by_kind(built, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "the shards write at once"


def test_each_component_adds_its_objects_and_changes_only_the_sweep(tmp_path: Path) -> None:
    for name in ("none", "monitoring", "audit-pvc"):
        (tmp_path / name).mkdir()
    base = {key(d): d for d in overlay(tmp_path / "none")}
    for name in ("monitoring", "audit-pvc"):
        kustomization = yaml.safe_load((COMPONENTS / name / "kustomization.yaml").read_text())
        generated = {("ConfigMap", g["name"]) for g in kustomization.get("configMapGenerator", [])}
        added = {key(d) for d in component_files(name)} | generated
        with_it = {key(d): d for d in overlay(tmp_path / name, name)}
        assert set(with_it) == set(base) | added, name
        changed = {k for k in base if base[k] != with_it[k]}
        assert changed == {("CronJob", "ecr-cleaner-sweep")}, name


def key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def test_the_base_names_the_components_it_can_take() -> None:
    text = (K8S / "kustomization.yaml").read_text(encoding="utf-8")
    for name in ("monitoring", "audit-pvc"):
        assert f"components/{name}" in text

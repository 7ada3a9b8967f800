"""The deployment (Dockerfile, k8s/, k8s/aws/) checked against the code it deploys.

Each check ties a value in a manifest to where the code defines it: flags to the CLI parser,
probe paths to the receiver's routes, IAM actions to the ECR calls in cleaner/, RBAC to the
kinds the in-use lookup lists, the ConfigMap to the policy parser. The external linters run
here too (kubernetes-validate --strict, hadolint, cfn-lint), so `make test` fails on a
broken manifest; scripts/lint-deploy.sh runs the same linters on their own.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from cleaner import __version__
from cleaner.errors import ConfigError
from cleaner.in_use.workloads import KINDS
from cleaner.planning.documents import decode
from cleaner.planning.policy_file import parse_policy_file
from cleaner.receiver.auth import API_KEY_HEADER
from cleaner.receiver.http import PUBLIC_PATHS
from cleaner.receiver.openapi import openapi_document
from cleaner.receiver.runner import HANDLER_SHUTDOWN_S
from cleaner.receiver.sqs import RECEIVE_WAIT_S, ConsumerSettings, queue_endpoint
from cleaner.settings import Settings, build_parser, parse_args
from tests.support.deploy import kustomize

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
IAM_POLICY = K8S / "aws" / "iam-policy.json"
EVENTBRIDGE = K8S / "aws" / "eventbridge.yaml"
MEMBER_ROLE = K8S / "aws" / "member-role.yaml"
QUEUE_STACK = K8S / "aws" / "eventbridge-sqs.yaml"
QUEUE_COMPONENT = K8S / "components" / "sqs-intake"

# The oldest Kubernetes the manifests promise to work on, and the newest schemas bundled with
# kubernetes-validate. CronJob.timeZone (1.27) and Indexed Jobs (1.24) set the real floor.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SEED_SCHEDULE = "10 6 */3 * *"  # the CronJob this project replaces: every third day, 06:10
WORKLOAD_KINDS = ("Deployment", "CronJob")

# Operations whose IAM permission is not `<service>:<Operation>`. ListImageReferrers has no
# action of its own: its API reference says the caller "must have the ecr:BatchGetImage
# permission", and the service authorization reference lists no ecr:ListImageReferrers.
PERMISSION_OF = {"ecr:ListImageReferrers": "ecr:BatchGetImage"}
CLIENT_FACTORY = "cleaner/clients/aws.py"
OPENS_CLIENT = re.compile(r"""open_(?:client|apis)\(\s*["']([a-z0-9-]+)["']""")
# `api.call("Op"`, `api.call_optional("Op"`, `api.pages("Op"` and `collect(api, "Op"`.
AWS_CALL = re.compile(
    r"""(?:\.(?:call|call_optional|pages)\(|\bcollect\(\s*[\w.]+,)\s*["']([A-Z][A-Za-z]+)["']"""
)
CALL_SITE = re.compile(r"(?:\.(?:call|call_optional|pages)\(|\bcollect\(\s*[\w.]+,)\s*([^,)]*)")
KUBE_API_GROUP = {"CoreV1Api": "", "AppsV1Api": "apps", "BatchV1Api": "batch"}


# --- loading ---------------------------------------------------------------------------------


@cache
def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text("utf-8"))
    return loaded


def manifest_files() -> list[Path]:
    return [K8S / name for name in kustomization()["resources"]]


@cache
def documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file name, object) for every object in the kustomization's resources."""
    found = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                found.append((path.name, doc))
    return tuple(found)


def objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    found = objects(kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]  # type: ignore[no-any-return]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container of every workload, init containers too."""
    for kind in WORKLOAD_KINDS:
        for workload in objects(kind):
            spec = pod_spec(workload)
            for container in spec.get("initContainers", []) + spec["containers"]:
                yield workload, container


def the_container(kind: str) -> dict[str, Any]:
    found = pod_spec(one(kind))["containers"]
    assert len(found) == 1, f"the {kind} should run one container"
    return found[0]  # type: ignore[no-any-return]


def generated_policy_file() -> Path:
    (generator,) = kustomization()["configMapGenerator"]
    (name,) = generator["files"]
    return K8S / str(name)


def tool(name: str) -> str:
    """A linter from the venv this test runs in (dev dependencies), else from PATH."""
    venv_bin = Path(sys.executable).parent
    found = shutil.which(name, path=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{name} is not installed: it is a dev dependency (requirements-dev.lock)")
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !GetAtt, !Sub ...) as {"Fn": value}."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {suffix: value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


@cache
def template(path: Path = EVENTBRIDGE) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - a SafeLoader
    return loaded


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    return build_parser()


def subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[name]  # type: ignore[no-any-return]


# What the pods' environment gives the CLI: an Indexed Job's index, and no CLEANER_* variable,
# so that defaults are the code's own.
POD_ENV = {"JOB_COMPLETION_INDEX": "0"}


def parse(args: list[str]) -> Settings:
    try:
        return parse_args(args, environ=POD_ENV)
    except SystemExit:
        pytest.fail(f"the CLI rejects the manifest's args {args} (argparse error above)")
    except ConfigError as error:
        pytest.fail(f"the CLI rejects the manifest's args {args}: {error}")


# --- the manifests are valid Kubernetes --------------------------------------------------------


def test_every_manifest_is_in_the_kustomization() -> None:
    on_disk = {p.name for p in K8S.glob("*.yaml")} | {p.name for p in K8S.glob("*.yml")}
    listed = set(kustomization()["resources"])
    not_manifests = {"kustomization.yaml", generated_policy_file().name}
    assert on_disk - not_manifests == listed, "a manifest in k8s/ that kubectl apply -k skips"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_strictly(version: str) -> None:
    for name, doc in documents():
        where = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.absolute_path)
            pytest.fail(f"{where} is invalid for Kubernetes {version} at {path}: {error.message}")


def the_container_of(built: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (workload,) = (d for d in built if d["kind"] == kind)
    return pod_spec(workload)["containers"][0]  # type: ignore[no-any-return]


def test_the_kustomization_builds_into_valid_objects() -> None:
    built = kustomize(K8S)
    for doc in built:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
    namespace = kustomization()["namespace"]
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for doc in built:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
    (config_map,) = (d for d in built if d["kind"] == "ConfigMap")
    images = set()
    for doc in built:
        if doc["kind"] in WORKLOAD_KINDS:
            spec = pod_spec(doc)
            images |= {c["image"] for c in spec["containers"]}
            policy_volumes = [v for v in spec["volumes"] if "configMap" in v]
            assert [v["configMap"]["name"] for v in policy_volumes] == [
                config_map["metadata"]["name"]
            ], "the workload does not mount the generated policy ConfigMap"
    (image,) = kustomization()["images"]
    assert images == {f"{image['newName']}:{image['newTag']}"}


def test_the_image_can_be_pinned_by_digest_and_is_always_pulled(tmp_path: Path) -> None:
    """The kustomization shows `digest:`; an overlay that sets it runs name@digest."""
    assert "# digest: sha256:" in (K8S / "kustomization.yaml").read_text(encoding="utf-8")
    for _, container in containers():
        assert container["imagePullPolicy"] == "Always"
    base = os.path.relpath(K8S, tmp_path)
    digest = "sha256:" + "ab" * 32
    (image,) = kustomization()["images"]
    # An overlay matches the name the base already rendered.
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{base}]\nimages:\n  - name: {image['newName']}\n    digest: {digest}\n"
    )
    built = kustomize(tmp_path)
    for kind in WORKLOAD_KINDS:
        assert the_container_of(built, kind)["image"] == f"{image['newName']}@{digest}"


def test_an_overlay_switches_the_sweep_live_by_removing_only_dry_run(tmp_path: Path) -> None:
    """The overlay README "Deploy" shows for running this base without --dry-run."""
    base = os.path.relpath(K8S, tmp_path)
    arg = "/spec/jobTemplate/spec/template/spec/containers/0/args/1"
    (tmp_path / "kustomization.yaml").write_text(
        f"""
resources: [{base}]
patches:
  - target: {{kind: CronJob, name: {one("CronJob")["metadata"]["name"]}}}
    patch: |-
      - {{op: test, path: {arg}, value: --dry-run}}
      - {{op: remove, path: {arg}}}
""",
        encoding="utf-8",
    )
    base_objects, live_objects = kustomize(K8S), kustomize(tmp_path)
    base_args = the_container_of(base_objects, "CronJob")["args"]
    live_args = the_container_of(live_objects, "CronJob")["args"]
    assert [a for a in base_args if a != "--dry-run"] == live_args
    assert [d for d in base_objects if d["kind"] != "CronJob"] == [
        d for d in live_objects if d["kind"] != "CronJob"
    ]


# --- one image, and flags the CLI has ----------------------------------------------------------


def test_the_receiver_and_the_sweep_run_one_image_named_in_one_place() -> None:
    images = {container["image"] for _, container in containers()}
    (image,) = kustomization()["images"]
    assert images == {image["name"]}, "every container names the kustomization's image"
    # The flags below are checked against this checkout's CLI: deploy this checkout's version.
    assert image["newTag"] == __version__


def test_every_flag_in_the_manifests_exists_in_the_cli(parser: argparse.ArgumentParser) -> None:
    for workload, container in containers():
        args = container["args"]
        assert args[0] in ("serve", "sweep"), f"{workload['kind']} runs {args[0]!r}"
        options = subcommand(parser, args[0])._option_string_actions
        # Exact names: argparse would also accept an abbreviation such as --pol.
        flags = [a.split("=", 1)[0] for a in args[1:] if a.startswith("--")]
        unknown = [flag for flag in flags if flag not in options]
        assert not unknown, f"{workload['kind']}: `ecr-cleaner {args[0]}` has no {unknown}"
        parse(args)
        assert "command" not in container, "the image's ENTRYPOINT is ecr-cleaner; set args only"


def test_the_receiver_listens_where_the_probes_and_the_service_look() -> None:
    container = the_container("Deployment")
    serve = parse(container["args"]).serve
    assert serve is not None
    (port,) = container["ports"]
    assert port["containerPort"] == serve.port
    paths = openapi_document()["paths"]
    probes = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
    for probe, path in probes.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path and "get" in paths[path], f"{probe} on {get['path']}"
        # The kubelet sends no token: a probe on an authenticated path would always fail.
        assert get["path"] in PUBLIC_PATHS
        assert get["port"] in (port["name"], port["containerPort"])
    (service_port,) = one("Service")["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])
    ingress = next(p for p in objects("NetworkPolicy") if "ingress" in p["spec"])
    opened = [p["port"] for rule in ingress["spec"]["ingress"] for p in rule["ports"]]
    assert opened == [port["name"]] or opened == [port["containerPort"]]


def test_termination_grace_outlasts_the_receivers_drain() -> None:
    serve = parse(the_container("Deployment")["args"]).serve
    assert serve is not None
    grace = pod_spec(one("Deployment"))["terminationGracePeriodSeconds"]
    assert grace > serve.drain_timeout_s + HANDLER_SHUTDOWN_S


# --- the sweep: the seed's schedule, sharded, dry run by default -------------------------------


def test_the_sweep_keeps_the_seed_schedule_and_policies() -> None:
    cron = one("CronJob")
    assert cron["spec"]["schedule"] == SEED_SCHEDULE
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod_spec(cron)["restartPolicy"] == "OnFailure"


def test_the_sweep_is_an_indexed_job_with_one_shard_per_pod() -> None:
    job = one("CronJob")["spec"]["jobTemplate"]["spec"]
    args = the_container("CronJob")["args"]
    run = parse(args).run
    assert job["completionMode"] == "Indexed"
    assert run is not None and run.shard is not None
    assert job["completions"] == job["parallelism"] == run.shard.count, (
        "completions, parallelism and --shards must be the same N"
    )
    assert "--shard" not in args, "--shard I/N pins one shard; the Indexed Job sets the index"


def test_the_sweep_ships_in_dry_run() -> None:
    args = the_container("CronJob")["args"]
    assert args[1] == "--dry-run", "README's overlay removes args[1]; keep --dry-run there"
    run = parse(args).run
    assert run is not None and run.apply is False


def test_the_sweep_logs_json_so_each_deletion_keeps_its_audit_object() -> None:
    settings = parse(the_container("CronJob")["args"])
    assert settings.log.format == "json"


# --- policy, token, RBAC -----------------------------------------------------------------------


def test_the_policy_configmap_is_a_valid_policy_file_where_the_pods_read_it() -> None:
    path = generated_policy_file()
    policy = parse_policy_file(decode(path.read_text(encoding="utf-8"), path.name), path.name)
    # The Role grants Leases in the kustomization's namespace only.
    assert policy.coordination.namespace == kustomization()["namespace"]
    for workload, container in containers():
        engine = parse(container["args"]).engine
        assert engine is not None
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volume = next(v for v in pod_spec(workload)["volumes"] if "configMap" in v)
        assert engine.policy_path == f"{mounts[volume['name']]}/{path.name}", workload["kind"]


def test_the_token_comes_from_a_secret_the_operator_creates() -> None:
    assert not objects("Secret"), "never commit the token; the operator creates the Secret"
    deployment = one("Deployment")
    container = the_container("Deployment")
    serve = parse(container["args"]).serve
    assert serve is not None
    (volume,) = (v for v in pod_spec(deployment)["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "ecr-cleaner-token"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    # `kubectl create secret generic ecr-cleaner-token --from-literal=token=...` makes key "token".
    assert serve.token_file == f"{mounts[volume['name']]}/token"
    assert not any(e.get("name") == "CLEANER_TOKEN" for e in container.get("env", []))


def test_rbac_grants_exactly_what_the_in_use_lookup_and_leases_call() -> None:
    wanted = {(KUBE_API_GROUP[kind.api], kind.name.lower() + "s") for kind in KINDS}
    granted = set()
    for rule in one("ClusterRole")["rules"]:
        assert sorted(rule["verbs"]) == ["list", "watch"], "read-only, cluster-wide"
        granted |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == wanted
    (leases,) = one("Role")["rules"]
    assert leases["apiGroups"] == ["coordination.k8s.io"] and leases["resources"] == ["leases"]
    assert sorted(leases["verbs"]) == ["create", "get", "update"]  # lease.py: read/create/replace
    account = one("ServiceAccount")["metadata"]["name"]
    for binding in objects("ClusterRoleBinding") + objects("RoleBinding"):
        assert [s["name"] for s in binding["subjects"]] == [account]
    for kind in WORKLOAD_KINDS:
        assert pod_spec(one(kind))["serviceAccountName"] == account


def test_selectors_find_the_pods() -> None:
    receiver = pod_labels(one("Deployment"))
    sweep = pod_labels(one("CronJob"))
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"].items() <= receiver.items()
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= receiver.items()
    assert one("Service")["spec"]["selector"].items() <= receiver.items()
    for policy in objects("NetworkPolicy"):
        selector = policy["spec"]["podSelector"]["matchLabels"].items()
        assert selector <= receiver.items(), policy["metadata"]["name"]
        if "Egress" in policy["spec"]["policyTypes"]:
            assert selector <= sweep.items(), "the sweep needs the same egress as the receiver"


# --- nobody runs as root -----------------------------------------------------------------------


def dockerfile_user() -> str:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    return users[-1]  # type: ignore[no-any-return]


def test_no_container_runs_as_root_or_writes_its_root_filesystem() -> None:
    image_uid = int(dockerfile_user().split(":")[0])
    for workload, container in containers():
        where = f"{workload['kind']}/{container['name']}"
        pod = pod_spec(workload)
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), where
        context = container.get("securityContext", {})
        assert context.get("runAsNonRoot") is True, where
        assert isinstance(context.get("runAsUser"), int) and context["runAsUser"] > 0, where
        assert context["runAsUser"] == image_uid, f"{where}: runAsUser differs from the image"
        assert context.get("readOnlyRootFilesystem") is True, where
        assert context.get("allowPrivilegeEscalation") is False, where
        assert not context.get("privileged"), where
        assert context.get("capabilities") == {"drop": ["ALL"]}, where
        assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) >= {"cpu", "memory"}, f"{where} {bound}"


# --- Dockerfile --------------------------------------------------------------------------------


def test_the_image_is_the_tested_python_and_starts_the_cli_as_a_numeric_user() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    base = re.search(r"^ARG PYTHON_IMAGE=python:(\d+)\.(\d+)\.\d+-slim\S*$", text, re.MULTILINE)
    assert base, "the base is a slim python image pinned to a patch release"
    assert (int(base[1]), int(base[2])) == sys.version_info[:2], "not the Python tests run on"
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2, "multi-stage"
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", dockerfile_user()), "numeric, non-root USER"
    assert 'ENTRYPOINT ["ecr-cleaner"]' in text
    assert "--requirement requirements.lock" in text
    installs = re.findall(r"pip install[^&\n]*", text.replace("\\\n", " "))
    assert installs and all("--no-cache-dir" in i for i in installs), "no pip cache in a layer"


def test_hadolint_finds_nothing_at_warning_level() -> None:
    result = run(tool("hadolint"), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    sources = {s.rstrip("/") for line in copied for s in line.split()}
    assert "*" in ignore, "an allow-list: everything is left out unless named"
    assert sources <= allowed, f"COPY of {sources - allowed}, which .dockerignore leaves out"


# --- AWS: IAM policy and the EventBridge stack -------------------------------------------------


def client_sources() -> list[Path]:
    """cleaner/ without the emulator, which serves ECR and never calls it."""
    return [p for p in (ROOT / "cleaner").rglob("*.py") if "emulator" not in p.parts]


def aws_operations_called() -> set[str]:
    """`service:Operation` for every call the callers of the client factory make: each
    module that opens a client for a service calls that service's operations by name."""
    found = set()
    for path in client_sources():
        text = path.read_text(encoding="utf-8")
        for service in set(OPENS_CLIENT.findall(text)):
            found |= {f"{service}:{op}" for op in AWS_CALL.findall(text)}
    return found


def test_one_module_makes_aws_clients_and_every_call_names_its_operation() -> None:
    makers = [p for p in client_sources() if "create_client(" in p.read_text(encoding="utf-8")]
    assert [p.relative_to(ROOT).as_posix() for p in makers] == [CLIENT_FACTORY]
    for path in client_sources():
        text = path.read_text(encoding="utf-8")
        if not OPENS_CLIENT.search(text):
            continue
        sites = CALL_SITE.findall(text)
        assert sites and all(re.fullmatch(r'"[A-Z][A-Za-z]+"', s) for s in sites), (path, sites)
    assert "ecr:BatchDeleteImage" in aws_operations_called()


def policy_statements() -> list[dict[str, Any]]:
    return json.loads(IAM_POLICY.read_text(encoding="utf-8"))["Statement"]  # type: ignore[no-any-return]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


# Where each service's actions may apply: ECR's on repositories of one named region, SQS's on
# a queue; other services' read calls (List*, Describe*, Get*) mostly have no resource-level
# permissions, so "*" is the only resource they take, and only reads may use it.
SCOPED_RESOURCE = {
    "ecr": r"arn:aws:ecr:[a-z0-9-]+:\d{12}:repository/.+",
    "sqs": r"arn:aws:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+",
    # The member accounts' roles, each named: never every role of an account.
    "sts": r"arn:aws:iam::\d{12}:role/ecr-cleaner-member",
}
READ_ONLY = re.compile(r"[a-z0-9-]+:(List|Describe|Get|BatchGet)[A-Za-z]*")


def test_the_iam_policy_allows_exactly_the_aws_calls_the_code_makes() -> None:
    operations = aws_operations_called()
    assert {"ecr:DescribeRepositories", "ecr:DescribeImages", "ecr:BatchDeleteImage"} <= operations
    needed = {PERMISSION_OF.get(op, op) for op in operations}
    allowed = set()
    for statement in policy_statements():
        assert statement["Effect"] == "Allow" and "NotAction" not in statement
        actions = as_list(statement["Action"])
        assert not any("*" in action for action in actions), "no wildcard actions"
        services = {action.split(":")[0] for action in actions}
        assert len(services) == 1, f"one service per statement: {statement.get('Sid')}"
        (service,) = services
        for resource in as_list(statement["Resource"]):
            if service in SCOPED_RESOURCE:
                # One region, named: the cleaner works in one, so it may act in one.
                assert re.fullmatch(SCOPED_RESOURCE[service], resource), resource
            else:
                assert resource == "*" and all(READ_ONLY.fullmatch(a) for a in actions), (
                    f"{statement.get('Sid')}: only reads may use Resource *"
                )
        allowed |= set(actions)
    assert allowed == needed, f"missing {needed - allowed}, unused {allowed - needed}"


def test_every_iam_action_is_a_real_one() -> None:
    """Against the IAM action list cfn-lint ships (from the service authorization reference)."""
    package = importlib.util.find_spec("cfnlint")  # located, not imported: that takes seconds
    assert package is not None and package.origin is not None, "cfn-lint is a dev dependency"
    spec = Path(package.origin).parent / "data" / "AdditionalSpecs" / "Policies.json"
    known = json.loads(spec.read_text(encoding="utf-8"))

    def exists(action: str) -> bool:
        service, name = action.split(":")
        return name.lower() in known[service]["Actions"]

    for statement in policy_statements():
        for action in as_list(statement["Action"]):
            assert exists(action), f"{action} is not an IAM action"
    for operation, permission in PERMISSION_OF.items():
        # If AWS ever adds the action, the policy should name it instead.
        assert not exists(operation), f"{operation} exists now; use it"
        assert exists(permission)


def test_the_eventbridge_stack_sends_successful_pushes_to_the_receiver() -> None:
    resources = template()["Resources"]
    rule = next(r for r in resources.values() if r["Type"] == "AWS::Events::Rule")["Properties"]
    assert rule["EventPattern"] == PUSH_PATTERN
    (target,) = rule["Targets"]
    assert set(target["RetryPolicy"]) == {"MaximumRetryAttempts", "MaximumEventAgeInSeconds"}
    assert "InputTransformer" not in target, "the receiver parses the event as EventBridge sends it"
    queue = resources[target["DeadLetterConfig"]["Arn"]["GetAtt"].split(".")[0]]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert not queue.get("Properties", {}).get("FifoQueue"), "EventBridge needs a standard queue"
    destination = next(r for r in resources.values() if r["Type"] == "AWS::Events::ApiDestination")
    endpoint = destination["Properties"]["InvocationEndpoint"]["Sub"]
    path = endpoint.removeprefix("${ReceiverUrl}")
    assert destination["Properties"]["HttpMethod"].lower() in openapi_document()["paths"][path]
    connection = next(r for r in resources.values() if r["Type"] == "AWS::Events::Connection")
    auth = connection["Properties"]["AuthParameters"]["ApiKeyAuthParameters"]
    assert auth["ApiKeyName"] == API_KEY_HEADER
    assert template()["Parameters"]["ApiKey"]["NoEcho"] is True


PUSH_PATTERN = {
    "source": ["aws.ecr"],
    "detail-type": ["ECR Image Action"],
    "detail": {"action-type": ["PUSH"], "result": ["SUCCESS"]},
}


def only_the_rule_may_send(policy: dict[str, Any], queue: str, rule: str) -> None:
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert policy["Properties"]["Queues"] == [{"Ref": queue}]
    assert statement["Effect"] == "Allow" and statement["Action"] == "sqs:SendMessage"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Resource"] == {"GetAtt": f"{queue}.Arn"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"GetAtt": f"{rule}.Arn"}}}


def test_the_queue_stack_sends_pushes_to_a_queue_only_its_rule_may_write() -> None:
    stack = template(QUEUE_STACK)
    resources = stack["Resources"]
    kinds = {r["Type"] for r in resources.values()}
    assert not kinds & {"AWS::Events::ApiDestination", "AWS::Events::Connection"}
    assert "AWS::IAM::Role" not in kinds, "EventBridge sends to SQS under the queue policy"
    (rule_name,) = (n for n, r in resources.items() if r["Type"] == "AWS::Events::Rule")
    rule = resources[rule_name]["Properties"]
    assert rule["EventPattern"] == PUSH_PATTERN
    (target,) = rule["Targets"]
    queue_name = target["Arn"]["GetAtt"].removesuffix(".Arn")
    assert "RoleArn" not in target and "InputTransformer" not in target
    queue = resources[queue_name]["Properties"]
    assert not queue.get("FifoQueue"), "a standard queue"
    # The queue's own wait is the consumer's (a receive without WaitTimeSeconds long-polls too).
    assert queue["VisibilityTimeout"] > 0
    assert queue["ReceiveMessageWaitTimeSeconds"] == RECEIVE_WAIT_S
    dead_letters = queue["RedrivePolicy"]["deadLetterTargetArn"]["GetAtt"].removesuffix(".Arn")
    assert target["DeadLetterConfig"]["Arn"] == {"GetAtt": f"{dead_letters}.Arn"}
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert stack["Parameters"]["MaxReceiveCount"]["MinValue"] >= 2
    policies = {
        p["Properties"]["Queues"][0]["Ref"]: p
        for p in resources.values()
        if p["Type"] == "AWS::SQS::QueuePolicy"
    }
    assert set(policies) == {queue_name, dead_letters}
    for name, policy in policies.items():
        only_the_rule_may_send(policy, name, rule_name)
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    depth = [a for a in alarms if a["MetricName"] == "ApproximateNumberOfMessagesVisible"]
    (dimension,) = depth[0]["Dimensions"]
    assert dimension["Value"] == {"GetAtt": f"{dead_letters}.QueueName"}
    assert depth[0]["Threshold"] == 0 and depth[0]["ComparisonOperator"] == "GreaterThanThreshold"
    assert stack["Outputs"]["QueueUrl"]["Value"] == {"Ref": queue_name}


def queue_variant(tmp_path: Path) -> list[dict[str, Any]]:
    """The base with the queue component, as an overlay would build it."""
    base, component = (os.path.relpath(p, tmp_path) for p in (K8S, QUEUE_COMPONENT))
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{base}]\ncomponents: [{component}]\n", encoding="utf-8"
    )
    return kustomize(tmp_path)


def test_the_queue_variant_consumes_the_stacks_queue_and_exposes_no_service(
    tmp_path: Path, parser: argparse.ArgumentParser
) -> None:
    built = queue_variant(tmp_path)
    for doc in built:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
    assert not [d for d in built if d["kind"] in ("Service", "Ingress")]
    container = the_container_of(built, "Deployment")
    args = container["args"]
    flags = [a for a in args[1:] if a.startswith("--")]
    assert set(flags) <= set(subcommand(parser, "serve")._option_string_actions)
    serve = parse(args).serve
    assert serve is not None and serve.queue_url is not None
    # The queue the component names is the stack's and the IAM policy's.
    region, endpoint = queue_endpoint(serve.queue_url)
    assert endpoint is None, "an AWS queue URL: the client finds the endpoint"
    account, name = serve.queue_url.rstrip("/").split("/")[-2:]
    assert name == template(QUEUE_STACK)["Parameters"]["QueueName"]["Default"]
    (statement,) = (s for s in policy_statements() if as_list(s["Action"])[0].startswith("sqs:"))
    assert as_list(statement["Resource"]) == [f"arn:aws:sqs:{region}:{account}:{name}"]
    # Otherwise the variant is the base: the same workloads and the same everything else.
    base = kustomize(K8S)
    assert the_container_of(base, "Deployment")["args"] == args[:-2]
    assert [d for d in base if d["kind"] not in ("Service", "Deployment")] == [
        d for d in built if d["kind"] != "Deployment"
    ]
    # SIGTERM: the drain, then deleting what finished, then open requests, within the grace.
    grace = pod_spec(next(d for d in built if d["kind"] == "Deployment"))
    shutdown = serve.drain_timeout_s + ConsumerSettings().finish_s + HANDLER_SHUTDOWN_S
    assert grace["terminationGracePeriodSeconds"] > shutdown


@pytest.mark.parametrize("stack", [EVENTBRIDGE, QUEUE_STACK, MEMBER_ROLE], ids=lambda p: p.name)
def test_cfn_lint_finds_nothing(stack: Path) -> None:
    result = run(tool("cfn-lint"), str(stack))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_member_role_trusts_only_the_cleaner_and_allows_what_its_targets_need() -> None:
    """The member template grants, in every region of its account, the same ECR actions and
    in-use reads as the cleaner's own policy, statement by statement; nothing else."""
    resources = template(MEMBER_ROLE)["Resources"]
    role = resources["MemberRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Ref": "CleanerRoleArn"}}
    assert trust["Action"] == "sts:AssumeRole"
    assert "ExternalId" in str(trust["Condition"])
    granted = [
        *role["Policies"][0]["PolicyDocument"]["Statement"],
        *resources["WorkloadReads"]["Properties"]["PolicyDocument"]["Statement"],
    ]
    member = {s["Sid"]: sorted(as_list(s["Action"])) for s in granted}
    own = {s["Sid"]: sorted(as_list(s["Action"])) for s in policy_statements()}
    assert member == {sid: actions for sid, actions in own.items() if sid in member}
    # The cleaner's own: assuming the member roles, and reading its push-event queue.
    assert set(own) - set(member) == {"AssumeMemberAccountRoles", "ConsumePushEventsFromTheQueue"}
    for statement in granted:
        if any(a.startswith("ecr:") for a in as_list(statement["Action"])):
            resource = statement["Resource"]["Sub"]
            assert resource == "arn:${AWS::Partition}:ecr:*:${AWS::AccountId}:repository/*"

#!/usr/bin/env bash
# The external linters over the deployment files: hadolint (Dockerfile), kubernetes-validate
# --strict (every manifest in k8s/kustomization.yaml and the components' plain Kubernetes
# objects, on the oldest and the newest Kubernetes the manifests support), promtool (the
# alert rules; Debian's prometheus package), cfn-lint (the EventBridge stacks, to an API
# destination or to SQS, and the member-account role) and zizmor (the GitHub Actions example: its schema and security
# audits, offline). `make lint` runs this; tests/test_deploy.py and tests/test_monitoring.py
# run the same tools plus the checks that tie the files to the code.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OLDEST_KUBERNETES=1.30.0  # keep in step with K8S_VERSIONS in tests/test_deploy.py

"$BIN/hadolint" --no-color --failure-threshold warning Dockerfile

# The manifests are the kustomization's resources; policy.yaml (a generated ConfigMap's
# content) and kustomization.yaml itself are not Kubernetes objects.
# The components' ServiceMonitor and PrometheusRule are CRDs kubernetes-validate has no
# schema for: promtool checks the rules below, tests/test_monitoring.py the rest.
mapfile -t manifests < <("$BIN/python" -c '
import glob, yaml
for name in yaml.safe_load(open("k8s/kustomization.yaml"))["resources"]:
    print("k8s/" + name)
for kustomization in sorted(glob.glob("k8s/components/*/kustomization.yaml")):
    folder = kustomization.rsplit("/", 1)[0]
    for name in yaml.safe_load(open(kustomization)).get("resources", []):
        docs = list(yaml.safe_load_all(open(f"{folder}/{name}")))
        if not any(d["apiVersion"].startswith("monitoring.coreos.com/") for d in docs):
            print(f"{folder}/{name}")
')
"$BIN/kubernetes-validate" --strict --quiet -k "$OLDEST_KUBERNETES" "${manifests[@]}"
"$BIN/kubernetes-validate" --strict --quiet "${manifests[@]}"

if ! command -v promtool >/dev/null; then
    echo "promtool is not installed: apt-get install prometheus" >&2
    exit 1
fi
rules=$(mktemp --suffix=.yaml)
trap 'rm -f "$rules"' EXIT
"$BIN/python" -c '
import sys, yaml
yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["spec"], sys.stdout)
' k8s/components/monitoring/prometheusrule.yaml > "$rules"
promtool check rules "$rules" >/dev/null

"$BIN/cfn-lint" k8s/aws/eventbridge.yaml k8s/aws/eventbridge-sqs.yaml k8s/aws/member-role.yaml

"$BIN/zizmor" --offline --no-progress --quiet examples/github-actions/*.yml

echo "deploy lint: ok (hadolint, kubernetes-validate --strict, promtool, cfn-lint, zizmor)"

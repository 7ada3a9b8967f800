#!/usr/bin/env bash
# The external linters over the deployment files: hadolint (Dockerfile), kubernetes-validate
# --strict (every manifest in k8s/kustomization.yaml, on the oldest and the newest Kubernetes
# the manifests support) and cfn-lint (the two EventBridge stacks: API destination and SQS). `make lint` runs this;
# tests/test_deploy.py runs the same tools plus the checks that tie the files to the code.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OLDEST_KUBERNETES=1.30.0  # keep in step with K8S_VERSIONS in tests/test_deploy.py

"$BIN/hadolint" --no-color --failure-threshold warning Dockerfile

# The manifests are the kustomization's resources; policy.yaml (a generated ConfigMap's
# content) and kustomization.yaml itself are not Kubernetes objects.
mapfile -t manifests < <("$BIN/python" -c '
import yaml
for name in yaml.safe_load(open("k8s/kustomization.yaml"))["resources"]:
    print("k8s/" + name)
')
"$BIN/kubernetes-validate" --strict --quiet -k "$OLDEST_KUBERNETES" "${manifests[@]}"
"$BIN/kubernetes-validate" --strict --quiet "${manifests[@]}"

"$BIN/cfn-lint" k8s/aws/eventbridge.yaml k8s/aws/eventbridge-sqs.yaml

echo "deploy lint: ok (hadolint, kubernetes-validate --strict, cfn-lint)"

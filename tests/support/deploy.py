"""Building the kustomize base (and overlays of it) the way `kubectl apply -k` would."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
K8S = ROOT / "k8s"
COMPONENTS = K8S / "components"


def kustomize(directory: Path) -> list[dict[str, Any]]:
    if shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(directory)]
    elif shutil.which("kustomize"):
        command = ["kustomize", "build", str(directory)]
    else:
        pytest.fail("kubectl is not installed: apt-get install kubectl (or put kustomize on PATH)")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def overlay(directory: Path, *components: str) -> list[dict[str, Any]]:
    """The base with the named components of k8s/components/, from an overlay in `directory`."""
    base = os.path.relpath(K8S, directory)
    used = [os.path.relpath(COMPONENTS / name, directory) for name in components]
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [base], "components": used}), encoding="utf-8"
    )
    return kustomize(directory)

"""How the command line and the policy file decide in-use protection and coordination."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleaner.clients.kubernetes import KubeTarget
from cleaner.coordination.lease import lease_namespace
from cleaner.in_use.kubernetes import KubernetesOptions
from cleaner.planning.policy_file import KubernetesSection

NO_CONFIG = KubernetesSection()


def test_auto_is_off_without_any_cluster_config() -> None:
    assert not KubernetesOptions.resolve(NO_CONFIG, "auto", environ={}).on


def test_auto_is_on_with_a_kubeconfig(tmp_path: Path) -> None:
    path = str(tmp_path / "config")
    options = KubernetesOptions.resolve(NO_CONFIG, "auto", kubeconfig=path, environ={})
    assert options.on and options.targets == (KubeTarget(path, None),)


def test_on_stays_on_even_without_config_so_the_prune_fails_closed() -> None:
    assert KubernetesOptions.resolve(NO_CONFIG, "on", environ={}).on


def test_off_is_off_even_in_a_cluster() -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "x"}
    assert not KubernetesOptions.resolve(NO_CONFIG, "off", environ=environ).on


def test_command_line_contexts_replace_the_policy_files() -> None:
    section = KubernetesSection(contexts=("a", "b"), kubeconfig="/k")

    def targets(**flags: object) -> tuple[KubeTarget, ...]:
        return KubernetesOptions.resolve(section, "on", environ={}, **flags).targets  # type: ignore[arg-type]

    assert [t.context for t in targets()] == ["a", "b"]
    assert [t.context for t in targets(contexts=["c"])] == ["c"]
    assert targets(kubeconfig="/other")[0].kubeconfig == "/other"


@pytest.mark.parametrize(
    ("configured", "environ", "expected"),
    [
        ("ops", {}, "ops"),
        (None, {}, None),  # outside a cluster: no Leases
        ("ops", {"KUBERNETES_SERVICE_HOST": "x"}, "ops"),
    ],
)
def test_coordination_follows_the_policy_namespace(
    configured: str | None, environ: dict[str, str], expected: str | None
) -> None:
    assert lease_namespace(configured, environ) == expected

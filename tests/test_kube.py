"""How the command line and the policy file decide in-use protection and coordination."""

from __future__ import annotations

from pathlib import Path

from cleaner.in_use.kubernetes import KubeTarget
from cleaner.kube import resolve
from cleaner.planning.policy_file import ClusterSettings


def test_auto_is_off_without_any_cluster_config() -> None:
    options = resolve(ClusterSettings(), environ={})
    assert not options.in_use and options.lease_namespace is None


def test_auto_is_on_with_a_kubeconfig(tmp_path: Path) -> None:
    options = resolve(ClusterSettings(), kubeconfig=str(tmp_path / "config"), environ={})
    assert options.in_use and options.targets == (KubeTarget(str(tmp_path / "config"), None),)


def test_on_stays_on_even_without_config_so_the_prune_fails_closed() -> None:
    assert resolve(ClusterSettings(in_use="on"), environ={}).in_use


def test_off_is_off_even_in_a_cluster() -> None:
    assert not resolve(
        ClusterSettings(in_use="off"), environ={"KUBERNETES_SERVICE_HOST": "x"}
    ).in_use


def test_command_line_contexts_replace_the_policy_files() -> None:
    settings = ClusterSettings(in_use="on", contexts=("a", "b"), kubeconfig="/k")
    assert [t.context for t in resolve(settings, environ={}).targets] == ["a", "b"]
    assert [t.context for t in resolve(settings, contexts=["c"], environ={}).targets] == ["c"]
    assert resolve(settings, kubeconfig="/other", environ={}).targets[0].kubeconfig == "/other"


def test_coordination_follows_the_policy_namespace() -> None:
    options = resolve(ClusterSettings(lease_namespace="ops", lease_seconds=30), environ={})
    assert (options.lease_namespace, options.lease_seconds) == ("ops", 30)

"""The sweep's metrics: pushed to a real Pushgateway, written for the textfile collector, read
back with prometheus-client's own parser; a sink that fails never fails the sweep."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cleaner.engine import Engine, Progress, SweepRequest
from cleaner.planning.model import ErrorKind, Image
from cleaner.planning.policy_file import parse_policy_file
from cleaner.settings import parse_args
from cleaner.sweep_metrics import LAST_SUCCESS, SweepMetrics
from tests.support.backends import EmulatorBackend
from tests.support.cli import run_cli
from tests.support.fakes import FakeRegistry
from tests.support.policies import keep_newest_rule
from tests.support.pushgateway import group, running_pushgateway

RULES = [keep_newest_rule(1)]
NOW = datetime.now(UTC)
JOB = (("job", "ecr-cleaner-sweep"), ("shard", "0"))


def keep_one(tmp_path: Path, **extra: object) -> str:
    """The bare ECR document; with `extra` (protect: ...), a policy file with one entry."""
    path = tmp_path / "policy.json"
    doc = {"repositories": [{"match": "*", "rules": RULES}], **extra} if extra else {"rules": RULES}
    path.write_text(json.dumps(doc))
    return str(path)


def seed(emulator: EmulatorBackend, repositories: dict[str, int]) -> dict[str, int]:
    """`count` daily images per repository; returns the bytes a keep-1 sweep reclaims."""
    reclaimed = {}
    for name, count in repositories.items():
        emulator.create_repository(name)
        for i in range(count):
            emulator.push(name, [f"b{i}"], NOW - timedelta(days=count - i), seed=f"{name}{i}")
        images = sorted(emulator.store.images(name), key=lambda image: image.pushed_at)
        reclaimed[name] = sum(image.size for image in images[:-1])
    return reclaimed


Figures = dict[tuple[str, frozenset[tuple[str, str]]], float]


def value(figures: Figures, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include these (a repository's also carry the
    account and region of its target)."""
    (found,) = [v for (n, have), v in figures.items() if n == name and labels.items() <= have]
    return found


async def test_a_sweep_leaves_its_figures_and_last_success_on_a_real_pushgateway(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    reclaimed = seed(emulator, {"app": 4, "web": 3})
    with running_pushgateway(tmp_path) as gateway:
        before = time.time()
        code, _ = await run_cli(
            "sweep", "--policy", keep_one(tmp_path), "--endpoint-url", emulator.endpoint_url,
            "--pushgateway", gateway,
        )  # fmt: skip
        after = time.time()
        figures = group(gateway, **dict(JOB))
    assert code == 0
    assert before <= value(figures, "ecr_cleaner_sweep_last_success_timestamp_seconds") <= after
    assert value(figures, "ecr_cleaner_sweep_images_deleted") == 5
    assert value(figures, "ecr_cleaner_sweep_repository_images_deleted", repository="app") == 3
    assert value(figures, "ecr_cleaner_sweep_repository_images_deleted", repository="web") == 2
    assert value(figures, "ecr_cleaner_sweep_images") == 7
    assert value(figures, "ecr_cleaner_sweep_bytes_reclaimed") == sum(reclaimed.values()) > 0
    web = value(figures, "ecr_cleaner_sweep_repository_bytes_reclaimed", repository="web")
    assert web == reclaimed["web"]
    assert value(figures, "ecr_cleaner_sweep_delete_failures") == 0
    assert value(figures, "ecr_cleaner_sweep_succeeded") == 1
    assert value(figures, "ecr_cleaner_sweep_dry_run") == 0
    assert 0 < value(figures, "ecr_cleaner_sweep_duration_seconds") < after - before
    assert value(figures, "ecr_cleaner_sweep_repository_errors", cause="in_use") == 0
    calls = {"operation": "BatchDeleteImage", "outcome": "ok"}
    assert value(figures, "ecr_cleaner_sweep_ecr_calls", **calls) == 2, "one per repository"
    assert emulator.digests("app") and len(emulator.digests("app")) == 1


async def test_each_shard_and_each_job_pushes_to_its_own_group(
    emulator: EmulatorBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(emulator, {"app": 2})
    policy = keep_one(tmp_path)
    with running_pushgateway(tmp_path) as gateway:
        monkeypatch.setenv("CLEANER_PUSHGATEWAY", gateway)
        monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")  # pod 1 of an Indexed Job
        sharded, _ = await run_cli(
            "sweep", "--policy", policy, "--endpoint-url", emulator.endpoint_url, "--shards", "2",
        )  # fmt: skip
        by_hand, _ = await run_cli(
            "sweep", "--policy", policy, "--endpoint-url", emulator.endpoint_url, "no/such",
            "--metrics-job", "by-hand",
        )  # fmt: skip
        shard_1 = group(gateway, job="ecr-cleaner-sweep", shard="1")
        shard_0 = group(gateway, job="ecr-cleaner-sweep", shard="0")
        manual = group(gateway, job="by-hand", shard="0")
    assert (sharded, by_hand) == (0, 1)
    assert value(shard_1, "ecr_cleaner_sweep_succeeded") == 1 and LAST_SUCCESS in names(shard_1)
    assert not shard_0, "only the shard that ran has a group"
    assert value(manual, "ecr_cleaner_sweep_succeeded") == 0
    assert value(manual, "ecr_cleaner_sweep_repository_errors", cause="registry") == 1
    assert value(manual, "ecr_cleaner_sweep_repository_failed", repository="no/such") == 1
    assert LAST_SUCCESS not in names(manual), "a job that never succeeded has no success time"


def names(figures: Figures) -> set[str]:
    return {name for name, _ in figures}


async def test_a_failure_pushed_after_a_success_leaves_the_success_time(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    seed(emulator, {"app": 2})
    policy = keep_one(tmp_path)
    with running_pushgateway(tmp_path) as gateway:
        args = ("--endpoint-url", emulator.endpoint_url, "--pushgateway", gateway)
        ok, _ = await run_cli("sweep", "--policy", policy, *args, "app")
        succeeded_at = value(group(gateway, **dict(JOB)), LAST_SUCCESS)
        failed, _ = await run_cli("sweep", "--policy", policy, *args, "no/such")
        figures = group(gateway, **dict(JOB))
    assert (ok, failed) == (0, 1)
    assert value(figures, LAST_SUCCESS) == succeeded_at
    assert value(figures, "ecr_cleaner_sweep_succeeded") == 0
    assert value(figures, "ecr_cleaner_sweep_last_run_timestamp_seconds") > succeeded_at


async def test_a_pushgateway_that_fails_is_a_warning_and_the_sweep_still_succeeds(
    emulator: EmulatorBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed(emulator, {"app": 3})
    with running_pushgateway(tmp_path) as gateway:
        wrong_path = f"{gateway}/not-the-api"  # the real gateway answers 404
        code, _ = await run_cli(
            "sweep", "--policy", keep_one(tmp_path), "--endpoint-url", emulator.endpoint_url,
            "--pushgateway", wrong_path,
        )  # fmt: skip
    closed = f"http://127.0.0.1:{_closed_port()}"
    code_closed, _ = await run_cli(
        "sweep", "--policy", keep_one(tmp_path), "--endpoint-url", emulator.endpoint_url,
        "--pushgateway", closed,
    )  # fmt: skip
    assert (code, code_closed) == (0, 0)
    assert len(emulator.digests("app")) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"not pushed to {wrong_path}" in w and "404" in w for w in warnings), warnings
    assert any(f"not pushed to {closed}" in w for w in warnings), warnings


def _closed_port() -> int:
    from tests.support.servers import free_port

    return free_port()  # bound and released: nothing listens there now


async def test_the_metrics_file_reads_back_with_the_prometheus_parser(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    reclaimed = seed(emulator, {"app": 3})
    path = tmp_path / "ecr-cleaner.prom"
    code, _ = await run_cli(
        "sweep", "--policy", keep_one(tmp_path), "--endpoint-url", emulator.endpoint_url,
        "--metrics-file", str(path), "--dry-run",
    )  # fmt: skip
    assert code == 0
    figures = samples(path)
    assert figures[("ecr_cleaner_sweep_images_expired", ())] == 2
    assert figures[("ecr_cleaner_sweep_images_deleted", ())] == 0, "a dry run deletes nothing"
    assert figures[("ecr_cleaner_sweep_dry_run", ())] == 1
    (images,) = [
        v
        for (n, labels), v in figures.items()
        if n == "ecr_cleaner_sweep_repository_images" and ("repository", "app") in labels
    ]
    assert images == 3  # fmt: skip
    assert figures[(LAST_SUCCESS, ())] > 0
    code, _ = await run_cli(
        "sweep", "--policy", keep_one(tmp_path), "--endpoint-url", emulator.endpoint_url,
        "--metrics-file", str(path),
    )  # fmt: skip
    assert code == 0
    assert samples(path)[("ecr_cleaner_sweep_bytes_reclaimed", ())] == reclaimed["app"]
    assert siblings(path) == [path.name], "no temporary file left next to it"


async def test_a_failed_run_carries_the_last_success_into_the_new_file(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    seed(emulator, {"app": 2})
    path = tmp_path / "sweep.prom"
    args = ("--policy", keep_one(tmp_path), "--endpoint-url", emulator.endpoint_url)
    await run_cli("sweep", *args, "--metrics-file", str(path))
    succeeded_at = samples(path)[(LAST_SUCCESS, ())]
    code, _ = await run_cli("sweep", *args, "--metrics-file", str(path), "no/such")
    assert code == 1
    after = samples(path)
    assert after[(LAST_SUCCESS, ())] == succeeded_at
    assert after[("ecr_cleaner_sweep_succeeded", ())] == 0


async def test_a_run_that_stops_before_any_repository_still_reports_its_failure(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    seed(emulator, {"app": 2})
    path = tmp_path / "sweep.prom"
    code, _ = await run_cli(
        "sweep", "--policy", keep_one(tmp_path), "--endpoint-url", emulator.endpoint_url,
        "--metrics-file", str(path), "--audit-log", str(tmp_path / "no" / "such" / "audit.jsonl"),
    )  # fmt: skip
    assert code == 2
    figures = samples(path)
    assert figures[("ecr_cleaner_sweep_succeeded", ())] == 0
    assert figures[("ecr_cleaner_sweep_repositories", ())] == 0
    assert (LAST_SUCCESS, ()) not in figures


async def test_an_unreadable_cluster_counts_as_an_in_use_failure(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    seed(emulator, {"app": 3})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    path = tmp_path / "sweep.prom"
    code, _ = await run_cli(
        "sweep", "--policy", keep_one(tmp_path, protect={"in_use": True}),
        "--kubeconfig", str(kubeconfig), "--endpoint-url", emulator.endpoint_url,
        "--metrics-file", str(path),
    )  # fmt: skip
    assert code == 1 and len(emulator.digests("app")) == 3
    figures = samples(path)
    assert figures[("ecr_cleaner_sweep_repository_errors", (("cause", "in_use"),))] == 1
    assert figures[("ecr_cleaner_sweep_repository_errors", (("cause", "coordination"),))] == 0
    assert (LAST_SUCCESS, ()) not in figures


def siblings(path: Path) -> list[str]:
    return [p.name for p in path.parent.iterdir() if p.name.startswith(path.name)]


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = path.read_text(encoding="utf-8")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_each_repository_is_recorded_as_it_finishes() -> None:
    stamp = NOW - timedelta(days=3)
    images = {
        name: [Image(f"sha256:{name[0]}{i:063x}", (f"t{i}",), stamp + timedelta(hours=i), size=7)
               for i in range(3)]
        for name in ("app", "web")
    }  # fmt: skip
    metrics = SweepMetrics(dry_run=False)
    seen: list[tuple[str, float | None]] = []

    def shown(report: object) -> None:
        name = report.repository  # type: ignore[attr-defined]
        labels = {"account": report.account, "region": report.region, "repository": name}  # type: ignore[attr-defined]
        seen.append((name, metrics.registry.get_sample_value(
            "ecr_cleaner_sweep_repository_images_deleted", labels)))  # fmt: skip

    progress = metrics.watch(Progress(on_repository_done=shown))
    request = SweepRequest(policy=parse_policy_file({"rules": RULES}), now=NOW, apply=True)
    report = await Engine(FakeRegistry(images)).run(request, progress)
    assert sorted(seen) == [("app", 2.0), ("web", 2.0)], "recorded before the display hears it"
    assert metrics.registry.get_sample_value("ecr_cleaner_sweep_bytes_reclaimed") == 28
    assert report.ok


def test_a_brake_and_a_bug_are_their_own_causes() -> None:
    metrics = SweepMetrics(dry_run=False)
    from cleaner.planning.model import RepositoryReport

    metrics.repository_done(RepositoryReport("a", error="max", error_kind=ErrorKind.SAFETY))
    metrics.repository_done(RepositoryReport("b", error="?"))
    get = metrics.registry.get_sample_value
    assert get("ecr_cleaner_sweep_repository_errors", {"cause": "safety"}) == 1
    assert get("ecr_cleaner_sweep_repository_errors", {"cause": "internal"}) == 1


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--pushgateway", "ftp://gw:9091"], {}, "--pushgateway='ftp://gw:9091'"),
        (["--pushgateway", "http://gw:port"], {}, "--pushgateway='http://gw:port'"),
        ([], {"CLEANER_PUSHGATEWAY": "gw"}, "CLEANER_PUSHGATEWAY='gw'"),
        (["--metrics-file", "/var/lib/x.txt"], {}, "--metrics-file='/var/lib/x.txt'"),
        ([], {"CLEANER_METRICS_JOB": " "}, "CLEANER_METRICS_JOB"),
    ],
)
async def test_bad_metrics_settings_are_one_line_exit_2_and_no_registry_call(
    emulator: EmulatorBackend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    named: str,
) -> None:
    for name, text in env.items():
        monkeypatch.setenv(name, text)
    code, _ = await run_cli(
        "sweep", "--policy", keep_one(tmp_path), "--endpoint-url", emulator.endpoint_url,
        "--metrics-file", str(tmp_path / "ok.prom"), *argv,
    )  # fmt: skip
    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("ecr-cleaner: error: ") and named in line
    assert sum(emulator.store.calls.values()) == 0


def test_only_the_sweep_takes_metrics_sinks_and_none_means_no_sinks() -> None:
    with pytest.raises(SystemExit):
        parse_args(["plan", "--policy", "/p", "--pushgateway", "http://gw:9091"], environ={})
    run = parse_args(["sweep", "--policy", "/p"], environ={}).run
    assert run is not None and run.metrics is None
    env = {"CLEANER_PUSHGATEWAY": "https://gw.example:9091/"}
    run = parse_args(["sweep", "--policy", "/p"], environ=env).run
    assert run is not None and run.metrics is not None
    assert run.metrics.pushgateway == "https://gw.example:9091"
    assert run.metrics.job == "ecr-cleaner-sweep"

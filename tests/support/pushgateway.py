"""A real Prometheus Pushgateway (Debian's prometheus-pushgateway) on a loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

BINARY = "prometheus-pushgateway"
DEBIAN_PACKAGE = "prometheus-pushgateway"


def binary() -> str:
    found = shutil.which(BINARY) or shutil.which(BINARY, path="/usr/bin")
    if found is None:
        pytest.fail(f"{BINARY} is not installed: apt-get install {DEBIAN_PACKAGE}")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_pushgateway(tmp_path: Path) -> Iterator[str]:
    """Start one, wait until it answers /-/ready, yield its URL, stop it."""
    port = free_port()
    process = subprocess.Popen(
        [
            binary(),
            f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={tmp_path / 'pushgateway.store'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def wait_ready(url: str, process: subprocess.Popen[bytes], within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"{BINARY} exited with {process.returncode}: {errors[-500:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{BINARY} did not become ready within {within_s:g} s")


def group(url: str, **labels: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """What the gateway serves on /metrics for one group: (name, other labels) -> value.

    The gateway adds `instance=""` to every series it serves when no push set one."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:  # noqa: S310
        text = answer.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                rest = frozenset(
                    (k, v)
                    for k, v in sample.labels.items()
                    if k not in labels and (k, v) != ("instance", "")
                )
                found[(sample.name, rest)] = sample.value
    return found

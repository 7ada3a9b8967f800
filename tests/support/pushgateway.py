"""A real Prometheus Pushgateway (Debian's prometheus-pushgateway) on a loopback port."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import debian_binary, free_port, serving

BINARY = "prometheus-pushgateway"
DEBIAN_PACKAGE = "prometheus-pushgateway"


@contextmanager
def running_pushgateway(tmp_path: Path) -> Iterator[str]:
    """Start one, wait until it answers /-/ready, yield its URL, stop it."""
    port = free_port()
    command = [
        debian_binary(BINARY, DEBIAN_PACKAGE),
        f"--web.listen-address=127.0.0.1:{port}",
        f"--persistence.file={tmp_path / 'pushgateway.store'}",
    ]
    url = f"http://127.0.0.1:{port}"
    with serving(command, f"{url}/-/ready", stop_s=10):
        yield url


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

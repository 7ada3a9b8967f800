"""The first-seen record: when this cleaner first saw each manifest, kept in a JSON file.

For registries whose created times cannot be trusted (reproducible builds pin them, or a
registry rewrites them), `--first-seen-file PATH` makes an image's age the time the
cleaner first listed it. Why a file rather than a ConfigMap: the sweep (a CronJob) and the
receiver already mount a volume for the audit log (`k8s/components/audit-pvc`), a file
needs no RBAC write on ConfigMaps, and a ConfigMap holds at most 1 MiB (Kubernetes
"ConfigMaps" concept page), which a large registry's record outgrows. One process per file:
the file is rewritten whole (written beside, then renamed), and the last writer wins.

A digest seen for the first time is recorded with its created time when that is usable
(`cleaner.registries.oci.age`), else with now; so the first run keeps a sensible order, and
from then on the time never moves. Entries of a repository's digests that are gone are
dropped at its next listing, so the file stays the size of the registry.

    {"version": 1, "seen": {"team/api@sha256:...": "2026-12-02T15:00:00Z"}}
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from cleaner.errors import ConfigError
from cleaner.planning.model import iso_utc

SOURCE = "first seen"
VERSION = 1


class FirstSeen:
    """The record in memory; `observe` updates a repository's part and saves the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen = _load(self.path)

    def __len__(self) -> int:
        return len(self._seen)

    def observe(self, repository: str, times: Mapping[str, datetime]) -> dict[str, datetime]:
        """Record the repository's present digests (digest -> the time to use if new) and
        forget its absent ones; returns each present digest's first-seen time."""
        prefix = f"{repository}@"
        with self._lock:
            before = dict(self._seen)
            for key in [k for k in self._seen if k.startswith(prefix)]:
                if key[len(prefix) :] not in times:
                    del self._seen[key]
            for digest, moment in times.items():
                self._seen.setdefault(prefix + digest, moment)
            found = {digest: self._seen[prefix + digest] for digest in times}
            if self._seen != before:
                self._save()
        return found

    def lookup(self, repository: str, times: Mapping[str, datetime]) -> dict[str, datetime]:
        """Each digest's recorded time, else the given one; records nothing (a recheck)."""
        with self._lock:
            return {d: self._seen.get(f"{repository}@{d}", t) for d, t in times.items()}

    def _save(self) -> None:
        doc = {"version": VERSION, "seen": {k: iso_utc(v) for k, v in sorted(self._seen.items())}}
        partial = self.path.with_name(self.path.name + ".partial")
        try:
            partial.write_text(json.dumps(doc, indent=0) + "\n", encoding="utf-8")
            os.replace(partial, self.path)
        except OSError as error:
            raise ConfigError(f"--first-seen-file {self.path}: {error.strerror}") from error


def _load(path: Path) -> dict[str, datetime]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ConfigError(f"--first-seen-file {path}: not readable JSON: {error}") from error
    seen = doc.get("seen") if isinstance(doc, dict) else None
    if not isinstance(seen, dict):
        raise ConfigError(f"--first-seen-file {path}: expected {{'version': 1, 'seen': {{...}}}}")
    try:
        return {
            str(k): datetime.fromisoformat(str(v).replace("Z", "+00:00")) for k, v in seen.items()
        }
    except ValueError as error:
        raise ConfigError(f"--first-seen-file {path}: a time is not ISO 8601: {error}") from error

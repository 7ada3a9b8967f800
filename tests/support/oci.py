"""A real CNCF distribution registry (Debian's docker-registry) on a loopback port, and
pushing real blobs and manifests to it over HTTP, as a client such as skopeo would."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.servers import debian_binary, free_port, serving

BINARY = "docker-registry"
DEBIAN_PACKAGE = "docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def binary(search: str | None = None) -> str:
    """The registry's binary; the test fails without it."""
    return debian_binary(BINARY, DEBIAN_PACKAGE, search=search)


@contextmanager
def running_registry(
    tmp_path: Path,
    *,
    notify: str | None = None,
    token: str | None = None,
    readonly: bool = False,
    port: int | None = None,
) -> Iterator[str]:
    """Start one with deletion enabled, wait until `/v2/` answers, yield its URL, stop it.

    `notify`: an endpoint for its push notifications (with `token` as a bearer header).
    `readonly`: the maintenance read-only mode, which refuses every write and delete."""
    port = port or free_port()
    storage: dict[str, Any] = {
        "filesystem": {"rootdirectory": str(tmp_path / "registry")},
        "delete": {"enabled": True},
    }
    if readonly:
        storage["maintenance"] = {"readonly": {"enabled": True}}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": storage,
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if notify:
        endpoint = {"name": "cleaner", "url": notify, "timeout": "2s", "threshold": 3,
                    "backoff": "200ms"}  # fmt: skip
        if token:
            endpoint["headers"] = {"Authorization": [f"Bearer {token}"]}
        config["notifications"] = {"endpoints": [endpoint]}
    path = tmp_path / f"registry-{port}.yml"
    path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    with serving([binary(), "serve", str(path)], f"{url}/v2/"):
        yield url


def digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Pusher:
    """Pushes to one registry, as plain HTTP (the spec's monolithic blob upload)."""

    url: str
    headers: Mapping[str, str] | None = None

    def call(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, Any, bytes]:
        target = path if "://" in path else self.url + path
        request = urllib.request.Request(target, data=body, method=method)  # noqa: S310
        for key, value in (self.headers or {}).items():
            request.add_header(key, value)
        if content_type:
            request.add_header("Content-Type", content_type)
        request.add_header("Accept", f"{OCI_MANIFEST}, {OCI_INDEX}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def blob(self, repository: str, body: bytes) -> dict[str, Any]:
        """Upload a blob (POST, then PUT with the digest); its descriptor."""
        status, headers, _ = self.call("POST", f"/v2/{repository}/blobs/uploads/", b"")
        assert status == 202, status
        location = headers["Location"]
        sep = "&" if "?" in location else "?"
        status, _, text = self.call("PUT", f"{location}{sep}digest={digest(body)}", body,
                                    "application/octet-stream")  # fmt: skip
        assert status == 201, (status, text)
        return {"digest": digest(body), "size": len(body)}

    def manifest(self, repository: str, reference: str, doc: Mapping[str, Any]) -> str:
        body = json.dumps(doc).encode()
        media_type = str(doc.get("mediaType", OCI_MANIFEST))
        status, headers, text = self.call(
            "PUT", f"/v2/{repository}/manifests/{reference}", body, media_type
        )
        assert status == 201, (status, text)
        assert headers["Docker-Content-Digest"] == digest(body)
        return digest(body)

    def image(
        self,
        repository: str,
        tag: str | None,
        *,
        created: str | None = None,
        arch: str = "amd64",
        annotations: Mapping[str, str] | None = None,
        subject: str | None = None,
        artifact_type: str | None = None,
        salt: str = "",
    ) -> str:
        """One single-platform image (config + one layer); its manifest digest."""
        config_doc: dict[str, Any] = {
            "architecture": arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        if created is not None:
            config_doc["created"] = created
        config = self.blob(repository, json.dumps(config_doc).encode())
        layer = self.blob(repository, f"layer {repository} {tag} {arch} {salt}".encode())
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **config},
            "layers": [{"mediaType": LAYER, **layer}],
        }
        if annotations:
            doc["annotations"] = dict(annotations)
        if subject:
            doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}
        if artifact_type:
            doc["artifactType"] = artifact_type
        body_digest = digest(json.dumps(doc).encode())
        return self.manifest(repository, tag or body_digest, doc)

    def index(
        self,
        repository: str,
        tag: str,
        children: list[str],
        annotations: Mapping[str, str] | None = None,
    ) -> str:
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": child,
                    "size": 1,
                    "platform": {"architecture": f"arch{i}", "os": "linux"},
                }
                for i, child in enumerate(children)
            ],
        }
        if annotations:
            doc["annotations"] = dict(annotations)
        return self.manifest(repository, tag, doc)

    def tags(self, repository: str) -> list[str]:
        status, _, body = self.call("GET", f"/v2/{repository}/tags/list")
        assert status == 200, (status, body)
        return sorted(json.loads(body)["tags"] or [])

    def exists(self, repository: str, reference: str) -> bool:
        status, _, _ = self.call("HEAD", f"/v2/{repository}/manifests/{reference}")
        return status == 200

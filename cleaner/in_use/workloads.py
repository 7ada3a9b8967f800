"""The Kubernetes kinds whose objects name images, and the images each object names.

A pod names what it runs (its containers' specs, and the digests its statuses report); a
workload names what it will run through its pod template, even when scaled to zero or
between CronJob runs. Objects are the API's raw JSON; odd or partial ones yield what they
can and never raise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cleaner.clients.kubernetes import json_object, json_objects
from cleaner.planning.references import Use, parse_reference

Objects = dict[str, frozenset[Use]]
"""`namespace/name` -> the image uses of that object."""


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    api: str
    lister: str


KINDS = (
    Kind("Pod", "CoreV1Api", "list_pod_for_all_namespaces"),
    Kind("Deployment", "AppsV1Api", "list_deployment_for_all_namespaces"),
    Kind("ReplicaSet", "AppsV1Api", "list_replica_set_for_all_namespaces"),
    Kind("StatefulSet", "AppsV1Api", "list_stateful_set_for_all_namespaces"),
    Kind("DaemonSet", "AppsV1Api", "list_daemon_set_for_all_namespaces"),
    Kind("Job", "BatchV1Api", "list_job_for_all_namespaces"),
    Kind("CronJob", "BatchV1Api", "list_cron_job_for_all_namespaces"),
)


def object_key(obj: Mapping[str, Any]) -> str:
    meta = json_object(obj.get("metadata"))
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


# Kubernetes objects, as the API's JSON: a pod, or a workload with a pod template.
_CONTAINERS = ("containers", "initContainers", "ephemeralContainers")
_STATUSES = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")


def workload_uses(kind: str, obj: Mapping[str, Any]) -> frozenset[Use]:
    """The image uses of one object; odd or partial objects yield what they can, never raise."""
    meta = json_object(obj.get("metadata"))
    who = f"{meta.get('namespace', '')}/{kind}/{meta.get('name', '')}{_note(kind, obj)}"
    refs = (parse_reference(text) for text in _image_texts(kind, obj))
    return frozenset(Use(ref, who) for ref in refs if ref is not None)


def _image_texts(kind: str, obj: Mapping[str, Any]) -> Iterator[object]:
    spec = json_object(obj.get("spec"))
    if kind == "CronJob":
        spec = json_object(json_object(spec.get("jobTemplate")).get("spec"))
    if kind != "Pod":
        spec = json_object(json_object(spec.get("template")).get("spec"))
    for key in _CONTAINERS:
        yield from (c.get("image") for c in json_objects(spec.get(key)))
    # The digest a pod actually runs: the only trace of it once its tag has moved on.
    status = json_object(obj.get("status")) if kind == "Pod" else {}
    for key in _STATUSES:
        for state in json_objects(status.get(key)):
            yield state.get("imageID")
            yield state.get("image")


def _note(kind: str, obj: Mapping[str, Any]) -> str:
    if kind == "Pod":
        phase = json_object(obj.get("status")).get("phase")
        return f" ({phase.lower()})" if isinstance(phase, str) and phase else ""
    return " (scaled to 0)" if json_object(obj.get("spec")).get("replicas") == 0 else ""

"""ECR operations: request body in, response body out, EcrError on failure.

Each function validates first and only then touches the store, so a rejected call never
half-applies. Nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cleaner.emulator import shapes
from cleaner.emulator.manifests import DOCKER_MANIFEST, OCI_MANIFEST
from cleaner.emulator.paging import paginate
from cleaner.emulator.store import RegistryStore, RepositoryState, StoredImage
from cleaner.emulator.validation import (
    DIGEST,
    IMAGE_NOT_FOUND,
    STATUSES,
    Body,
    EcrError,
    ImageFailure,
    check_image_id,
    check_policy_text,
    enum,
    id_list,
    image_filter,
    invalid,
    required,
)

Operation = Callable[[RegistryStore, Body], Body]
Items = Iterator[tuple[int, list[Body]]]

# Without acceptedMediaTypes ECR serves single manifests only; an index has to be asked for
# explicitly (the BatchGetImage API reference). Schema 1 conversion is not modelled.
DEFAULT_ACCEPTED = (DOCKER_MANIFEST, OCI_MANIFEST)
MUTABILITIES = ("MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")


def _repo(store: RegistryStore, body: Body) -> RepositoryState:
    return store.repository(str(required(body, "repositoryName")), body.get("registryId"))


def _selected(image: StoredImage, tag_status: str, image_status: str) -> bool:
    # Every emulated image is ACTIVE: the archive storage class is not modelled.
    if image_status not in ("ACTIVE", "ANY"):
        return False
    return tag_status == "ANY" or (tag_status == "TAGGED") == bool(image.tags)


# -- repositories -------------------------------------------------------------------------


def create_repository(store: RegistryStore, body: Body) -> Body:
    name = str(required(body, "repositoryName"))
    mutability = enum(body.get("imageTagMutability", "MUTABLE"), MUTABILITIES, "imageTagMutability")
    store.create_repository(name, tag_mutability=mutability)
    return {"repository": shapes.repository(store, store.repos[name])}


def delete_repository(store: RegistryStore, body: Body) -> Body:
    name = _repo(store, body).name
    repo = store.delete_repository(name, force=bool(body.get("force", False)))
    return {"repository": shapes.repository(store, repo)}


def describe_repositories(store: RegistryStore, body: Body) -> Body:
    names = id_list(body, "repositoryNames", paged=True)
    if names is not None:
        found = [store.repository(str(n), body.get("registryId")) for n in names]
        return {"repositories": [shapes.repository(store, r) for r in found]}

    def entries(start: int) -> Items:
        for seq, name in store.repo_order.iter_from(start):
            yield seq, [shapes.repository(store, store.repos[name])]

    items, token = paginate(body, "DescribeRepositories", entries, default=100, maximum=1000)
    return shapes.with_token({"repositories": items}, token)


# -- images -------------------------------------------------------------------------------


def put_image(store: RegistryStore, body: Body) -> Body:
    repo = _repo(store, body)
    manifest = str(required(body, "imageManifest"))
    if len(manifest) > 4_194_304:
        raise invalid(
            "Invalid parameter at 'imageManifest' failed to satisfy constraint: "
            "'Member must have length less than or equal to 4194304'"
        )
    tag = body.get("imageTag")
    media_type = body.get("imageManifestMediaType")
    digest = store.put_image(
        repo.name, manifest, media_type=media_type, tag=tag, digest=body.get("imageDigest")
    )
    image_id = {"imageDigest": digest, **({"imageTag": tag} if tag else {})}
    return {"image": shapes.image(store, repo, repo.images[digest], image_id)}


def describe_images(store: RegistryStore, body: Body) -> Body:
    repo = _repo(store, body)
    ids = id_list(body, "imageIds", paged=True)
    if ids is not None:
        found = _resolve_all(store, repo, ids)
        return {"imageDetails": [shapes.image_detail(store, repo, i) for i in found]}
    tag_status, image_status = image_filter(body)

    def entries(start: int) -> Items:
        for seq, digest in repo.order.iter_from(start):
            image = repo.images[digest]
            chosen = _selected(image, tag_status, image_status)
            yield seq, [shapes.image_detail(store, repo, image)] if chosen else []

    scope = f"DescribeImages\0{repo.name}\0{tag_status}\0{image_status}"
    items, token = paginate(body, scope, entries, default=100, maximum=1000)
    return shapes.with_token({"imageDetails": items}, token)


def _resolve_all(store: RegistryStore, repo: RepositoryState, ids: list[Any]) -> list[StoredImage]:
    """The images ids name, each once; one unknown id fails the whole call, as in ECR."""
    found: dict[str, StoredImage] = {}
    for image_id in ids:
        image = store.resolve(repo, image_id)
        if image is None:
            raise store.image_not_found(repo, image_id)
        found.setdefault(image.digest, image)
    return list(found.values())


def list_images(store: RegistryStore, body: Body) -> Body:
    repo = _repo(store, body)
    tag_status, image_status = image_filter(body)

    def entries(start: int) -> Items:
        # One entry per tag, or a single digest-only entry for an untagged image.
        for seq, digest in repo.order.iter_from(start):
            image = repo.images[digest]
            if not _selected(image, tag_status, image_status):
                yield seq, []
            elif image.tags:
                yield seq, [{"imageDigest": digest, "imageTag": t} for t in image.tags]
            else:
                yield seq, [{"imageDigest": digest}]

    scope = f"ListImages\0{repo.name}\0{tag_status}\0{image_status}"
    items, token = paginate(body, scope, entries, default=100, maximum=1000)
    return shapes.with_token({"imageIds": items}, token)


def batch_get_image(store: RegistryStore, body: Body) -> Body:
    repo = _repo(store, body)
    ids = id_list(body, "imageIds", paged=False) or required(body, "imageIds")
    accepted = body.get("acceptedMediaTypes") or DEFAULT_ACCEPTED
    images: list[Body] = []
    failures: list[Body] = []
    for image_id in ids:
        try:
            image = _get_one(store, repo, image_id, accepted)
        except ImageFailure as f:
            failures.append(shapes.failure(image_id, f.code, f.reason))
        else:
            found_id = {"imageDigest": image.digest, **image_id}
            images.append(shapes.image(store, repo, image, found_id))
    return {"images": images, "failures": failures}


def _get_one(
    store: RegistryStore, repo: RepositoryState, image_id: Body, accepted: Sequence[str]
) -> StoredImage:
    check_image_id(image_id)
    image = store.resolve(repo, image_id)
    if image is None:
        raise ImageFailure("ImageNotFound", IMAGE_NOT_FOUND)
    if image.info.media_type not in accepted:
        # Our wording: ECR's exact failure for an unaccepted type is not documented.
        raise ImageFailure(
            "UnsupportedImageType",
            f"Image manifest media type {image.info.media_type} is not in acceptedMediaTypes",
        )
    return image


def batch_delete_image(store: RegistryStore, body: Body) -> Body:
    repo = _repo(store, body)
    ids = id_list(body, "imageIds", paged=False) or required(body, "imageIds")
    deleted, failures = store.batch_delete(repo.name, ids)
    return {"imageIds": deleted, "failures": failures}


def list_image_referrers(store: RegistryStore, body: Body) -> Body:
    repo = _repo(store, body)
    subject = str((body.get("subjectId") or {}).get("imageDigest") or "")
    if not DIGEST.fullmatch(subject):
        raise invalid(
            "Invalid parameter at 'subjectId.imageDigest' failed to satisfy constraint: "
            "'must satisfy regular expression '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+''"
        )
    filt = body.get("filter") or {}
    types = filt.get("artifactTypes")
    status = enum(filt.get("artifactStatus", "ACTIVE"), STATUSES, "filter.artifactStatus")
    referrers = store.referrers_of(repo.name, subject)

    def entries(start: int) -> Items:
        for image in referrers:
            wanted = status in ("ACTIVE", "ANY") and (
                not types or image.info.artifact_media_type in types
            )
            if image.seq >= start:
                yield image.seq, [shapes.referrer(image)] if wanted else []

    scope = f"ListImageReferrers\0{repo.name}\0{subject}\0{types}\0{status}"
    items, token = paginate(body, scope, entries, default=20, maximum=50)
    return shapes.with_token({"referrers": items}, token)


# -- lifecycle policies -------------------------------------------------------------------


def put_lifecycle_policy(store: RegistryStore, body: Body) -> Body:
    repo = _repo(store, body)
    text = str(required(body, "lifecyclePolicyText"))
    check_policy_text(text)
    repo.policy = text
    return _policy_response(store, repo, text)


def get_lifecycle_policy(store: RegistryStore, body: Body) -> Body:
    repo = _repo(store, body)
    return _policy_response(store, repo, _policy(store, repo))


def delete_lifecycle_policy(store: RegistryStore, body: Body) -> Body:
    repo = _repo(store, body)
    text = _policy(store, repo)
    repo.policy = None
    return _policy_response(store, repo, text)


def _policy(store: RegistryStore, repo: RepositoryState) -> str:
    if repo.policy is None:
        raise EcrError(
            "LifecyclePolicyNotFoundException",
            f"Lifecycle policy does not exist for the repository with name '{repo.name}' in "
            f"the registry with id '{store.account_id}'",
        )
    return repo.policy


def _policy_response(store: RegistryStore, repo: RepositoryState, text: str) -> Body:
    return {
        "registryId": store.account_id,
        "repositoryName": repo.name,
        "lifecyclePolicyText": text,
    }


OPERATIONS: dict[str, Operation] = {
    "CreateRepository": create_repository,
    "DescribeRepositories": describe_repositories,
    "DeleteRepository": delete_repository,
    "PutImage": put_image,
    "BatchGetImage": batch_get_image,
    "BatchDeleteImage": batch_delete_image,
    "DescribeImages": describe_images,
    "ListImages": list_images,
    "ListImageReferrers": list_image_referrers,
    "PutLifecyclePolicy": put_lifecycle_policy,
    "GetLifecyclePolicy": get_lifecycle_policy,
    "DeleteLifecyclePolicy": delete_lifecycle_policy,
}

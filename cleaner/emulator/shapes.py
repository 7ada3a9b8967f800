"""Response shapes (botocore ECR model names), built from store state."""

from __future__ import annotations

from cleaner.emulator.store import RegistryStore, RepositoryState, StoredImage
from cleaner.emulator.validation import Body


def repository(store: RegistryStore, repo: RepositoryState) -> Body:
    arn_prefix = f"arn:aws:ecr:{store.region}:{store.account_id}:repository"
    return {
        "repositoryArn": f"{arn_prefix}/{repo.name}",
        "registryId": store.account_id,
        "repositoryName": repo.name,
        "repositoryUri": f"{store.account_id}.dkr.ecr.{store.region}.amazonaws.com/{repo.name}",
        "createdAt": repo.created_at.timestamp(),
        "imageTagMutability": repo.tag_mutability,
        "imageScanningConfiguration": {"scanOnPush": False},
        "encryptionConfiguration": {"encryptionType": "AES256"},
    }


def image_detail(store: RegistryStore, repo: RepositoryState, image: StoredImage) -> Body:
    # Timestamps go out as epoch seconds, which is how botocore's JSON parser reads them.
    out: Body = {
        "registryId": store.account_id,
        "repositoryName": repo.name,
        "imageDigest": image.digest,
        "imageSizeInBytes": repo.size_of(image),
        "imagePushedAt": image.pushed_at.timestamp(),
        "imageManifestMediaType": image.info.media_type,
        "imageStatus": "ACTIVE",
    }
    if image.tags:  # ECR omits the key for an untagged image
        out["imageTags"] = list(image.tags)
    if image.info.artifact_media_type:
        out["artifactMediaType"] = image.info.artifact_media_type
    if image.info.subject:
        out["subjectManifestDigest"] = image.info.subject
    if image.last_pulled_at:
        out["lastRecordedPullTime"] = image.last_pulled_at.timestamp()
    return out


def image(store: RegistryStore, repo: RepositoryState, image: StoredImage, image_id: Body) -> Body:
    return {
        "registryId": store.account_id,
        "repositoryName": repo.name,
        "imageId": image_id,
        "imageManifest": image.manifest,
        "imageManifestMediaType": image.info.media_type,
    }


def referrer(image: StoredImage) -> Body:
    # `size` is the referrer manifest's own length, as in an OCI descriptor.
    return {
        "digest": image.digest,
        "mediaType": image.info.media_type,
        "artifactType": image.info.artifact_media_type or "",
        "size": len(image.manifest.encode()),
        "annotations": dict(image.info.annotations),
        "artifactStatus": "ACTIVE",
    }


def failure(image_id: Body, code: str, reason: str) -> Body:
    return {"imageId": image_id, "failureCode": code, "failureReason": reason}


def with_token(out: Body, token: str | None) -> Body:
    if token is not None:
        out["nextToken"] = token
    return out

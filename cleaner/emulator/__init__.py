"""A local ECR: an aiohttp server speaking ECR's JSON 1.1 API over an in-memory registry.

Tests, benchmarks and the demo seed a `RegistryStore` directly, then point any AWS SDK at
the URL that `running(store)` yields (or run `serve(...)` for the CLI).
"""

from cleaner.emulator.manifests import (
    Platform,
    attestation_descriptor,
    attestation_manifest,
    cosign_signature_manifest,
    cosign_tag,
    descriptor,
    digest_of,
    index_manifest,
    make_manifest,
    referrer_manifest,
)
from cleaner.emulator.seed import seed_demo, seed_names, seed_store
from cleaner.emulator.server import make_app, running, serve
from cleaner.emulator.store import RegistryStore
from cleaner.emulator.throttle import Throttle, TokenBucket
from cleaner.emulator.validation import EcrError

__all__ = [
    "EcrError",
    "Platform",
    "RegistryStore",
    "Throttle",
    "TokenBucket",
    "attestation_descriptor",
    "attestation_manifest",
    "cosign_signature_manifest",
    "cosign_tag",
    "descriptor",
    "digest_of",
    "index_manifest",
    "make_app",
    "make_manifest",
    "referrer_manifest",
    "running",
    "seed_demo",
    "seed_names",
    "seed_store",
    "serve",
]

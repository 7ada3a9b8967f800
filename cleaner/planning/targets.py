"""Targets: the (account, region) pairs one run sweeps, from the flags or the policy file.

A target is one ECR registry: an account, reached through the AWS chain's own credentials or
an IAM role assumed from them, in one region. ECR's API limits, lifecycle policies and
replicated copies are all per account and region (ECR API reference, "Service quotas"), so
each target gets its own concurrency and rate limiter, and a target that fails fails alone.

    targets:
      - role: arn:aws:iam::222222222222:role/ecr-cleaner-member
        regions: [us-east-1, eu-west-1]
        external_id: my-org-cleaner     # when the role's trust policy asks for one
        repositories:                   # optional: this account's own entries
          - {match: "*", rules: [...]}
      - regions: [us-east-1]            # no role: the account of the AWS chain itself

`--role-arn` replaces the file's targets (each role with every `--region`); `--region`
replaces every target's regions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from cleaner.errors import ConfigError
from cleaner.planning.checks import fail, mapping, show
from cleaner.planning.model import Target
from cleaner.planning.names import account_of, is_external_id, is_region, is_role_arn

E = TypeVar("E")
"""A policy file's repository entry (`policy_file.RepositoryEntry`), kept abstract here so
the parser of entries stays in `policy_file`."""
_TARGET_KEYS = ("role", "regions", "external_id", "repositories")
MAX_TARGETS = 1000
"""Accounts times regions: AWS Organizations allow 10,000 accounts, a policy file listing
more than this many targets is a generated mistake."""


@dataclass(frozen=True, slots=True)
class TargetEntry(Generic[E]):
    """One `targets:` entry of the policy file."""

    role: str | None = None
    """IAM role ARN to assume; None = the AWS chain's own account."""
    regions: tuple[str, ...] = ()
    """() = the AWS chain's region (or every `--region`)."""
    external_id: str | None = None
    entries: tuple[E, ...] | None = None
    """This target's own repository entries; None = the file's `repositories:`."""


@dataclass(frozen=True, slots=True)
class TargetSpec(Generic[E]):
    """One target to open: where, as whom, and which repository entries apply."""

    region: str
    role: str | None = None
    external_id: str | None = None
    entries: tuple[E, ...] | None = None

    @property
    def target(self) -> Target:
        """The account is the role's; "" for the chain's own (learnt from the registry)."""
        return Target(account_of(self.role) if self.role else "", self.region)


def parse_targets(
    raw: object, loc: str, parse_entries: Callable[[object, str], tuple[E, ...]]
) -> tuple[TargetEntry[E], ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_TARGETS:
        fail(loc, f"targets must be a list of 1 to {MAX_TARGETS} entries, got {show(raw)}")
    return tuple(_target(item, f"{loc}[{i}]", parse_entries) for i, item in enumerate(raw))


def _target(
    raw: object, loc: str, parse_entries: Callable[[object, str], tuple[E, ...]]
) -> TargetEntry[E]:
    obj = mapping(raw, loc, "the target", _TARGET_KEYS, required=())
    role = obj.get("role")
    if role is not None and not is_role_arn(role):
        fail(loc, f"role must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), "
             f"got {show(role)}")  # fmt: skip
    regions = obj.get("regions", [])
    if not isinstance(regions, list) or not all(is_region(r) for r in regions):
        fail(loc, f"regions must be a list of AWS regions such as eu-west-1, got {show(regions)}")
    external_id = obj.get("external_id")
    if external_id is not None and not is_external_id(external_id):
        fail(loc, "external_id must be 2 to 1224 letters, digits or +=,.@:/-, "
             f"got {show(external_id)}")  # fmt: skip
    entries = obj.get("repositories")
    return TargetEntry(
        role=role if isinstance(role, str) else None,
        regions=tuple(dict.fromkeys(str(r) for r in regions)),
        external_id=external_id if isinstance(external_id, str) else None,
        entries=None if entries is None else parse_entries(entries, f"{loc}: repositories"),
    )


def resolve_targets(
    entries: Sequence[TargetEntry[E]],
    *,
    roles: Sequence[str] = (),
    regions: Sequence[str] = (),
    external_id: str | None = None,
    default_region: str | None = None,
) -> list[TargetSpec[E]]:
    """Every (role, region) to sweep, in order and without repeats.

    Flags win over the file: `roles` replaces its targets, `regions` every target's regions.
    With neither, one target: the AWS chain's own account in the chain's region.
    """
    chosen: list[TargetEntry[E]] = [TargetEntry(role, (), external_id) for role in roles]
    if not chosen:
        chosen = list(entries) or [TargetEntry()]
    specs: dict[tuple[str | None, str], TargetSpec[E]] = {}
    for entry in chosen:
        for region in regions or entry.regions or _chain_region(default_region):
            spec = TargetSpec(region, entry.role, entry.external_id or external_id, entry.entries)
            specs.setdefault((entry.role, region), spec)
    return list(specs.values())


def _chain_region(region: str | None) -> tuple[str, ...]:
    if not region:
        raise ConfigError(
            "no AWS region: pass --region, set AWS_REGION, or give the targets regions"
        )
    return (region,)

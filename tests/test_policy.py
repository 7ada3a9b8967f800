"""The policy file: the extended form, bare ECR documents, and errors that name the entry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cleaner.errors import PolicyError
from cleaner.planning.policy_file import (
    CoordinationSection,
    KubernetesSection,
    load_policy_file,
    parse_policy_file,
)

RULE = {
    "rulePriority": 1,
    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3},
    "action": {"type": "expire"},
}
FULL = """
repositories:
  - match: "team-a/*"
    rules:
      - rulePriority: 1
        selection:
          {tagStatus: untagged, countType: sinceImagePushed, countUnit: days, countNumber: 1}
        action: {type: expire}
  - match: ["legacy/*", "old-*"]
    rules: ecr
protect:
  tags: ["prod", "release-*"]
  tag_regex: ['v\\d+\\.\\d+\\.\\d+']
  semver: {keep: 3, per: minor}
  newer_than: 15m
  pulled_within: 30d
safety:
  keep_at_least: 2
  max_deletions: 5000
"""


def test_the_extended_form_parses_every_field(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FULL)
    policy = load_policy_file(path)
    first, second = policy.entries
    assert first.match == ("team-a/*",) and first.lifecycle and len(first.lifecycle.rules) == 1
    assert second.match == ("legacy/*", "old-*") and second.lifecycle is None
    assert policy.protect.tags == ("prod", "release-*")
    assert policy.protect.tag_regex[0].fullmatch("v1.2.3")
    assert policy.protect.semver and (policy.protect.semver.keep, policy.protect.semver.per) == (
        3,
        "minor",
    )
    assert policy.protect.newer_than == timedelta(minutes=15)
    assert policy.protect.pulled_within == timedelta(days=30)
    assert (policy.safety.keep_at_least, policy.safety.max_deletions) == (2, 5000)


def test_defaults_grace_one_hour_keep_at_least_one_no_deletion_limit() -> None:
    policy = parse_policy_file({"repositories": [{"match": "*", "rules": [RULE]}]})
    assert policy.protect.newer_than == timedelta(hours=1) and policy.protect.pulled_within is None
    assert (policy.safety.keep_at_least, policy.safety.max_deletions) == (1, None)


def test_a_bare_ecr_document_applies_to_every_repository_with_the_defaults() -> None:
    policy = parse_policy_file({"rules": [RULE]})
    entry = policy.entry_for("any/name")
    assert entry and entry.lifecycle and entry.lifecycle.rules[0].count_number == 3
    assert policy.safety.keep_at_least == 1


def test_first_matching_entry_wins_and_unmatched_repositories_are_left_alone() -> None:
    policy = parse_policy_file(
        {
            "repositories": [
                {"match": "team-a/*", "rules": "ecr"},
                {"match": "team-*", "rules": [RULE]},
            ]
        }
    )
    assert (entry := policy.entry_for("team-a/api")) and entry.lifecycle is None
    assert (entry := policy.entry_for("team-b/api")) and entry.lifecycle is not None
    assert policy.entry_for("other") is None


def entry(**fields: Any) -> dict[str, Any]:
    return {"repositories": [{"match": "team/*", "rules": [RULE], **fields}]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param([], "expected a mapping", id="a list is not a policy"),
        pytest.param({"repositories": []}, "non-empty list", id="no entries"),
        pytest.param(
            {"repositories": [{"rules": [RULE]}]},
            'repositories[0]: the entry is missing required key "match"',
            id="entry without match",
        ),
        pytest.param(
            {"repositories": [{"match": "a"}]},
            'missing required key "rules"',
            id="entry without rules",
        ),
        pytest.param(
            entry(keep=1),
            'repositories[0]: the entry has unknown key "keep"',
            id="unknown key in an entry",
        ),
        pytest.param(
            {"repositories": [{"match": "Team/*", "rules": [RULE]}]},
            "can never match",
            id="uppercase glob",
        ),
        pytest.param(
            {"repositories": [{"match": "team/[ab", "rules": [RULE]}]},
            "unclosed [",
            id="unclosed bracket",
        ),
        pytest.param(
            {"repositories": [{"match": [], "rules": [RULE]}]},
            "match must be a glob",
            id="empty match list",
        ),
        pytest.param(
            {"repositories": [{"match": "a", "rules": "lifecycle"}]},
            'rules must be a list of ECR lifecycle rules or "ecr"',
            id="rules neither list nor ecr",
        ),
        pytest.param(
            {
                "repositories": [
                    {"match": "ok/*", "rules": [RULE]},
                    {"match": "bad/*", "rules": [{**RULE, "rulePriority": 0}]},
                ]
            },
            'repositories[1] (match "bad/*"): rules[0]: rulePriority must be a positive integer',
            id="an invalid rule names its entry",
        ),
        pytest.param(
            {"rules": [RULE], "protect": {}},
            'only "rules"; found "protect"',
            id="bare document with extra keys",
        ),
        pytest.param({**entry(), "extra": 1}, 'unknown key "extra"', id="unknown top-level key"),
        pytest.param(
            {**entry(), "protect": {"tag": ["x"]}},
            'protect: protect has unknown key "tag"',
            id="unknown protect key",
        ),
        pytest.param(
            {**entry(), "protect": {"tag_regex": ["v("]}},
            'tag_regex "v(" is not a valid regex',
            id="bad regex",
        ),
        pytest.param(
            {**entry(), "protect": {"tags": "prod"}}, "tags must be a list", id="tags not a list"
        ),
        pytest.param(
            {**entry(), "protect": {"newer_than": "1 hour"}},
            "newer_than: not a duration",
            id="bad duration",
        ),
        pytest.param(
            {**entry(), "protect": {"pulled_within": 30}},
            "pulled_within: not a duration",
            id="duration without unit",
        ),
        pytest.param(
            {**entry(), "protect": {"semver": {"keep": 0}}},
            "keep must be a positive integer",
            id="semver keep zero",
        ),
        pytest.param(
            {**entry(), "protect": {"semver": {"keep": 1, "per": "patch"}}},
            'per must be "none" or "major" or "minor"',
            id="semver per unknown",
        ),
        pytest.param(
            {**entry(), "safety": {"keep_at_least": -1}},
            "keep_at_least must be a whole number",
            id="negative keep_at_least",
        ),
        pytest.param(
            {**entry(), "safety": {"max_deletions": 0}},
            "max_deletions must be a positive integer",
            id="zero max_deletions",
        ),
        pytest.param(
            {**entry(), "safety": {"max": 1}}, 'unknown key "max"', id="unknown safety key"
        ),
    ],
)
def test_errors_name_the_offending_entry(doc: object, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy_file(doc, "policy.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("policy.yaml")


def test_json_files_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"repositories": [{"match": "*", "rules": "ecr"}]}')
    assert load_policy_file(path).entries[0].lifecycle is None


def test_yaml_syntax_errors_are_one_line_with_a_position(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("repositories:\n  - match: [unclosed\n")
    with pytest.raises(PolicyError, match=r"not valid YAML or JSON: .* at line \d+, column \d+$"):
        load_policy_file(path)


def test_cluster_settings_default_to_auto_and_parse_contexts_and_coordination() -> None:
    assert parse_policy_file(entry()).in_use == "auto"
    doc = {
        **entry(),
        "protect": {"in_use": False},
        "kubernetes": {"contexts": ["prod", "staging"], "kubeconfig": "/etc/kube"},
        "coordination": {"namespace": "ecr-cleaner", "lease_seconds": 30},
    }
    policy = parse_policy_file(doc)
    assert policy.in_use == "off"
    assert policy.kubernetes == KubernetesSection(("prod", "staging"), "/etc/kube")
    assert policy.coordination == CoordinationSection("ecr-cleaner", 30)

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
            'protect: unknown key "tag": did you mean "tags"?',
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


def test_every_problem_in_the_file_is_named_with_its_location() -> None:
    doc = {
        "repositories": [
            {"match": "ok/*", "rules": [RULE, {**RULE, "rulePriority": 2, "selection": {}}]},
            {"match": "Bad/*", "rules": "ecr"},
        ],
        "protect": {"tag": ["prod"], "newer_than": "1 week", "semver": {"keep": 0}},
        "safety": {"keep_at_least": -1, "max_deletions": 0},
        "kubernetes": {"contexts": "prod"},
        "coordination": {"lease_seconds": 0, "namespace": ""},
    }
    with pytest.raises(PolicyError) as caught:
        parse_policy_file(doc, "p.yaml")
    problems = caught.value.problems
    expected = [
        'repositories[0] (match "ok/*"): rules[1] (rulePriority 2): selection is missing',
        'repositories[1]: match glob "Bad/*" can never match',
        'protect: unknown key "tag": did you mean "tags"?',
        "protect.semver: keep must be a positive integer",
        "protect: newer_than: not a duration",
        "safety: keep_at_least must be a whole number",
        "safety: max_deletions must be a positive integer",
        "kubernetes: contexts must be a list",
        "coordination: namespace must be a name",
        "coordination: lease_seconds must be a positive integer",
    ]
    assert len(problems) == len(expected), problems
    for problem, part in zip(problems, expected, strict=True):
        assert problem.startswith("p.yaml: ") and part in problem, (part, problem)
    # One line for anything that prints one: the first problem and how many more.
    assert str(caught.value) == f"{problems[0]} (and {len(expected) - 1} more)"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param(
            {"rules": [{**RULE, "priority": 1}]},
            'the rule has unknown key "priority": did you mean "rulePriority"?',
            id="rule key",
        ),
        pytest.param(
            {"rules": [{**RULE, "selection": {**RULE["selection"], "tagstatus": "any"}}]},
            'selection has unknown key "tagstatus": did you mean "tagStatus"?',
            id="selection key",
        ),
        pytest.param(
            {"repositories": [{"match": "*", "rules": "ecr"}], "protection": {}},
            'unknown key "protection": did you mean "protect"?',
            id="top-level key",
        ),
        pytest.param(
            {"repositories": [{"match": "*", "rules": "ecr"}], "zzz": {}},
            'the policy file has unknown key "zzz" (allowed: repositories,',
            id="nothing close",
        ),
    ],
)
def test_an_unknown_key_names_the_closest_allowed_one(doc: object, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy_file(doc, "p.yaml")
    assert [message in p for p in caught.value.problems] == [True], caught.value.problems


def test_a_misspelt_required_key_is_one_problem_not_two() -> None:
    doc = {"repositories": [{"match": "*", "rule": "ecr"}]}
    with pytest.raises(PolicyError) as caught:
        parse_policy_file(doc, "p.yaml")
    assert caught.value.problems == (
        'p.yaml: repositories[0]: the entry has unknown key "rule": did you mean "rules"? '
        "(allowed: match, rules)",
    )


def test_rule_set_checks_run_beside_a_typo_but_not_beside_an_unreadable_rule() -> None:
    any_first = {**RULE, "rulePriority": 1, "descripton": "typo"}
    untagged = {
        "rulePriority": 2,
        "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"},
    }
    with pytest.raises(PolicyError) as caught:
        parse_policy_file({"rules": [any_first, untagged]}, "p.yaml")
    assert len(caught.value.problems) == 2 and "must have the highest" in caught.value.problems[1]
    unreadable = {**untagged, "action": {"type": "delete"}}
    with pytest.raises(PolicyError) as caught:
        parse_policy_file({"rules": [any_first, unreadable]}, "p.yaml")
    assert len(caught.value.problems) == 2 and "action.type must be" in caught.value.problems[1]

"""Validation of ECR lifecycle policy documents: one row per documented constraint."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cleaner.errors import PolicyError
from cleaner.planning.lifecycle import MAX_POLICY_CHARS, parse_policy, parse_policy_text
from cleaner.planning.model import ActionType, CountType, TagStatus

DROP: Any = object()
"""Pass as a field value to leave that field out of the generated rule."""

TRANSITION = {"type": "transition", "targetStorageClass": "archive"}


def rule(priority: Any = 1, *, description: Any = DROP, action: Any = DROP, **sel: Any) -> Any:
    """A valid `any imageCountMoreThan 1 expire` rule, with the given fields replaced."""
    selection = {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}
    selection.update(sel)
    raw = {
        "rulePriority": priority,
        "description": description,
        "selection": {k: v for k, v in selection.items() if v is not DROP},
        "action": {"type": "expire"} if action is DROP else action,
    }
    return {k: v for k, v in raw.items() if v is not DROP}


def tagged(priority: int, *patterns: str, **sel: Any) -> Any:
    return rule(priority, tagStatus="tagged", tagPatternList=list(patterns), **sel)


def policy(*rules: Any) -> Any:
    return {"rules": list(rules)}


AGED = {"countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14}
PULLED = {"countType": "sinceImagePulled", "countUnit": "days", "countNumber": 90}
ARCHIVED = {
    "storageClass": "archive",
    "countType": "sinceImageTransitioned",
    "countUnit": "days",
    "countNumber": 365,
}

INVALID = [
    # --- the document ---
    pytest.param([], "policy: the policy must be an object, got []", id="a list is not a policy"),
    pytest.param({}, 'missing required key "rules"', id="a policy without rules is rejected"),
    pytest.param(
        {"rules": [rule()], "version": 1},
        'the policy has unknown key "version"',
        id="an unknown top-level key is rejected",
    ),
    pytest.param({"rules": {}}, "rules must be a list", id="rules must be a list"),
    pytest.param(policy(), "1 to 50 rules, got 0", id="an empty rule list is rejected"),
    pytest.param(
        policy(*(tagged(p, f"t{p}*") for p in range(1, 52))),
        "1 to 50 rules, got 51",
        id="more than 50 rules are rejected",
    ),
    # --- the rule ---
    pytest.param(
        policy("x"), "rules[0]: the rule must be an object", id="a rule must be an object"
    ),
    pytest.param(
        policy(rule() | {"priority": 1}),
        'rules[0]: the rule has unknown key "priority"',
        id="an unknown rule key is rejected",
    ),
    pytest.param(
        policy(rule(DROP)),
        'rules[0]: the rule is missing required key "rulePriority"',
        id="a rule without rulePriority is rejected",
    ),
    pytest.param(
        policy({"rulePriority": 1, "action": {"type": "expire"}}),
        'missing required key "selection"',
        id="a rule without selection is rejected",
    ),
    pytest.param(
        policy({k: v for k, v in rule().items() if k != "action"}),
        'missing required key "action"',
        id="a rule without action is rejected",
    ),
    pytest.param(
        policy(rule(0)),
        "rulePriority must be a positive integer, got 0",
        id="rulePriority 0 is rejected",
    ),
    pytest.param(
        policy(rule(-2)),
        "rulePriority must be a positive integer, got -2",
        id="a negative rulePriority is rejected",
    ),
    pytest.param(
        policy(rule("1")),
        'rulePriority must be a positive integer, got "1"',
        id="a rulePriority string is rejected",
    ),
    pytest.param(
        policy(rule(True)),
        "rulePriority must be a positive integer, got true",
        id="true is not a rulePriority",
    ),
    pytest.param(
        policy(rule(1.0)),
        "rulePriority must be a positive integer, got 1.0",
        id="a float rulePriority is rejected",
    ),
    pytest.param(
        policy(tagged(1, "a*"), tagged(1, "b*")),
        "rules[1] (rulePriority 1): rulePriority 1 is already used by rules[0] (rulePriority 1)",
        id="two rules with the same priority are rejected",
    ),
    pytest.param(
        policy(rule(description=7)),
        "rules[0] (rulePriority 1): description must be a string, got 7",
        id="a description must be a string",
    ),
    # --- the selection ---
    pytest.param(
        policy(rule() | {"selection": []}),
        "rules[0] (rulePriority 1): selection must be an object",
        id="a selection must be an object",
    ),
    pytest.param(
        policy(rule(tagPrefix=["a"])),
        'selection has unknown key "tagPrefix"',
        id="a misspelt selection key is rejected",
    ),
    pytest.param(policy(rule(tagStatus=DROP)), '"tagStatus"', id="tagStatus is required"),
    pytest.param(policy(rule(countType=DROP)), '"countType"', id="countType is required"),
    pytest.param(policy(rule(countNumber=DROP)), '"countNumber"', id="countNumber is required"),
    pytest.param(
        policy(rule(tagStatus="TAGGED")),
        'tagStatus must be "tagged" or "untagged" or "any", got "TAGGED"',
        id="tagStatus values are case-sensitive",
    ),
    pytest.param(
        policy(tagged(1, "a*"), tagged(2, "b*"), rule(3, tagStatus="tagged")),
        "policy: rules[2] (rulePriority 3): "
        'tagStatus "tagged" needs tagPatternList or tagPrefixList',
        id="a tagged rule needs a pattern or prefix list",
    ),
    pytest.param(
        policy(tagged(1, "a*", tagPrefixList=["a"])),
        'tagStatus "tagged" takes tagPatternList or tagPrefixList, not both',
        id="a tagged rule may not have both lists",
    ),
    pytest.param(
        policy(rule(tagStatus="untagged", tagPatternList=["a*"])),
        'tagStatus "untagged" must omit tagPatternList and tagPrefixList',
        id="an untagged rule may not filter on tags",
    ),
    pytest.param(
        policy(rule(tagPrefixList=["a"])),
        'tagStatus "any" must omit tagPatternList and tagPrefixList',
        id="an any rule may not filter on tags",
    ),
    pytest.param(
        policy(tagged(1)),
        "tagPatternList must be a non-empty list of strings, got []",
        id="an empty pattern list is rejected",
    ),
    pytest.param(
        policy(rule(tagStatus="tagged", tagPatternList="prod*")),
        'tagPatternList must be a non-empty list of strings, got "prod*"',
        id="a bare string is not a pattern list",
    ),
    pytest.param(
        policy(tagged(1, "a*", "")),
        'tagPatternList[1] must be a non-empty string, got ""',
        id="an empty pattern is rejected",
    ),
    pytest.param(
        policy(rule(tagStatus="tagged", tagPrefixList=[None])),
        "tagPrefixList[0] must be a non-empty string, got null",
        id="a null prefix is rejected",
    ),
    pytest.param(
        policy(tagged(1, "a" * 301)),
        "tagPatternList[0] is longer than any tag can be (300 characters)",
        id="a pattern longer than any tag is rejected",
    ),
    pytest.param(
        policy(tagged(1, "test*1*2*3*4*5*6")),
        'tagPatternList[0] "test*1*2*3*4*5*6" has 6 wildcards, at most 4 allowed',
        id="the documented invalid pattern with six wildcards is rejected",
    ),
    pytest.param(
        policy(tagged(1, "*a*b*c*d*")),
        "has 5 wildcards, at most 4 allowed",
        id="five wildcards are one too many",
    ),
    pytest.param(
        policy(rule(tagStatus="tagged", tagPrefixList=["prod*"])),
        'tagPrefixList[0] "prod*" contains "*"; prefixes are literal, use tagPatternList',
        id="a wildcard in a prefix is rejected rather than guessed",
    ),
    pytest.param(
        policy(rule(countType="imageCountLessThan")),
        'countType must be "imageCountMoreThan" or "sinceImagePushed"',
        id="an unknown countType is rejected",
    ),
    pytest.param(
        policy(rule(countNumber=0)),
        "countNumber must be a positive integer, got 0",
        id="countNumber 0 is rejected",
    ),
    pytest.param(
        policy(rule(countNumber=-1)),
        "positive integer, got -1",
        id="a negative countNumber is rejected",
    ),
    pytest.param(
        policy(rule(countNumber=True)), "positive integer, got true", id="true is not a countNumber"
    ),
    pytest.param(
        policy(rule(countNumber="5")),
        'positive integer, got "5"',
        id="a countNumber string is rejected",
    ),
    pytest.param(
        policy(rule(countNumber=1.5)),
        "positive integer, got 1.5",
        id="a float countNumber is rejected",
    ),
    pytest.param(
        policy(rule(countNumber=None)),
        "positive integer, got null",
        id="a null countNumber is rejected",
    ),
    pytest.param(
        policy(rule(countUnit="days")),
        'countUnit is not allowed with countType "imageCountMoreThan"',
        id="a count rule may not carry a countUnit",
    ),
    pytest.param(
        policy(rule(**(AGED | {"countUnit": DROP}))),
        'countType "sinceImagePushed" needs countUnit "days"',
        id="an age rule needs a countUnit",
    ),
    pytest.param(
        policy(rule(**(AGED | {"countUnit": "hours"}))),
        'countUnit must be "days", got "hours"',
        id="days is the only countUnit",
    ),
    pytest.param(
        policy(rule(**(AGED | {"countUnit": None}))),
        'countUnit must be "days", got null',
        id="a null countUnit is rejected",
    ),
    pytest.param(
        policy(rule(storageClass="glacier")),
        'storageClass must be "standard" or "archive", got "glacier"',
        id="an unknown storageClass is rejected",
    ),
    pytest.param(
        policy(rule(**(AGED | {"storageClass": "archive"}))),
        'storageClass "archive" is only allowed with countType "sinceImageTransitioned"',
        id="archive storage needs sinceImageTransitioned",
    ),
    pytest.param(
        policy(rule(**(ARCHIVED | {"storageClass": DROP}))),
        'countType "sinceImageTransitioned" needs storageClass "archive"',
        id="sinceImageTransitioned does not default to archive storage",
    ),
    pytest.param(
        policy(rule(**(ARCHIVED | {"storageClass": "standard"}))),
        'countType "sinceImageTransitioned" needs storageClass "archive"',
        id="sinceImageTransitioned is not allowed on standard storage",
    ),
    # --- the action ---
    pytest.param(
        policy(rule(action="expire")),
        "action must be an object",
        id="an action must be an object",
    ),
    pytest.param(
        policy(rule(action={"type": "expire", "after": 1})),
        'action has unknown key "after"',
        id="an unknown action key is rejected",
    ),
    pytest.param(
        policy(rule(action={})),
        'action is missing required key "type"',
        id="an action needs a type",
    ),
    pytest.param(
        policy(rule(action={"type": "delete"})),
        'action.type must be "expire" or "transition", got "delete"',
        id="an unknown action type is rejected",
    ),
    pytest.param(
        policy(rule(action={"type": "transition"})),
        'action.type "transition" needs targetStorageClass "archive", got nothing',
        id="a transition needs a target storage class",
    ),
    pytest.param(
        policy(rule(action={"type": "transition", "targetStorageClass": "glacier"})),
        'needs targetStorageClass "archive", got "glacier"',
        id="archive is the only transition target",
    ),
    pytest.param(
        policy(rule(action={"type": "expire", "targetStorageClass": "archive"})),
        'action.type "expire" must omit action.targetStorageClass',
        id="an expire action may not name a target",
    ),
    pytest.param(
        policy(rule(action={"type": "expire", "targetStorageClass": None})),
        'action.type "expire" must omit action.targetStorageClass',
        id="an expire action may not carry a null target",
    ),
    pytest.param(
        policy(rule(**PULLED)),
        'countType "sinceImagePulled" needs action.type "transition"',
        id="sinceImagePulled cannot expire",
    ),
    pytest.param(
        policy(rule(**ARCHIVED, action=TRANSITION)),
        'countType "sinceImageTransitioned" needs action.type "expire"',
        id="sinceImageTransitioned cannot transition",
    ),
    # --- the rules together ---
    pytest.param(
        policy(rule(1), tagged(2, "a*")),
        'rules[0] (rulePriority 1): tagStatus "any" must have the highest rulePriority among '
        'storageClass "standard" rules, but rules[1] (rulePriority 2) comes after it',
        id="the any rule must come last",
    ),
    pytest.param(
        policy(rule(3), rule(4)),
        'rules[0] (rulePriority 3): tagStatus "any" must have the highest rulePriority',
        id="two any rules in one storage class are rejected",
    ),
    pytest.param(
        policy(rule(**ARCHIVED), rule(2, **ARCHIVED | {"tagStatus": "untagged"})),
        'tagStatus "any" must have the highest rulePriority among storageClass "archive" rules',
        id="the any rule must come last among archive rules too",
    ),
    pytest.param(
        policy(rule(5, tagStatus="untagged"), rule(2, tagStatus="untagged", **AGED)),
        'rules[0] (rulePriority 5): only one storageClass "standard" rule may select untagged '
        "images; rules[1] (rulePriority 2) does",
        id="two untagged rules in one storage class are rejected",
    ),
    pytest.param(
        policy(tagged(1, "prod*"), tagged(2, "prod*", **AGED)),
        "rules[1] (rulePriority 2): "
        "tagPatternList repeats the tag set of rules[0] (rulePriority 1)",
        id="two rules with the same patterns are rejected",
    ),
    pytest.param(
        policy(tagged(1, "a*", "b*"), tagged(2, "b*", "a*")),
        "tagPatternList repeats the tag set of rules[0]",
        id="the same patterns in another order are the same set",
    ),
    pytest.param(
        policy(
            rule(1, tagStatus="tagged", tagPrefixList=["prod"]),
            rule(2, tagStatus="tagged", tagPrefixList=["prod"], **AGED),
        ),
        "tagPrefixList repeats the tag set of rules[0]",
        id="two rules with the same prefixes are rejected",
    ),
]


@pytest.mark.parametrize(("doc", "message"), INVALID)
def test_invalid_policy_is_rejected_with_a_message_naming_the_field(doc: Any, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(doc)
    assert message in str(caught.value)


# The AWS examples ("Examples of lifecycle policies in Amazon ECR"), as documents.
M_A = """{"rules":[
 {"rulePriority":1,"description":"Rule 1","selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
 {"rulePriority":2,"description":"Rule 2","selection":{"tagStatus":"tagged","tagPatternList":["beta*"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"""  # noqa: E501
ALL_B = """{"rules":[
 {"rulePriority":1,"description":"Rule 1","selection":{"tagStatus":"tagged","tagPatternList":["alpha*"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
 {"rulePriority":2,"description":"Rule 2","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}},
 {"rulePriority":3,"description":"Rule 3","selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"""  # noqa: E501

VALID = [
    pytest.param(policy(tagged(1, "prod*", **AGED)), id="aws example: filtering on image age"),
    pytest.param(policy(rule(**PULLED, action=TRANSITION)), id="aws example: last pulled time"),
    pytest.param(policy(rule(**ARCHIVED)), id="aws example: archive transition time"),
    pytest.param(policy(rule(tagStatus="untagged")), id="aws example: filtering on image count"),
    pytest.param(
        policy(tagged(1, "prod*", **(AGED | {"countNumber": 30}), action=TRANSITION)),
        id="aws example: archive tagged images after 30 days",
    ),
    pytest.param(
        policy(rule(1, **(AGED | {"countNumber": 30}), action=TRANSITION), rule(2, **ARCHIVED)),
        id="aws example: an any rule per storage class",
    ),
    pytest.param(json.loads(M_A), id="aws example M-A"),
    pytest.param(json.loads(ALL_B), id="aws example ALL-B: untagged rule next to an any rule"),
    pytest.param(
        policy(tagged(1, "*test*1*2*3", "test*1*2*3*")),
        id="the documented valid patterns with four wildcards are accepted",
    ),
    pytest.param(
        policy(*(tagged(p, f"t{p}*") for p in range(1, 50)), rule(50)),
        id="fifty rules are accepted",
    ),
    pytest.param(
        policy(tagged(1, "prod"), rule(2, tagStatus="tagged", tagPrefixList=["prod"])),
        id="a pattern list and a prefix list are different filters",
    ),
    pytest.param(
        policy(rule(1, tagStatus="untagged"), rule(2, tagStatus="untagged", **ARCHIVED)),
        id="one untagged rule per storage class is allowed",
    ),
    pytest.param(policy(tagged(1, "a" * 300)), id="a pattern as long as the longest tag is fine"),
    pytest.param(policy(tagged(1, "a" * 300 + "*")), id="a wildcard does not count towards length"),
]


@pytest.mark.parametrize("doc", VALID)
def test_valid_policy_is_accepted(doc: Any) -> None:
    parsed = parse_policy(doc)
    assert len(parsed.rules) == len(doc["rules"])


def test_rules_come_back_sorted_by_priority_with_every_field() -> None:
    parsed = parse_policy(
        policy(
            rule(30, description="last"),
            rule(7, tagStatus="tagged", tagPrefixList=["v1", "rc"], **AGED),
            tagged(2, "prod*", **PULLED, action=TRANSITION),
        )
    )
    first, second, last = parsed.rules
    assert [r.priority for r in parsed.rules] == [2, 7, 30]
    assert (first.tag_status, first.tag_patterns, first.count_type) == (
        TagStatus.TAGGED,
        ("prod*",),
        CountType.SINCE_IMAGE_PULLED,
    )
    assert (first.action, first.count_number, first.storage_class) == (
        ActionType.TRANSITION,
        90,
        "standard",
    )
    assert (second.tag_prefixes, second.tag_patterns, second.count_number) == (("v1", "rc"), (), 14)
    assert (last.description, last.tag_status, last.action) == ("last", TagStatus.ANY, "expire")


def test_archive_rule_keeps_its_storage_class() -> None:
    (parsed,) = parse_policy(policy(rule(**ARCHIVED))).rules
    assert (parsed.storage_class, parsed.count_type) == ("archive", "sinceImageTransitioned")


def test_where_prefixes_every_message() -> None:
    with pytest.raises(PolicyError, match=r"^repo web/api: rules\[0\] \(rulePriority 1\): "):
        parse_policy(policy(rule(countNumber=0)), where="repo web/api")


def test_policy_text_round_trips_the_aws_example() -> None:
    parsed = parse_policy_text(ALL_B)
    assert [r.description for r in parsed.rules] == ["Rule 1", "Rule 2", "Rule 3"]


def test_policy_text_at_the_length_limit_is_accepted() -> None:
    text = json.dumps(policy(rule()))
    padded = text[:-1] + " " * (MAX_POLICY_CHARS - len(text)) + "}"
    assert len(padded) == MAX_POLICY_CHARS
    assert parse_policy_text(padded).rules[0].priority == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            " " * (MAX_POLICY_CHARS - 1) + "{}",
            f"is {MAX_POLICY_CHARS + 1} characters, the limit is {MAX_POLICY_CHARS}",
            id="text over 30720 characters is rejected",
        ),
        pytest.param("{rules: []}", "policy: not valid JSON", id="text that is not JSON"),
        pytest.param(b"{}", "policy text must be a string, got bytes", id="bytes are not text"),
        pytest.param('{"rules": []}', "1 to 50 rules, got 0", id="valid JSON is still validated"),
    ],
)
def test_bad_policy_text_is_rejected(text: Any, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(text)
    assert message in str(caught.value)

"""The published JSON Schema (schema/policy.schema.json) says what the validator says.

What a schema can state, it must state exactly as the validator does: a document the
validator accepts is valid under the schema (an editor never flags a good file), and a
document with a problem the schema can express is invalid under it. What a schema cannot
state (unique priorities, rule order, RE2, the 36,500-day bound, ...) is listed in the
schema's `$comment` and in INEXPRESSIBLE below; only those problems may pass the schema.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleaner.errors import PolicyError
from cleaner.planning import lifecycle, policy_file
from cleaner.planning.policy_file import parse_policy_file
from cleaner.planning.units import DURATION_PATTERN

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schema/policy.schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

# Problems only the validator can find (their message fragments), as the `$comment` says.
INEXPRESSIBLE = (
    "is already used by",  # unique rulePriority
    "must have the highest rulePriority",  # tagStatus any last, per storage class
    "may select untagged images",  # one untagged rule per storage class
    "repeats the tag set",  # unique tag sets
    "not a valid regex for RE2",
    "has an unclosed [",
    "longer than 36500 days",
    "is longer than any tag can be",
)


def validator_problems(doc: object) -> tuple[str, ...]:
    try:
        parse_policy_file(doc, "p")
    except PolicyError as error:
        return error.problems
    return ()


def test_the_schema_is_a_valid_draft_7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_the_schema_names_exactly_the_keys_the_validator_knows() -> None:
    defs = SCHEMA["definitions"]

    def keys(name: str) -> set[str]:
        return set(defs[name]["properties"])

    assert keys("policyFile") == set(policy_file._TOP_KEYS)
    assert keys("entry") == set(policy_file._ENTRY_KEYS)
    assert keys("protect") == set(policy_file._PROTECT_KEYS)
    assert keys("safety") == set(policy_file._SAFETY_KEYS)
    assert keys("rule") == set(lifecycle._RULE_KEYS)
    assert keys("selection") == set(lifecycle._SELECTION_KEYS)
    assert keys("action") == set(lifecycle._ACTION_KEYS)
    assert defs["duration"]["pattern"] == rf"^\s*{DURATION_PATTERN}\s*$"
    assert defs["glob"]["pattern"] == f"^{policy_file._GLOB_CHARS.pattern}$"


SHIPPED = [
    ROOT / "k8s/policy.yaml",
    ROOT / "cleaner/data/demo-policy.yaml",
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_shipped_policies_are_valid_under_the_schema(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert validator_problems(doc) == ()
    assert list(VALIDATOR.iter_errors(doc)) == []


# -- generated documents ----------------------------------------------------------------------
# Well-formed documents (valid but for the rules' order and uniqueness, which are drawn
# freely), then up to three mutations: a value of the wrong kind, a key dropped, a stranger
# key added (the typos people make).

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 3),
    st.sampled_from(["", "x", "ecr", "*", "days", "1h", "any", "archive", "1 week", "1d1d"]),
    st.lists(st.integers(0, 2), max_size=2),
    st.builds(dict),
)
STRANGERS = st.sampled_from(["tag", "rule", "priority", "tagstatus", "protection", "zzz"])
# Real keys with plausible values, added where they may not belong (countUnit on a count
# rule, a target on an expire action, a tag list on an untagged rule, ...).
MISPLACED = st.sampled_from(
    [
        ("countUnit", "days"),
        ("targetStorageClass", "archive"),
        ("tagPatternList", ["a*"]),
        ("tagPrefixList", ["a"]),
        ("storageClass", "archive"),
        ("storageClass", "standard"),
        ("per", "major"),
        ("max_deletions", None),
    ]
)
tags = st.lists(st.text(alphabet="ab-", min_size=1, max_size=4), min_size=1, max_size=2)
patterns = st.lists(st.text(alphabet="ab-*", min_size=1, max_size=7), min_size=1, max_size=2)


def rarely(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly `good`; now and then `bad` (a value only some checks refuse)."""
    return st.one_of(good, good, good, good, bad)


days = st.one_of(st.integers(1, 40), st.just(36_500))
counts = rarely(st.integers(1, 40), st.sampled_from([2**31 - 1, 2**31]))


@st.composite
def selections(
    draw: st.DrawFn, statuses: tuple[str, ...] = ("tagged", "untagged", "any"), unique: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A selection and the action its count type asks for; `unique` joins its tag list."""
    status = draw(st.sampled_from(statuses))
    selection: dict[str, Any] = {"tagStatus": status}
    if status == "tagged":
        key = draw(st.sampled_from(["tagPatternList", "tagPrefixList"]))
        chosen = draw(patterns if key == "tagPatternList" else tags)
        selection[key] = [*chosen, unique] if unique else chosen
    kind = draw(st.sampled_from(["count", "pushed", "pulled", "transitioned"]))
    action: dict[str, Any] = {"type": "expire"}
    if kind == "count":
        selection.update(countType="imageCountMoreThan", countNumber=draw(counts))
        return selection, action
    count_type = {"pushed": "sinceImagePushed", "pulled": "sinceImagePulled"}.get(
        kind, "sinceImageTransitioned"
    )
    selection.update(countType=count_type, countUnit="days", countNumber=draw(days))
    if kind == "pulled":
        action = {"type": "transition", "targetStorageClass": "archive"}
    if kind == "transitioned":
        selection["storageClass"] = "archive"
    elif draw(st.booleans()):
        selection["storageClass"] = "standard"
    return selection, action


# One key more or less that the pairing rules care about (countUnit on a count rule, a
# target on an expire action, a tag list on an untagged rule, ...): valid for some rules.
SLIPS: list[tuple[str, str, Any]] = [
    ("selection", "countUnit", "days"),
    ("selection", "countUnit", None),
    ("selection", "storageClass", "archive"),
    ("selection", "storageClass", "standard"),
    ("selection", "tagPatternList", ["a*"]),
    ("selection", "tagPrefixList", ["a"]),
    ("selection", "countNumber", 36_501),
    ("action", "targetStorageClass", "archive"),
    ("action", "targetStorageClass", None),
    ("action", "type", "expire"),
    ("action", "type", "transition"),
    ("rule", "action", {"type": "expire"}),
    ("rule", "action", {"type": "transition", "targetStorageClass": "archive"}),
]


@st.composite
def slipped_selections(
    draw: st.DrawFn, statuses: tuple[str, ...], unique: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    selection, action = draw(selections(statuses, unique))
    if draw(st.integers(0, 2)) == 0:
        where, key, value = copy.deepcopy(draw(st.sampled_from(SLIPS)))
        target = selection if where == "selection" else action
        if where == "rule":
            action = value
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return selection, action


@st.composite
def rule_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Mostly in good order (unique priorities, `any` last, one untagged rule, distinct tag
    sets), else drawn freely: the rule-set checks then have something to find."""
    orderly = draw(st.integers(0, 3)) > 0
    if orderly:
        priorities = list(range(1, draw(st.integers(1, 3)) + 1))
    else:
        priorities = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    result = []
    untagged = False
    for index, priority in enumerate(priorities):
        statuses: tuple[str, ...] = ("tagged", "untagged", "any")
        if orderly:
            last = index == len(priorities) - 1
            statuses = (
                ("tagged",) + (() if untagged else ("untagged",)) + (("any",) if last else ())
            )
        selection, action = draw(slipped_selections(statuses, f"r{index}" if orderly else ""))
        untagged = untagged or selection["tagStatus"] == "untagged"
        rule = {"rulePriority": priority, "selection": selection, "action": action}
        if draw(st.booleans()):
            rule["description"] = draw(st.text(alphabet="ab ", max_size=3))
        result.append(rule)
    return result


good_durations = st.sampled_from(
    ["1h", "1w", "2d12h", "1.5h", "1h30m", "0s", "36500d", " 15m", "5h 2s"]
)
durations = rarely(
    good_durations,
    st.one_of(
        st.sampled_from(["36501d", "5214w3d"]),  # well-formed, beyond the bound
        st.text(alphabet="0123456789.wdhms ", min_size=1, max_size=6),
    ),
)
globs = rarely(
    st.text(alphabet="ab/*-", min_size=1, max_size=5), st.sampled_from(["team/[ab", "a[b]"])
)
protects = st.fixed_dictionaries(
    {},
    optional={
        "tags": tags,
        "tag_regex": st.lists(
            rarely(
                st.sampled_from(["v.*", "build-\\d+", "[a-z]+"]), st.sampled_from(["(a)\\1", "x("])
            ),
            max_size=2,
        ),
        "semver": st.fixed_dictionaries(
            {"keep": counts}, optional={"per": st.sampled_from(["none", "major", "minor"])}
        ),
        "newer_than": durations,
        "pulled_within": durations,
        "in_use": st.sampled_from(["auto", True, False]),
    },
)
safeties = st.fixed_dictionaries(
    {},
    optional={
        "keep_at_least": st.integers(0, 3),
        "max_deletions": st.one_of(st.none(), st.integers(1, 3)),
    },
)
kubernetes = st.fixed_dictionaries(
    {}, optional={"contexts": tags, "kubeconfig": st.one_of(st.none(), st.just("/k"))}
)
coordinations = st.fixed_dictionaries(
    {},
    optional={
        "namespace": st.one_of(st.none(), st.just("ns")),
        "lease_seconds": rarely(st.integers(1, 86_400), st.just(86_401)),
    },
)
entries = st.fixed_dictionaries(
    {
        "match": st.one_of(globs, st.lists(globs, min_size=1, max_size=2)),
        "rules": st.one_of(st.just("ecr"), rule_lists()),
    }
)
well_formed = st.one_of(
    st.fixed_dictionaries(
        {"repositories": st.lists(entries, min_size=1, max_size=2)},
        optional={
            "protect": protects,
            "safety": safeties,
            "kubernetes": kubernetes,
            "coordination": coordinations,
        },
    ),
    st.fixed_dictionaries({"rules": rule_lists()}),
)


def nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a document, the document itself included."""
    found = [path]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += nodes(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += nodes(value, (*path, index))
    return found


@st.composite
def documents(draw: st.DrawFn) -> Any:
    doc = draw(well_formed)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(nodes(doc)))
        if not path:
            continue
        *parents, last = path
        parent = doc
        for step in parents:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "drop", "stranger", "misplaced"]))
        if action == "replace":
            parent[last] = copy.deepcopy(draw(JUNK))
        elif action == "drop" and isinstance(parent, dict):
            del parent[last]
        elif action == "stranger" and isinstance(parent, dict):
            parent[draw(STRANGERS)] = copy.deepcopy(draw(JUNK))
        elif isinstance(parent, dict):
            key, value = draw(MISPLACED)
            parent[key] = copy.deepcopy(value)
    return doc


def test_the_schema_accepts_what_the_validator_accepts_and_rejects_what_it_can_state() -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(documents())
    def agree(doc: Any) -> None:
        problems = validator_problems(doc)
        schema_errors = [e.message for e in VALIDATOR.iter_errors(doc)]
        if not problems:
            assert schema_errors == [], (doc, schema_errors)
            outcomes["accepted by both"] += 1
            return
        stated = [p for p in problems if not any(part in p for part in INEXPRESSIBLE)]
        if stated:
            assert schema_errors, (doc, stated)
            outcomes["rejected by both"] += 1
        else:
            outcomes["only the validator can tell"] += 1

    agree()
    # The generator must exercise every branch, or the agreement above says little.
    assert outcomes["accepted by both"] >= 300, outcomes
    assert outcomes["rejected by both"] >= 600, outcomes
    assert outcomes["only the validator can tell"] >= 80, outcomes

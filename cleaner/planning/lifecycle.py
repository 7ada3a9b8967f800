"""Parse and validate an ECR lifecycle policy document into a `LifecyclePolicy`.

Pure: no I/O. Every check below comes from the ECR documentation ("Lifecycle policy
properties", docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html,
and the service quotas page); each error names the rule and the field, so a
user can fix a policy without guessing, e.g.
`policy: rules[2] (rulePriority 3): tagStatus "tagged" needs tagPatternList or tagPrefixList`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from cleaner.errors import PolicyError
from cleaner.planning.checks import (
    MAX_COUNT,
    Problems,
    choices,
    enum_value,
    fail,
    mapping,
    positive_int,
    show,
)
from cleaner.planning.documents import load_json
from cleaner.planning.model import ActionType, CountType, LifecyclePolicy, Rule, TagStatus
from cleaner.planning.units import MAX_DAYS

MAX_POLICY_CHARS = 30_720  # [QUOTAS]; botocore LifecyclePolicyText max 30720
MAX_RULES = 50  # [QUOTAS]: "Rules per lifecycle policy: 50 (not adjustable)"
MAX_WILDCARDS = 4  # "There is a maximum limit of four wildcards (*) per string."
MAX_TAG_CHARS = 300  # botocore ImageTag: 1-300 characters; a longer filter matches nothing

STANDARD = "standard"
ARCHIVE = "archive"
_STORAGE_CLASSES = (STANDARD, ARCHIVE)

_TOP_KEYS = ("rules",)
_RULE_KEYS = ("rulePriority", "description", "selection", "action")
_SELECTION_KEYS = (
    "tagStatus",
    "tagPatternList",
    "tagPrefixList",
    "storageClass",
    "countType",
    "countUnit",
    "countNumber",
)
_ACTION_KEYS = ("type", "targetStorageClass")


def parse_policy_text(text: str, *, where: str = "policy") -> LifecyclePolicy:
    """Parse the JSON text ECR stores (`LifecyclePolicyText`), length limit included."""
    if not isinstance(text, str):
        fail(where, f"policy text must be a string, got {type(text).__name__}")
    if len(text) > MAX_POLICY_CHARS:
        fail(where, f"policy text is {len(text)} characters, the limit is {MAX_POLICY_CHARS}")
    try:
        doc = load_json(text, where)
    except json.JSONDecodeError as e:
        raise PolicyError(f"{where}: not valid JSON: {e}") from e
    return parse_policy(doc, where=where)


def parse_policy(doc: object, *, where: str = "policy") -> LifecyclePolicy:
    """Validate an already-decoded `{"rules": [...]}` object; rules come back by priority.

    Every rule is checked, and the rules as a set when each of them could be read; the
    PolicyError holds every problem found."""
    with Problems() as problems:
        top = mapping(doc, where, "the policy", _TOP_KEYS, required=_TOP_KEYS, problems=problems)
        raw_rules = top["rules"]
        if not isinstance(raw_rules, list):
            fail(where, f"rules must be a list, got {show(raw_rules)}")
        if not 1 <= len(raw_rules) <= MAX_RULES:
            fail(where, f"rules must hold 1 to {MAX_RULES} rules, got {len(raw_rules)}")
        parsed = [
            problems.attempt(None, _parse_rule, raw, where, i, problems)
            for i, raw in enumerate(raw_rules)
        ]
        located = [item for item in parsed if item is not None]
        if len(located) == len(parsed):  # else the set checks would report ghosts
            _check_rule_set(located)
    return LifecyclePolicy(tuple(sorted((r.rule for r in located), key=lambda r: r.priority)))


@dataclasses.dataclass(frozen=True, slots=True)
class _Located:
    """A parsed rule and the prefix its error messages use: `policy: rules[1] (rulePriority 2)`."""

    loc: str
    short: str
    """The same without `where`, for naming this rule inside another rule's message."""
    rule: Rule


# Stands in for a rule whose selection failed, so that its action is still checked; never
# returned (the Problems block raises).
_UNREAD = Rule(0, TagStatus.ANY, CountType.IMAGE_COUNT_MORE_THAN, 1)


def _parse_rule(raw: object, where: str, index: int, problems: Problems) -> _Located:
    """One rule; unknown keys go to `problems`, the first other problem of its selection
    and of its action each fail it."""
    loc = f"{where}: rules[{index}]"
    required = ("rulePriority", "selection", "action")
    obj = mapping(raw, loc, "the rule", _RULE_KEYS, required=required, problems=problems)
    priority = positive_int(obj["rulePriority"], loc, "rulePriority")
    short = f"rules[{index}] (rulePriority {priority})"
    loc = f"{where}: {short}"
    with Problems() as parts:
        description = parts.attempt("", _description, obj.get("description", ""), loc)
        rule = parts.attempt(
            _UNREAD, _parse_selection, obj["selection"], loc, priority, description, problems
        )
        action = parts.attempt(ActionType.EXPIRE, _parse_action, obj["action"], loc, problems)
        if not parts.found:
            _check_pairing(rule.count_type, action, loc)
    return _Located(loc, short, dataclasses.replace(rule, action=action))


def _description(value: object, loc: str) -> str:
    if not isinstance(value, str):
        fail(loc, f"description must be a string, got {show(value)}")
    return value


def _parse_selection(
    raw: object, loc: str, priority: int, description: str, problems: Problems
) -> Rule:
    required = ("tagStatus", "countType", "countNumber")
    sel = mapping(raw, loc, "selection", _SELECTION_KEYS, required=required, problems=problems)
    tag_status = enum_value(sel["tagStatus"], TagStatus, loc, "tagStatus")
    patterns, prefixes = _parse_tag_filter(sel, tag_status, loc)
    count_type = enum_value(sel["countType"], CountType, loc, "countType")
    limit = MAX_DAYS if count_type is not CountType.IMAGE_COUNT_MORE_THAN else MAX_COUNT
    count_number = positive_int(sel["countNumber"], loc, "countNumber", limit)
    _check_count_unit(sel, count_type, loc)
    storage_class = _parse_storage_class(sel, count_type, loc)
    return Rule(
        priority=priority,
        tag_status=tag_status,
        count_type=count_type,
        count_number=count_number,
        tag_patterns=patterns,
        tag_prefixes=prefixes,
        storage_class=storage_class,
        description=description,
    )


def _parse_tag_filter(
    sel: Mapping[str, object], tag_status: TagStatus, loc: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # "If you specify tagged, then you must also specify a tagPrefixList value or a
    # tagPatternList value. If you specify untagged, then you must omit both"; "A lifecycle
    # policy rule may specify either tagPatternList or tagPrefixList, but not both."
    has_patterns, has_prefixes = "tagPatternList" in sel, "tagPrefixList" in sel
    if tag_status is not TagStatus.TAGGED:
        if has_patterns or has_prefixes:
            fail(loc, f'tagStatus "{tag_status}" must omit tagPatternList and tagPrefixList')
        return (), ()
    if has_patterns and has_prefixes:
        fail(loc, 'tagStatus "tagged" takes tagPatternList or tagPrefixList, not both')
    if has_patterns:
        return _tag_list(sel["tagPatternList"], loc, "tagPatternList", MAX_WILDCARDS), ()
    if has_prefixes:
        return (), _tag_list(sel["tagPrefixList"], loc, "tagPrefixList", 0)
    fail(loc, 'tagStatus "tagged" needs tagPatternList or tagPrefixList')


def _tag_list(value: object, loc: str, field: str, max_wildcards: int) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        fail(loc, f"{field} must be a non-empty list of strings, got {show(value)}")
    for i, entry in enumerate(value):
        _check_tag_entry(entry, loc, f"{field}[{i}]", max_wildcards)
    return tuple(value)


def _check_tag_entry(entry: object, loc: str, field: str, max_wildcards: int) -> None:
    if not isinstance(entry, str) or not entry:
        fail(loc, f"{field} must be a non-empty string, got {show(entry)}")
    stars = entry.count("*")
    if len(entry) - stars > MAX_TAG_CHARS:  # a `*` may match nothing, so it does not count
        fail(loc, f"{field} is longer than any tag can be ({MAX_TAG_CHARS} characters)")
    if max_wildcards == 0 and stars:
        # ECR does not say what "*" means in a prefix; refusing it is safer than guessing.
        fail(loc, f'{field} "{entry}" contains "*"; prefixes are literal, use tagPatternList')
    if stars > max_wildcards:
        fail(loc, f'{field} "{entry}" has {stars} wildcards, at most {max_wildcards} allowed')


def _check_count_unit(sel: Mapping[str, object], count_type: CountType, loc: str) -> None:
    # "an error will occur if you specify a count unit when countType is any other value"
    if count_type is CountType.IMAGE_COUNT_MORE_THAN:
        if "countUnit" in sel:
            fail(loc, 'countUnit is not allowed with countType "imageCountMoreThan"')
        return
    if "countUnit" not in sel:
        fail(loc, f'countType "{count_type}" needs countUnit "days"')
    if sel["countUnit"] != "days":
        fail(loc, f'countUnit must be "days", got {show(sel["countUnit"])}')


def _parse_storage_class(sel: Mapping[str, object], count_type: CountType, loc: str) -> str:
    # storageClass: "If you omit this, the value of standard will be used"; archive goes only
    # with sinceImageTransitioned and sinceImageTransitioned only with archive.
    storage_class = sel.get("storageClass", STANDARD)
    if storage_class not in _STORAGE_CLASSES:
        fail(loc, f"storageClass must be {choices(_STORAGE_CLASSES)}, got {show(storage_class)}")
    transitioned = count_type is CountType.SINCE_IMAGE_TRANSITIONED
    if transitioned and storage_class != ARCHIVE:
        fail(loc, 'countType "sinceImageTransitioned" needs storageClass "archive"')
    if storage_class == ARCHIVE and not transitioned:
        fail(loc, 'storageClass "archive" is only allowed with countType "sinceImageTransitioned"')
    return str(storage_class)


def _parse_action(raw: object, loc: str, problems: Problems) -> ActionType:
    act = mapping(raw, loc, "action", _ACTION_KEYS, required=("type",), problems=problems)
    action = enum_value(act["type"], ActionType, loc, "action.type")
    has_target = "targetStorageClass" in act
    if action is ActionType.EXPIRE and has_target:
        fail(loc, 'action.type "expire" must omit action.targetStorageClass')
    if action is ActionType.TRANSITION and act.get("targetStorageClass") != ARCHIVE:
        got = show(act["targetStorageClass"]) if has_target else "nothing"
        fail(loc, f'action.type "transition" needs targetStorageClass "archive", got {got}')
    return action


def _check_pairing(count_type: CountType, action: ActionType, loc: str) -> None:
    # "The sinceImagePulled count type must be used with the transition action."
    # "The sinceImageTransitioned count type must be used with the expire action ..."
    if count_type is CountType.SINCE_IMAGE_PULLED and action is not ActionType.TRANSITION:
        fail(loc, 'countType "sinceImagePulled" needs action.type "transition"')
    if count_type is CountType.SINCE_IMAGE_TRANSITIONED and action is not ActionType.EXPIRE:
        fail(loc, 'countType "sinceImageTransitioned" needs action.type "expire"')


def _check_rule_set(located: list[_Located]) -> None:
    # "you must give them each a unique value"
    first: dict[int, _Located] = {}
    for item in located:
        other = first.setdefault(item.rule.priority, item)
        if other is not item:
            fail(item.loc, f"rulePriority {item.rule.priority} is already used by {other.short}")
    for storage_class in _STORAGE_CLASSES:
        group = [item for item in located if item.rule.storage_class == storage_class]
        _check_any_is_last(group)
        _check_one_untagged(group)
        _check_unique_tag_sets(group)


def _check_any_is_last(group: list[_Located]) -> None:
    # "A rule with a tagStatus value of any must have the highest value for rulePriority";
    # ECR checks this per storage class ("...must have the lowest priority per storage class").
    if not group:
        return
    last = max(group, key=lambda item: item.rule.priority)
    for item in group:
        if item.rule.tag_status is TagStatus.ANY and item is not last:
            cls = item.rule.storage_class
            fail(
                item.loc,
                f'tagStatus "any" must have the highest rulePriority among storageClass '
                f'"{cls}" rules, but {last.short} comes after it',
            )


def _check_one_untagged(group: list[_Located]) -> None:
    # "Only one rule selecting a specific storage class is allowed to select untagged images."
    # Read as tagStatus "untagged": the AWS example ALL-B pairs an untagged rule with an any rule.
    untagged = [item for item in group if item.rule.tag_status is TagStatus.UNTAGGED]
    if len(untagged) > 1:
        first, second = sorted(untagged, key=lambda item: item.rule.priority)[:2]
        cls = second.rule.storage_class
        fail(
            second.loc,
            f'only one storageClass "{cls}" rule may select untagged images; {first.short} does',
        )


def _check_unique_tag_sets(group: list[_Located]) -> None:
    # "The set of all rules selecting a specific storage class must contain a unique set of
    # prefixes." Read as: no two tagged rules in a storage class filter on the same set.
    seen: dict[tuple[str, frozenset[str]], _Located] = {}
    for item in sorted(group, key=lambda item: item.rule.priority):
        rule = item.rule
        if rule.tag_status is not TagStatus.TAGGED:
            continue
        field = "tagPatternList" if rule.tag_patterns else "tagPrefixList"
        key = (field, frozenset(rule.tag_patterns or rule.tag_prefixes))
        other = seen.setdefault(key, item)
        if other is not item:
            fail(item.loc, f"{field} repeats the tag set of {other.short}; each must be unique")

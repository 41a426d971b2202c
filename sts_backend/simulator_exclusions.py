"""SimulatePrincipalPolicy's ``PolicyExclusionList``: which attached policies to leave out (no I/O).

"A list of policies to exclude from the simulation ... if a policy were removed,
without changing which policies are actually attached to the principal. Each entry
is a PolicyIdentifier that identifies one or more policies to exclude by policy
type, by ARN, or by the name of an inline policy and the entity it is attached to.
Syntactically invalid identifiers, such as malformed ARNs or wildcards in
disallowed positions, cause the request to fail with an InvalidInput error.
Syntactically valid identifiers that don't match any attached policy are ignored.
Resource control policies (RCPs) are not supported" [IAM API: SimulatePrincipalPolicy].

Read here as: an identifier names a policy when every member it sets matches
(an identifier that sets none is invalid). ``PolicyType`` ``inline``,
``user-managed``, ``aws-managed`` (none exist here) and ``permission-boundary``
(the entity's own boundary) pick by kind; ``scp`` and ``rcp`` match nothing (this
backend has no organizations). ``PolicyArn`` is a managed policy's ARN, ``*``
allowed in its path and name only. ``InlinePolicyIdentifier`` names an inline
policy by its name and owner (user, group or role; owner names case-insensitive).
Policies passed in the request are never excluded.
"""

from __future__ import annotations

import re
from typing import Callable

from sts_backend.errors import SenderError
from sts_backend.iam_records import PolicySource
from sts_backend.policy_match import compile_glob

__all__ = ["exclusion"]

_POLICY_ARN = re.compile(r"arn:aws:iam::(?:\d{12}|aws):policy/.+", re.DOTALL)
_INLINE = frozenset({"user", "group", "role"})
_BY_TYPE: dict[str, Callable[[PolicySource], bool]] = {
    "inline": lambda s: s.kind in _INLINE,
    "user-managed": lambda s: s.kind == "user-managed",
    "aws-managed": lambda s: s.arn.split(":")[4:5] == ["aws"],
    "permission-boundary": lambda s: s.kind == "permission-boundary",
    "scp": lambda s: False,
    "rcp": lambda s: False,
}


def _identifier(item: dict) -> Callable[[PolicySource], bool]:
    tests: list[Callable[[PolicySource], bool]] = []
    if item.get("PolicyType"):
        tests.append(_BY_TYPE[item["PolicyType"]])
    if item.get("PolicyArn"):
        arn = item["PolicyArn"]
        if not _POLICY_ARN.fullmatch(arn):
            raise SenderError("InvalidInput", f"Invalid PolicyArn {arn} in PolicyExclusionList: give a managed "
                                              "policy ARN, with wildcards in its path and name only.")
        pattern = compile_glob(arn)
        tests.append(lambda s: bool(s.arn) and pattern.fullmatch(s.arn) is not None)
    inline = item.get("InlinePolicyIdentifier")
    if inline:
        owner_kind, owner, name = inline["AttachmentType"], inline["AttachmentName"].lower(), inline["PolicyName"]
        tests.append(lambda s: (s.owner_kind, s.owner_name.lower(), s.name) == (owner_kind, owner, name))
    if not tests:
        raise SenderError("InvalidInput", "A PolicyIdentifier in PolicyExclusionList must set PolicyType, "
                                          "PolicyArn or InlinePolicyIdentifier.")
    return lambda s: all(test(s) for test in tests)


def exclusion(items: list[dict]) -> Callable[[PolicySource], bool]:
    """A predicate: True for an attached policy (or boundary) that ``items`` exclude.

    Args:
        items: ``PolicyExclusionList`` as validated against the model.

    Raises:
        SenderError: InvalidInput for an identifier that sets nothing or a malformed ARN.
    """
    identifiers = [_identifier(item) for item in items]
    return lambda source: any(test(source) for test in identifiers)

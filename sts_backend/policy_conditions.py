"""IAM condition operators: the table, the value coercions, and ``Condition`` (no I/O).

Theory of operation
-------------------
Conditions are a table: ``OPERATORS`` maps each base operator name to how its
policy values are parsed and compared; ``IfExists`` and the ``ForAnyValue:`` /
``ForAllValues:`` qualifiers wrap any entry (``split_operator``). Policy values are
parsed once, when the document is compiled (``compile_condition``); request values
are coerced per request, and one that does not parse matches nothing. A key missing
from the request makes a condition false, except: negated operators and
``...IfExists`` (true), ``ForAllValues`` (true), ``Null`` (its own rule)
[IUG:reference_policies_condition_operators; reference/sts-iam.md §10]. String*
and Arn* values may hold policy variables (``sts_backend.policy_match``); they are rendered
per request, and an unresolvable one makes that value match nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from sts_backend.policy_match import (
    Keys, compile_glob, compile_regex, glob_regex, parse_template, render,
)

__all__ = [
    "OPERATORS", "Condition", "Operator", "compile_condition", "condition_syntax_ok", "condition_values",
    "split_operator",
]

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


# --- the table ------------------------------------------------------------------------

def _number(text: str) -> float:
    if not _NUMBER.fullmatch(text.strip()):
        raise ValueError(text)
    return float(text)


def _epoch(text: str) -> float:
    """Seconds since the epoch from ISO 8601 (``...Z``, offsets, dates) or epoch seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return float(text)
    when = dt.datetime.fromisoformat(text.replace("z", "Z"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def _arn_parts(text: str) -> tuple[re.Pattern[str], ...]:
    return tuple(compile_glob(p) for p in text.split(":", 5))


def _arn_parts_rendered(chunks: tuple[tuple[str, bool], ...]) -> tuple[re.Pattern[str], ...]:
    """``_arn_parts`` for a rendered template: split at the first five colons, with
    substituted text kept literal (never a wildcard)."""
    segments: list[list[tuple[str, bool]]] = [[]]
    for text, literal in chunks:
        for i, piece in enumerate(text.split(":")):
            if i:
                if len(segments) < 6:
                    segments.append([])
                else:
                    segments[-1].append((":", True))
            if piece:
                segments[-1].append((piece, literal))
    return tuple(compile_regex(glob_regex(tuple(s))) for s in segments)


def _arn_match(value: str, parts: tuple[re.Pattern[str], ...]) -> bool:
    pieces = value.split(":", 5)
    return len(pieces) == len(parts) and all(p.fullmatch(v) for p, v in zip(parts, pieces))


def _network(text: str) -> tuple[int, int, int]:
    """(IP version, first, last address as integers) of a policy's CIDR or address."""
    network = ipaddress.ip_network(text.strip(), strict=False)
    return network.version, int(network.network_address), int(network.broadcast_address)


@lru_cache(maxsize=1024)
def _address(value: str) -> tuple[int, int] | None:
    """(IP version, address as an integer) of a request's address, parsed once however
    many networks it is tested against; None when it is not an address."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    return address.version, int(address)


def _ip_match(value: str, network: tuple[int, int, int]) -> bool:
    address = _address(value)
    return address is not None and address[0] == network[0] and network[1] <= address[1] <= network[2]


def _convert_match(convert: Callable[[str], Any], compare: Callable[[Any, Any], bool]):
    def match(value: str, policy_value: Any) -> bool:
        try:
            return compare(convert(value), policy_value)
        except (ValueError, OverflowError):
            return False
    return match


@dataclass(frozen=True, slots=True)
class Operator:
    """One row of the table: parse a policy value once, compare a request value to it."""

    parse: Callable[[str], Any]
    match: Callable[[str, Any], bool]
    negated: bool = False
    variables: bool = False   # policy variables expand in its values (String*, Arn*)
    glob: bool = False        # values are wildcard patterns (StringLike, StringNotLike)
    parse_rendered: Callable[[tuple[tuple[str, bool], ...]], Any] | None = None   # Arn*


def _pair(name: str, parse, match, variables=False, negated_name=None, parse_rendered=None) -> dict[str, Operator]:
    negated_name = negated_name or name.replace("Equals", "NotEquals").replace("Like", "NotLike")
    glob = name == "StringLike"
    return {name: Operator(parse, match, False, variables, glob, parse_rendered),
            negated_name: Operator(parse, match, True, variables, glob, parse_rendered)}


_ORDER = {"Equals": float.__eq__, "LessThan": float.__lt__, "LessThanEquals": float.__le__,
          "GreaterThan": float.__gt__, "GreaterThanEquals": float.__ge__}

OPERATORS: dict[str, Operator] = {
    **_pair("StringEquals", str, str.__eq__, True),
    **_pair("StringEqualsIgnoreCase", str.lower, lambda v, p: v.lower() == p, True),
    **_pair("StringLike", compile_glob,
            lambda v, p: p.fullmatch(v) is not None, True),
    **{f"Numeric{k}": Operator(_number, _convert_match(_number, f)) for k, f in _ORDER.items()},
    "NumericNotEquals": Operator(_number, _convert_match(_number, float.__eq__), True),
    **{f"Date{k}": Operator(_epoch, _convert_match(_epoch, f)) for k, f in _ORDER.items()},
    "DateNotEquals": Operator(_epoch, _convert_match(_epoch, float.__eq__), True),
    "Bool": Operator(str.lower, lambda v, p: v.lower() == p),
    "BinaryEquals": Operator(str, str.__eq__),
    **_pair("IpAddress", _network, _ip_match,
            negated_name="NotIpAddress"),
    # "You can use a policy variable for Condition values in any condition that involves
    # the string operators or the ARN operators" [IUG:reference_policies_variables].
    **_pair("ArnEquals", _arn_parts, _arn_match, True, parse_rendered=_arn_parts_rendered),
    **_pair("ArnLike", _arn_parts, _arn_match, True, parse_rendered=_arn_parts_rendered),
    "Null": Operator(str.lower, lambda v, p: False),   # evaluated by Condition itself
}
_QUALIFIERS = ("ForAnyValue:", "ForAllValues:")


def split_operator(name: str) -> tuple[str, str, bool]:
    """("ForAnyValue", "StringLike", True) from "ForAnyValue:StringLikeIfExists"."""
    qualifier = ""
    for prefix in _QUALIFIERS:
        if name.startswith(prefix):
            qualifier, name = prefix[:-1], name[len(prefix):]
            break
    if_exists = name.endswith("IfExists")
    return qualifier, name.removesuffix("IfExists"), if_exists


# --- compiled conditions ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Condition:
    """``{operator: {key: values}}`` for one key: true or false for a request's keys."""

    operator: str                    # as written, e.g. "ForAnyValue:StringLikeIfExists"
    key: str                         # lower-cased: condition keys are case-insensitive
    op: Operator
    values: tuple[Any, ...]          # parsed policy values
    templates: tuple[tuple, ...]     # values holding policy variables, parsed per request
    qualifier: str = ""              # "", "ForAnyValue", "ForAllValues"
    if_exists: bool = False
    null: bool = False               # the Null operator: about presence, not values

    def holds(self, keys: Keys) -> bool:
        """Each request value is tested against the policy values (OR; a negated operator
        inverts that). Unqualified, one passing request value suffices (all must, for a
        negated operator); ForAnyValue wants one, ForAllValues all."""
        present = keys.get(self.key, ())
        if self.null:
            return ("true" in self.values and not present) or ("false" in self.values and bool(present))
        if not present:
            if self.qualifier:
                return self.qualifier == "ForAllValues"
            return self.if_exists or self.op.negated
        values = self.values + self._rendered(keys) if self.templates else self.values
        op = self.op
        if len(present) == 1 and not self.qualifier:   # the common case, without generators
            match, value = op.match, present[0]
            for policy_value in values:
                if match(value, policy_value):
                    return not op.negated
            return op.negated
        results = (any(op.match(v, p) for p in values) != op.negated for v in present)
        if self.qualifier == "ForAnyValue":
            return any(results)
        if self.qualifier == "ForAllValues" or op.negated:
            return all(results)
        return any(results)

    def _rendered(self, keys: Keys) -> tuple[Any, ...]:
        out = []
        for template in self.templates:
            chunks = render(template, keys)
            if chunks is None:
                continue   # a variable without a value matches nothing
            if self.op.glob:
                out.append(compile_regex(glob_regex(chunks)))
            elif self.op.parse_rendered is not None:
                out.append(self.op.parse_rendered(chunks))
            else:
                out.append(self.op.parse("".join(text for text, _ in chunks)))
        return tuple(out)


# --- from the document: syntax, values, compiling -------------------------------------

def condition_syntax_ok(block: Any) -> bool:
    """A Condition element is well formed: {operator: {key: scalar or list of scalars}}."""
    if not isinstance(block, dict):
        return False
    for operator, body in block.items():
        if not isinstance(body, dict):
            return False
        _, base, if_exists = split_operator(operator)
        if base not in OPERATORS and body:
            return False   # unknown operators pass only when empty (moto models AWS so)
        # IfExists goes on "any condition operator name except the Null condition"
        # [IUG:reference_policies_elements_condition_operators §...IfExists condition operators].
        if base == "Null" and if_exists:
            return False
        for values in body.values():
            items = values if isinstance(values, list) else [values]
            if not all(isinstance(v, (str, bool, int, float)) for v in items):
                return False
    return True


def condition_values(values: Any) -> list[str]:
    """A condition's JSON value(s) as strings: one or a list; booleans as "true"/"false"."""
    return [("true" if v else "false") if isinstance(v, bool) else str(v)
            for v in (values if isinstance(values, list) else [values])]


def compile_condition(operator: str, key: str, raw: Any, variables: bool) -> Condition:
    """One ``{operator: {key: raw}}`` entry of a validated document, values parsed.

    Args:
        operator: as written; its base name must be in ``OPERATORS``.
        key: the condition key, any case.
        raw: the JSON value(s).
        variables: the document's Version enables policy variables.

    Returns:
        The ``Condition``.

    Raises:
        ValueError, OverflowError: from the operator's parser; never for a document
            that passed validation (legacy parsing tries the values that can fail).
    """
    qualifier, base, if_exists = split_operator(operator)
    op = OPERATORS[base]
    values, templates = [], []
    for value in condition_values(raw):
        template = parse_template(value) if variables and op.variables else None
        if template:
            templates.append(template)
        else:
            values.append(op.parse(value))
    return Condition(operator, key.lower(), op, tuple(values), tuple(templates), qualifier,
                     if_exists, base == "Null")

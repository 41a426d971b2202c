"""Wildcards and policy variables: the matching that IAM policies do (no I/O).

Theory of operation
-------------------
Action and Resource lists, ``StringLike`` and ``Arn*`` condition values are globs:
``*`` matches any run of characters, ``?`` exactly one. Each glob becomes one regex,
compiled once (``compile_glob``, ``Patterns.compile``) and used with ``fullmatch``.

Policy variables (``${aws:username}``, ``${key, 'default'}``, ``${*}``, ``${?}``,
``${$}``) are expanded in Resource / NotResource (after the ARN's fifth colon only) and
in String* and Arn* condition values when Version is 2012-10-17. A value holding one
is parsed once into a template (``parse_template``) and rendered per request
(``render``) from the request's condition keys; substituted text is literal, and a
variable without a value makes that one value match nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

__all__ = [
    "Keys", "Patterns", "compile_glob", "compile_regex", "glob_regex", "parse_template", "render",
]

Keys = Mapping[str, tuple[str, ...]]   # condition key (lower-case) -> values; absent = no entry
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE_BODY = re.compile(r"\s*([^,\s]+)\s*(?:,\s*'([^']*)'\s*)?")


def glob_regex(chunks: tuple[tuple[str, bool], ...]) -> str:
    """Regex source for a glob given as (text, literal) chunks: ``*`` any run, ``?`` one char.

    Middle segments are matched lazily inside atomic groups (as CPython's fnmatch
    does), so a pattern with many stars stays linear instead of backtracking
    exponentially: the earliest place a fixed-length segment fits is always a
    right place. Use with ``fullmatch`` and DOTALL.
    """
    segments: list[list[str]] = [[]]
    for text, literal in chunks:
        if literal:
            segments[-1].append(re.escape(text))
            continue
        for char in text:
            if char == "*":
                segments.append([])
            else:
                segments[-1].append("." if char == "?" else re.escape(char))
    parts = ["".join(s) for s in segments]
    if len(parts) == 1:
        return parts[0]
    middle = "".join(f"(?>.*?{p})" for p in parts[1:-1] if p)
    return f"{parts[0]}{middle}.*{parts[-1]}"


@lru_cache(maxsize=4096)
def compile_regex(source: str) -> re.Pattern[str]:
    """``re.compile(source, re.DOTALL)``, cached: rendered templates recur per request."""
    return re.compile(source, re.DOTALL)


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A compiled ``fullmatch`` regex for one wildcard pattern."""
    return compile_regex(glob_regex(((pattern, False),)))


def parse_template(value: str) -> tuple | None:
    """Split ``value`` into glob text and variables, or None when it has none."""
    if "${" not in value:
        return None
    items: list[tuple] = []
    pos = 0
    for m in _VARIABLE.finditer(value):
        items.append(("text", value[pos:m.start()]))
        body = m.group(1).strip()
        parsed = _VARIABLE_BODY.fullmatch(body)
        if body in ("*", "?", "$"):
            items.append(("literal", body))
        elif parsed:
            items.append(("var", parsed.group(1).lower(), parsed.group(2)))
        else:
            items.append(("text", m.group(0)))
        pos = m.end()
    items.append(("text", value[pos:]))
    return tuple(items)


def _resource_template(value: str) -> tuple | None:
    """``parse_template`` for a Resource: variables count "only in the resource portion
    of the ARN", after the fifth colon; before it ``${...}`` is plain text
    [IUG:reference_policies_variables §Resource element]."""
    parts = value.split(":", 5)
    if len(parts) < 6:
        return parse_template(value)
    template = parse_template(parts[5])
    if template is None:
        return None
    return (("text", ":".join(parts[:5]) + ":"),) + template


def render(template: tuple, keys: Keys) -> tuple[tuple[str, bool], ...] | None:
    """Chunks (text, literal) with variables substituted; None if one has no value.

    Only single-valued keys substitute; substituted text is literal, never a wildcard.
    """
    chunks = []
    for item in template:
        if item[0] == "text":
            chunks.append((item[1], False))
        elif item[0] == "literal":
            chunks.append((item[1], True))
        else:
            values = keys.get(item[1], ())
            value = values[0] if len(values) == 1 else item[2]
            if value is None:
                return None
            chunks.append((value, True))
    return tuple(chunks)


@dataclass(frozen=True, slots=True)
class Patterns:
    """A compiled Action/Resource list: "*", exact strings, one regex, variable templates."""

    match_all: bool
    exact: frozenset[str]
    regex: re.Pattern[str] | None
    templates: tuple[tuple, ...] = ()

    @classmethod
    def compile(cls, values: tuple[str, ...], *, fold_case: bool, variables: bool) -> Patterns:
        """Compile once; ``fold_case`` for actions (match lower-cased values), ``variables``
        when the policy's Version enables ``${...}``."""
        if fold_case:
            values = tuple(v.lower() for v in values)
        templates = tuple(t for t in map(_resource_template, values) if t) if variables else ()
        plain = [v for v in values if not (variables and _resource_template(v))]
        exact = frozenset(v for v in plain if "*" not in v and "?" not in v)
        globs = [v for v in plain if v not in exact]
        regex = (compile_regex("|".join(f"(?:{glob_regex(((g, False),))})" for g in globs))
                 if globs else None)
        return cls("*" in plain, exact, regex, templates)

    def matches(self, value: str, keys: Keys) -> bool:
        if self.match_all or value in self.exact:
            return True
        if self.regex is not None and self.regex.fullmatch(value) is not None:
            return True
        for template in self.templates:
            chunks = render(template, keys)
            if chunks is not None and compile_regex(glob_regex(chunks)).fullmatch(value) is not None:
                return True
        return False

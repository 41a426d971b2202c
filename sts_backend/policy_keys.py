"""The context keys a policy document refers to, as IAM's simulator lists them (no I/O).

``GetContextKeysForCustomPolicy`` answers, for the AWS CLI's documented example
(``awscli/examples/iam/get-context-keys-for-custom-policy.rst``)
``{"Version":"2012-10-17","Statement":{..."Resource":"arn:aws:dynamodb:us-west-2:
123456789012:table/${aws:username}","Condition":{"DateGreaterThan":{"aws:CurrentTime":
...}}}}``, ``["aws:username", "aws:CurrentTime"]``: policy variables count as keys,
names keep the case they are written in, and the order is the document's. So a
statement's keys are collected walking its members in document order: variables
in Resource/NotResource values, then each condition key followed by the variables
in its values. Variables count only where they expand (Version 2012-10-17,
``sts_backend.policy_match``); ``${*}``, ``${?}`` and ``${$}`` are literals, not keys.
Lists across documents are de-duplicated case-insensitively (condition keys are
case-insensitive), the first spelling kept.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

__all__ = ["context_key_names", "statement_context_keys", "unique_keys"]

_VARIABLE = re.compile(r"\$\{\s*([^,\s}]+)\s*(?:,\s*'[^']*'\s*)?\}")
_LITERALS = frozenset({"*", "?", "$"})


def _variables(values: Any, out: list[str]) -> None:
    for value in values if isinstance(values, list) else [values]:
        if isinstance(value, str):
            out.extend(m.group(1) for m in _VARIABLE.finditer(value) if m.group(1) not in _LITERALS)


def _statement_keys(statement: dict, variables: bool) -> tuple[str, ...]:
    keys: list[str] = []
    for name, value in statement.items():
        if name in ("Resource", "NotResource") and variables:
            _variables(value, keys)
        elif name == "Condition" and isinstance(value, dict):
            for body in value.values():
                for key, values in body.items():
                    keys.append(key)
                    if variables:
                        _variables(values, keys)
    return tuple(keys)


def statement_context_keys(text: str) -> tuple[tuple[str, ...], ...]:
    """The keys each statement of ``text`` refers to, in document order (repeats kept).

    Args:
        text: a policy document that ``parse_policy`` accepted.

    Returns:
        One tuple per statement, aligned with ``Policy.statements``.
    """
    doc = json.loads(text)
    statements = doc["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    variables = doc.get("Version") == "2012-10-17"
    return tuple(_statement_keys(st, variables) for st in statements)


def unique_keys(keys: Iterable[str]) -> list[str]:
    """``keys`` without case-insensitive repeats, first spelling and order kept."""
    seen: set[str] = set()
    out = []
    for key in keys:
        if key.lower() not in seen:
            seen.add(key.lower())
            out.append(key)
    return out


def context_key_names(texts: Iterable[str]) -> list[str]:
    """The context keys of every document in ``texts``, de-duplicated, in order.

    Args:
        texts: policy documents that ``parse_policy`` accepted.

    Returns:
        Key names as written, for ``ContextKeyNames``.
    """
    return unique_keys(key for text in texts for keys in statement_context_keys(text) for key in keys)

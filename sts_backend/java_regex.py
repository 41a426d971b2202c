"""Java regex patterns of the AWS service models, translated into Python ``re``.

The botocore models (``model/sts.json``, ``model/iam.json``) state member
patterns in Java syntax, matched in full. ``java_regex`` rewrites one into
Python syntax and ``compile_pattern`` compiles (and caches) the result, with
``re.ASCII`` so ``\\w`` and ``\\d`` stay ASCII as in Java. ``\\p{L}``-style
general categories expand to explicit ranges computed once from
``unicodedata``; ``.`` excludes every Java line terminator; and the models'
``\\u10000-\\u10FFFF`` means U+10000..U+10FFFF (what AWS intends; Java itself
would read ``\\u1000`` then ``0``). Unsupported constructs (``\\P``, ``\\Q``,
``\\E``, ``\\k``, class intersection ``&&``) raise ``ValueError``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

__all__ = ["compile_pattern", "java_regex"]

_SCAN_LIMIT = 0x40000  # planes 4-16 hold no letters, numbers or separators


@cache
def _category_runs() -> tuple[tuple[int, int, str], ...]:
    """``(first, last, category)`` runs of code points, scanned once (~25 ms)."""
    runs, start, current = [], 0, unicodedata.category("\0")
    for cp in range(1, _SCAN_LIMIT):
        cat = unicodedata.category(chr(cp))
        if cat != current:
            runs.append((start, cp - 1, current))
            start, current = cp, cat
    runs.append((start, _SCAN_LIMIT - 1, current))
    return tuple(runs)


@cache
def _category_class(category: str) -> str:
    """Ranges (class body) of Unicode general category ``category`` (``L``, ``Lu``...)."""
    merged: list[list[int]] = []
    for first, last, cat in _category_runs():
        if cat.startswith(category):
            if merged and merged[-1][1] == first - 1:
                merged[-1][1] = last
            else:
                merged.append([first, last])
    if not merged:
        raise ValueError(f"unknown Unicode category {category!r}")
    return "".join(f"\\U{a:08X}-\\U{b:08X}" for a, b in merged)


_ESCAPE = re.compile(r"\\(?:p\{(\w{1,2})\}|u([0-9A-Fa-f]{4})([0-9A-Fa-f]{0,2})|(.))", re.S)


def java_regex(pattern: str) -> str:
    """Translate an AWS model pattern (Java syntax) into Python ``re`` syntax."""
    out, pos, in_class = [], 0, False
    for m in _ESCAPE.finditer(pattern):
        out.append(_plain(pattern[pos:m.start()], in_class))
        in_class = _class_state(pattern[pos:m.start()], in_class)
        category, hex4, more, other = m.groups()
        if category:
            body = _category_class(category)
            out.append(body if in_class else f"[{body}]")
        elif hex4:
            wide = int(hex4 + more, 16) if more else 0
            if 0x10000 <= wide <= 0x10FFFF:
                out.append(f"\\U{wide:08X}")
            else:
                out.append(f"\\u{hex4}{more}")
        elif other in "PQEk":
            raise ValueError(f"unsupported Java regex escape \\{other} in {pattern!r}")
        else:
            out.append(m.group())
        pos = m.end()
    out.append(_plain(pattern[pos:], in_class))
    return "".join(out)


def _class_state(text: str, in_class: bool) -> bool:
    for ch in text:
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
    return in_class


def _plain(text: str, in_class: bool) -> str:
    if "&&" in text:
        raise ValueError("Java class intersection (&&) is not supported")
    out = []
    for ch in text:
        if ch == "." and not in_class:  # Java's . excludes every line terminator
            out.append("[^\\n\\r\\u0085\\u2028\\u2029]")
        else:
            out.append(ch)
        in_class = _class_state(ch, in_class)
    return "".join(out)


@cache
def compile_pattern(pattern: str) -> re.Pattern:
    """The compiled Python equivalent of a model pattern (use ``fullmatch``)."""
    return re.compile(java_regex(pattern), re.ASCII)

"""Every constraint of the STS and IAM service models, enforced on the server.

SDKs check little (botocore only minimums; the JS SDK nothing), so the backend
checks every member of every operation against botocore's models, distilled by
``tools/gen_model_constraints.py`` into ``model/sts.json`` and ``model/iam.json``:
required members, integer ranges, string and list lengths, patterns, enums.

Theory of operation
-------------------
``validate(service, action, params)`` walks the operation's input shape over
the flat Query parameters (``wire.query.list_items`` reads ``Name.member.N``),
converts types, and collects every violation in model member order into one
``ValidationError`` in AWS's form::

    1 validation error detected: Value '600' at 'durationSeconds' failed to
    satisfy constraint: Member must have value greater than or equal to 900

    2 validation errors detected: Value '' at 'roleArn' failed to satisfy
    constraint: Member must satisfy regular expression pattern: ...; Value ''
    at 'roleArn' failed to satisfy constraint: Member must have length greater
    than or equal to 20

Paths are lowerCamelCase member names joined by dots (``tags.1.member.key``,
``contextProvider.keyDefinitionList.2.member.sourceKey``). A list of scalars is
reported once, at the list, with every constraint of its member shape
(``Value '[a, b]' at 'transitiveTagKeys' failed to satisfy constraint: Member
must satisfy constraint: [Member must have length less than or equal to 128,
...]``); maps say ``Map keys``/``Map value must satisfy constraint``. Missing
required members read ``Value null at 'roleArn' ... Member must not be null``,
at any depth (``policyArns.1.member.arn``); ``_ALSO_REQUIRED`` adds members the
services require though the models leave them optional (``PolicyDescriptorType.arn``:
a list item without it must not silently drop a session restriction).
Sensitive members (marked in the model, plus MFA codes and context assertions)
and blobs are never echoed: ``Value at 'password' failed to satisfy ...`` (the
form AWS itself uses for sensitive members).

Lengths count UTF-16 code units, as Java's ``String.length()`` does (a character
outside the BMP counts 2). Patterns are Java regexes matched in full: ``\\w``
and ``\\d`` are ASCII, ``\\p{L}``-style categories expand from ``unicodedata``,
and the models' ``\\u10000-\\u10FFFF`` means U+10000..U+10FFFF (what AWS
intends; Java itself would read ``\\u1000`` then ``0``). The first unparseable
integer, boolean, timestamp or blob raises ``InvalidParameterValue`` at once.
Unknown parameters are ignored, as AWS does; a ``Version`` other than the
model's makes the action unknown (``InvalidAction``).

Sources of the forms (AWS answers quoted in public issues): goldstack#425 and
moto#9218 (value and length), newscorpaus/consigliere#18 (two errors on one
member, ``; `` join), SWO-GS/auto-tag#90 and coldsnap#378 (``tags.N.member.key``),
aws-cloudformation-github-deploy#134 (scalar lists), SWO-GS/auto-tag#77 and
aws-service-catalog-factory#279 (map values), massif-press/compcon#1951 and
cloud-platform-infrastructure#4097 (sensitive: ``Value at``), aws-cli#37 and
fog-aws#368 (``Could not find operation X for version Y``). Error order within
a member and enum order follow the model (AWS's own order varies).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from sts_backend.errors import SenderError, ValidationError
from sts_backend.java_regex import compile_pattern, java_regex  # re-exported
from wire.query import QueryError, list_items

__all__ = ["api_version", "check_operation", "compile_pattern", "java_regex", "operations", "validate"]

MODEL_DIR = Path(__file__).with_name("model")
_ABSENT = object()
_INT_RE = re.compile(r"[+-]?[0-9]{1,19}")
_INT_BOUNDS = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
# Members the services require although the models leave them optional. A
# PolicyDescriptorType without ``arn`` would otherwise become ``{}`` and the session
# would be minted without that managed-policy restriction (wider than asked).
_ALSO_REQUIRED = {"PolicyDescriptorType": frozenset({"arn"})}
_EXPECT = {"integer": "an integer", "long": "an integer", "boolean": "true or false",
           "timestamp": "an ISO-8601 timestamp", "blob": "base64 data"}


def _utf16_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


# --- shape nodes --------------------------------------------------------------------


class _Scalar:
    __slots__ = ("kind", "min", "max", "pattern", "enum", "enum_text", "sensitive", "has_sensitive")

    def __init__(self, spec: dict) -> None:
        self.kind = spec["type"]
        self.min, self.max = spec.get("min"), spec.get("max")
        self.pattern = spec.get("pattern")
        self.enum = frozenset(spec["enum"]) if "enum" in spec else None
        self.enum_text = ", ".join(spec.get("enum", ()))
        self.sensitive = self.has_sensitive = bool(spec.get("sensitive")) or self.kind == "blob"

    def convert(self, raw: str, key: str, sensitive: bool) -> Any:
        kind = self.kind
        if kind == "string":
            return raw
        try:
            if kind in _INT_BOUNDS:
                low, high = _INT_BOUNDS[kind]
                if _INT_RE.fullmatch(raw) and low <= (value := int(raw)) <= high:
                    return value
            elif kind == "boolean":
                if raw.lower() in ("true", "false"):
                    return raw.lower() == "true"
            elif kind == "timestamp":
                return _timestamp(raw)
            elif kind == "blob":
                return base64.b64decode(raw, validate=True)
            else:
                return raw  # float/double/other: kept as text
        except (ValueError, binascii.Error):
            pass
        shown = "" if sensitive or self.sensitive else f"({raw[:64]}) "
        raise SenderError("InvalidParameterValue", f"Value {shown}for parameter {key} is "
                          f"invalid. Expecting {_EXPECT.get(kind, kind)}.")

    def failures(self, value: Any) -> list[str] | None:
        """The constraints ``value`` breaks, or None."""
        out = None
        if self.kind == "string":
            if self.enum is not None and value not in self.enum:
                out = [f"Member must satisfy enum value set: [{self.enum_text}]"]
            if self.pattern is not None and compile_pattern(self.pattern).fullmatch(value) is None:
                out = (out or []) + [f"Member must satisfy regular expression pattern: {self.pattern}"]
            size, noun = _utf16_len(value), "length"
        elif self.kind in _INT_BOUNDS:
            size, noun = value, "value"
        elif self.kind == "blob":
            size, noun = len(value), "length"
        else:
            return None
        if self.min is not None and size < self.min:
            out = (out or []) + [f"Member must have {noun} greater than or equal to {self.min}"]
        if self.max is not None and size > self.max:
            out = (out or []) + [f"Member must have {noun} less than or equal to {self.max}"]
        return out

    def constraints(self) -> list[str]:
        """Every constraint of this shape, in the order AWS lists them for elements."""
        noun = "value" if self.kind in _INT_BOUNDS else "length"
        out = []
        if self.max is not None:
            out.append(f"Member must have {noun} less than or equal to {self.max}")
        if self.min is not None:
            out.append(f"Member must have {noun} greater than or equal to {self.min}")
        if self.pattern is not None:
            out.append(f"Member must satisfy regular expression pattern: {self.pattern}")
        if self.enum is not None:
            out.append(f"Member must satisfy enum value set: [{self.enum_text}]")
        return out

    def read(self, params, key, path, keys, errors, sensitive) -> Any:
        raw = params.get(key)
        if raw is None:
            return _ABSENT
        sensitive = sensitive or self.sensitive
        value = self.convert(raw, key, sensitive)
        broken = self.failures(value)
        if broken:
            errors.extend(_message(None if sensitive else _show(value), path, c) for c in broken)
        return value


class _List:
    __slots__ = ("member", "min", "max", "has_sensitive")

    def __init__(self, spec: dict) -> None:
        self.min, self.max = spec.get("min"), spec.get("max")

    def read(self, params, key, path, keys, errors, sensitive) -> Any:
        items = list_items(params, key, keys)
        if not items:
            marker = params.get(key)
            if marker is None:
                return _ABSENT
            if marker != "":
                raise QueryError(f"parameter {key} must be a list")
        member = self.member
        if isinstance(member, _Scalar):
            values = []
            for item, _ in items:
                if item not in params:
                    raise QueryError(f"parameter {item} has no value")
                values.append(member.convert(params[item], item, sensitive))
            bad = any(member.failures(v) for v in values)
        else:
            values = [member.read(params, item, f"{path}.{i}.member", sub, errors, sensitive)
                      for i, (item, sub) in enumerate(items, 1)]
            bad = False
        size = _size_failures(len(values), self)
        if size or bad:
            shown = None if sensitive or self.has_sensitive else _show(values)
            errors.extend(_message(shown, path, c) for c in size)
            if bad:
                errors.append(_message(shown, path, "Member must satisfy constraint: "
                                       f"[{', '.join(member.constraints())}]"))
        return values


class _Map:
    __slots__ = ("key", "value", "min", "max", "has_sensitive")

    def __init__(self, spec: dict) -> None:
        self.min, self.max = spec.get("min"), spec.get("max")

    def read(self, params, key, path, keys, errors, sensitive) -> Any:
        entries = list_items(params, key, keys, sep="entry")
        if not entries:
            return _ABSENT if params.get(key) is None else {}
        out: dict[str, Any] = {}
        bad_key = bad_value = False
        for i, (item, sub) in enumerate(entries, 1):
            name = params.get(f"{item}.key")
            if name is None or name in out:
                raise QueryError(f"map entry {item} has no key or repeats one")
            bad_key = bad_key or bool(self.key.failures(name))
            if isinstance(self.value, _Scalar):
                raw = params.get(f"{item}.value", "")
                value = self.value.convert(raw, f"{item}.value", sensitive)
                bad_value = bad_value or bool(self.value.failures(value))
            else:
                value = self.value.read(params, f"{item}.value", f"{path}.{i}.value", sub,
                                        errors, sensitive)
                value = {} if value is _ABSENT else value
            out[name] = value
        size = _size_failures(len(out), self)
        if size or bad_key or bad_value:
            shown = None if sensitive or self.has_sensitive else _show(out)
            errors.extend(_message(shown, path, c) for c in size)
            for flag, what, node in ((bad_key, "Map keys", self.key),
                                     (bad_value, "Map value", self.value)):
                if flag:
                    errors.append(_message(shown, path, f"{what} must satisfy constraint: "
                                           f"[{', '.join(node.constraints())}]"))
        return out


class _Struct:
    __slots__ = ("members", "sensitive", "has_sensitive")

    def __init__(self, spec: dict) -> None:
        self.sensitive = bool(spec.get("sensitive"))

    def read(self, params, key, path, keys, errors, sensitive) -> Any:
        if not keys:
            return _ABSENT
        return self.read_members(params, key + ".", path + ".", keys, errors, sensitive)

    def read_members(self, params, key, path, keys, errors, sensitive) -> dict[str, Any]:
        """Members under ``key`` (``""`` or ``"Outer."``); ``keys``: names with a dot."""
        sensitive = sensitive or self.sensitive
        out: dict[str, Any] = {}
        for name, camel, node, required, secret in self.members:
            wire = key + name
            if node.__class__ is _Scalar:
                value = node.read(params, wire, path + camel, None, errors, sensitive or secret)
            else:
                under = wire + "."
                sub = [k for k in keys if k.startswith(under)]
                value = node.read(params, wire, path + camel, sub, errors, sensitive or secret)
            if value is not _ABSENT:
                out[name] = value
            elif required:
                errors.append(f"Value null at '{path}{camel}' failed to satisfy constraint: "
                              "Member must not be null")
        return out


def _size_failures(size: int, node) -> list[str]:
    out = []
    if node.min is not None and size < node.min:
        out.append(f"Member must have length greater than or equal to {node.min}")
    if node.max is not None and size > node.max:
        out.append(f"Member must have length less than or equal to {node.max}")
    return out


def _message(shown: str | None, path: str, constraint: str) -> str:
    value = "Value at" if shown is None else f"Value '{shown}' at"
    return f"{value} '{path}' failed to satisfy constraint: {constraint}"


def _show(value: Any) -> str:
    """Java-like rendering (``[a, b]``, ``{Key=k, Value=v}``) of a checked value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _timestamp(raw: str) -> _dt.datetime:
    if _INT_RE.fullmatch(raw):
        return _dt.datetime.fromtimestamp(int(raw), _dt.timezone.utc)
    when = _dt.datetime.fromisoformat(raw)
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc)


# --- loading ------------------------------------------------------------------------


class _Service:
    __slots__ = ("name", "version", "operations")

    def __init__(self, data: dict) -> None:
        self.name, self.version = data["service"], data["apiVersion"]
        shapes, nodes = data["shapes"], {}
        self.operations = {op: (_node(inp, shapes, nodes) if inp else None)
                           for op, inp in data["operations"].items()}


_KINDS = {"structure": _Struct, "list": _List, "map": _Map}


def _node(name: str, shapes: dict, nodes: dict):
    if name in nodes:
        return nodes[name]
    spec = shapes[name]
    node = nodes[name] = _KINDS.get(spec["type"], _Scalar)(spec)
    if isinstance(node, _Struct):
        required = set(spec.get("required", ())) | _ALSO_REQUIRED.get(name, frozenset())
        secret = set(spec.get("sensitiveMembers", ()))
        node.members = tuple(
            (m, m[:1].lower() + m[1:], _node(shape, shapes, nodes), m in required, m in secret)
            for m, shape in spec["members"].items())
        node.has_sensitive = node.sensitive or bool(secret) or any(
            child.has_sensitive for _, _, child, _, _ in node.members)
    elif isinstance(node, _List):
        node.member = _node(spec["member"], shapes, nodes)
        node.has_sensitive = node.member.has_sensitive
    elif isinstance(node, _Map):
        node.key, node.value = _node(spec["key"], shapes, nodes), _node(spec["value"], shapes, nodes)
        node.has_sensitive = node.key.has_sensitive or node.value.has_sensitive
    return node


@cache
def _service(service: str) -> _Service:
    path = MODEL_DIR / f"{service}.json"
    if service not in ("sts", "iam") or not path.exists():
        raise ValueError(f"no model for service {service!r}")
    return _Service(json.loads(path.read_text("utf-8")))


def api_version(service: str) -> str:
    """The model's API version (``2011-06-15`` for sts, ``2010-05-08`` for iam)."""
    return _service(service).version


def operations(service: str) -> frozenset[str]:
    """Every operation name of ``service``'s model."""
    return frozenset(_service(service).operations)


def _operation(service: str, action: str, params: dict[str, str]):
    svc = _service(service)
    version = params.get("Version", svc.version)
    op = svc.operations.get(action, _ABSENT) if version == svc.version else _ABSENT
    if op is _ABSENT:
        raise SenderError("InvalidAction", f"Could not find operation {action} for version {version}")
    return op


def check_operation(service: str, action: str, params: dict[str, str]) -> None:
    """Refuse an ``action`` (or ``Version``) that ``service``'s model does not know.

    ``validate`` does this too; the app calls it on its own first, so that an
    unknown action is ``InvalidAction`` before the credential-kind rules run,
    and those rules run before any parameter is checked.

    Raises:
        SenderError: ``InvalidAction``.
    """
    _operation(service, action, params)


def validate(service: str, action: str, params: dict[str, str]) -> dict[str, Any]:
    """Check ``params`` (the decoded Query form) against ``service``'s ``action``.

    Args:
        service: ``"sts"`` or ``"iam"``.
        action: the ``Action`` parameter.
        params: every form parameter; ``Action``, ``Version`` and unknown names
            are ignored, except that a ``Version`` other than the model's is an
            unknown operation.

    Returns:
        The input members present, typed: ``str``, ``int``, ``bool``, aware
        ``datetime``, ``bytes``; lists as lists, structures as dicts keyed by
        model member name (``{"Tags": [{"Key": "k", "Value": "v"}]}``).

    Raises:
        SenderError: ``InvalidAction`` (unknown operation or version),
            ``InvalidParameterValue`` (unparseable number, boolean, timestamp,
            blob), or a ``wire.query.QueryError`` code for malformed lists.
        ValidationError: every constraint violation, in one message.
        ValueError: an unknown ``service`` (a programming error).
    """
    op = _operation(service, action, params)
    if op is None:
        return {}
    errors: list[str] = []
    dotted = [k for k in params if "." in k]
    try:
        result = op.read_members(params, "", "", dotted, errors, False)
    except QueryError as exc:
        raise SenderError(exc.code, exc.message) from exc
    if errors:
        count = len(errors)
        raise ValidationError(f"{count} validation error{'s' if count > 1 else ''} detected: "
                              + "; ".join(errors))
    return result

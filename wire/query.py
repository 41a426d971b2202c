"""The AWS Query protocol: form codec, list (un)flattening, XML results and errors.

Pure functions over bytes and plain Python values; the only import of ours is
``wire.clock.iso_z``. Both sides use it: the backend parses requests and renders
responses, the agent's STS client encodes requests and parses responses.

Theory of operation
-------------------
Requests are ``application/x-www-form-urlencoded`` (or a query string):
``Action=AssumeRole&Version=2011-06-15&RoleArn=...``. Lists travel flattened as
``Name.member.N`` with N counted from 1 (``Tags.member.1.Key``), maps as
``Name.entry.N.key`` / ``.value``, nested structures as ``Outer.Inner``, and an
empty list as ``Name=`` (botocore's ``QuerySerializer``). ``parse_form`` is strict:
bad percent-escapes, invalid UTF-8, duplicate names, more than ``MAX_PARAMS``
fields or names longer than ``MAX_KEY_LENGTH`` raise ``QueryError``. List indices
must be plain decimals numbered 1..N without gaps; anything else under a list's
name is a ``QueryError`` too, so a client never believes a tag was applied when
the server silently dropped it.

Responses are XML without a declaration, exactly::

    <ActionResponse xmlns="NS"><ActionResult>...</ActionResult>
    <ResponseMetadata><RequestId>...</RequestId></ResponseMetadata></ActionResponse>

(on one line). Values render from plain Python: dict -> child elements in
insertion order (None skipped), list -> ``<member>`` children, bool ->
``true``/``false``, int -> decimal, aware datetime -> ``YYYY-MM-DDTHH:MM:SSZ``,
bytes -> base64 (blobs). Text escapes ``& < >`` and ``\\r`` (which XML parsers
would otherwise fold into ``\\n``); characters XML 1.0 cannot carry at all (C0
controls other than tab/newline/CR, lone surrogates, U+FFFE/U+FFFF) become
U+FFFD, so a hostile value echoed in an error message can never break the
document.

Parsing responses (client side) treats the XML as untrusted: ``defusedxml`` with
DTDs forbidden, a size bound, a depth bound, namespaces ignored.
"""

from __future__ import annotations

import base64
import datetime as _dt
import re
import uuid
from collections.abc import Mapping
from typing import Any, Union
from urllib.parse import quote, unquote_to_bytes

from wire.clock import iso_z

__all__ = [
    "IAM_NAMESPACE", "MAX_KEY_LENGTH", "MAX_PARAMS", "MAX_RESPONSE_BYTES", "QueryError",
    "STS_NAMESPACE", "encode_form", "escape_text", "flatten", "list_items", "new_request_id",
    "parse_error", "parse_form", "parse_query", "parse_response", "render_error",
    "render_result", "unflatten", "XmlMap",
]

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
IAM_NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"

MAX_PARAMS = 1000
MAX_KEY_LENGTH = 256
MAX_RESPONSE_BYTES = 1 << 20
MAX_XML_DEPTH = 32

ResultNode = Union[Mapping[str, Any], None]


class QueryError(ValueError):
    """A request or response that does not follow the Query protocol.

    ``code`` is the AWS error code a server would answer with (400, Sender).
    Messages name parameters, never their values.
    """

    def __init__(self, message: str, code: str = "MalformedQueryString") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# --- form codec -----------------------------------------------------------------

_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_FORM_SAFE = "-_.~"


def _unquote(raw: bytes, what: str) -> str:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        if _BAD_PERCENT.search(raw):
            raise QueryError(f"invalid percent-encoding in {what}")
        raw = unquote_to_bytes(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise QueryError(f"{what} is not valid UTF-8") from None


def parse_form(body: bytes | str, *, max_params: int = MAX_PARAMS,
               max_key_length: int = MAX_KEY_LENGTH) -> dict[str, str]:
    """Decode a form body or query string into ``{name: value}``.

    ``+`` is a space; ``name`` without ``=`` has the value ``""``; empty fields
    (``a=1&&b=2``) are skipped.

    Raises:
        QueryError: bad percent-encoding or UTF-8, an empty or over-long name,
            a name given twice, or more than ``max_params`` fields.
    """
    if isinstance(body, str):
        try:
            body = body.encode("utf-8")
        except UnicodeEncodeError:
            raise QueryError("request is not valid UTF-8") from None
    params: dict[str, str] = {}
    if not body:
        return params
    fields = body.split(b"&", max_params)
    if len(fields) > max_params:
        raise QueryError(f"too many parameters (at most {max_params})")
    for field in fields:
        if not field:
            continue
        raw_key, _, raw_value = field.partition(b"=")
        key = _unquote(raw_key, "a parameter name")
        if not key or len(key) > max_key_length:
            raise QueryError(f"parameter names must be 1 to {max_key_length} characters")
        if key in params:
            raise QueryError(f"parameter {key} is given more than once", "InvalidQueryParameter")
        params[key] = _unquote(raw_value, f"the value of {key}")
    return params


parse_query = parse_form  # a query string is the same codec


def encode_form(params: Mapping[str, str]) -> bytes:
    """``{name: value}`` -> form body, percent-encoded as botocore does (RFC 3986)."""
    return "&".join(
        f"{quote(k, safe=_FORM_SAFE)}={quote(v, safe=_FORM_SAFE)}" for k, v in params.items()
    ).encode("ascii")


# --- lists and structures -----------------------------------------------------------


def _index(text: str, key: str) -> int:
    if not (text.isascii() and text.isdigit()) or text[0] == "0" or len(text) > 6:
        raise QueryError(f"parameter {key} has an invalid list index")
    return int(text)


def list_items(params: Mapping[str, str], prefix: str, keys=None,
               sep: str = "member") -> list[tuple[str, list[str]]]:
    """The items of the list ``prefix``, as ``[(item_prefix, item_keys), ...]``.

    ``item_prefix`` is ``prefix.member.N`` (N = 1, 2, ...); ``item_keys`` are the
    parameter names that belong to that item (``item_prefix`` itself and anything
    under ``item_prefix.``). ``keys`` optionally restricts the scan to a subset
    of names (callers walking nested shapes pass their parent's keys). ``sep`` is
    ``"entry"`` for maps.

    Raises:
        QueryError: a name under ``prefix.`` that is not ``prefix.member.N[...]``,
            a bad index, or indices that do not run 1..N.
    """
    under = prefix + "."
    head = f"{under}{sep}."
    cut = len(head)
    groups: dict[int, list[str]] = {}
    for key in params if keys is None else keys:
        if not key.startswith(under):
            continue
        if not key.startswith(head):
            raise QueryError(f"parameter {key} is not a member of list {prefix}")
        index, _, _ = key[cut:].partition(".")
        groups.setdefault(_index(index, key), []).append(key)
    if not groups:
        return []
    if max(groups) != len(groups):
        raise QueryError(f"list {prefix} must be numbered from 1 without gaps")
    return [(f"{head}{i}", groups[i]) for i in range(1, len(groups) + 1)]


def unflatten(params: Mapping[str, str], name: str, member_shape=None) -> list:
    """Read the Query list ``name``.

    ``member_shape`` None: a list of strings (``Name.member.N``). Otherwise an
    iterable of field names: a list of dicts holding the fields present
    (``Tags.member.N.Key`` -> ``{"Key": ...}``). ``Name=`` alone is the empty list.

    Raises:
        QueryError: as ``list_items``; also a scalar item missing, or ``Name``
            set to something other than ``""``.
    """
    items = list_items(params, name)
    if not items and params.get(name, "") != "":
        raise QueryError(f"parameter {name} must be a list")
    if member_shape is None:
        missing = [item for item, _ in items if item not in params]
        if missing:
            raise QueryError(f"parameter {missing[0]} has no value")
        return [params[item] for item, _ in items]
    fields = tuple(member_shape)
    return [
        {f: params[f"{item}.{f}"] for f in fields if f"{item}.{f}" in params}
        for item, _ in items
    ]


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, _dt.datetime):
        return _iso(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested Python -> Query parameters (the inverse of reading them).

    dict -> ``Outer.Inner``, list -> ``Name.member.N`` (empty list -> ``Name=``),
    None skipped, scalars as in XML rendering.
    """
    out: dict[str, str] = {}
    for key, value in params.items():
        _flatten_into(out, f"{prefix}{key}", value)
    return out


def _flatten_into(out: dict[str, str], name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        out.update(flatten(value, name + "."))
    elif isinstance(value, (list, tuple)):
        if not value:
            out[name] = ""
        for i, item in enumerate(value, 1):
            _flatten_into(out, f"{name}.member.{i}", item)
    else:
        out[name] = _scalar_text(value)


# --- XML rendering ------------------------------------------------------------------

_TEXT_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTR_SPECIAL = re.compile('[&<>"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
            "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"}


def _escape_char(match: re.Match) -> str:
    return _ESCAPES.get(match.group(), "\ufffd")


def escape_text(text: str) -> str:
    """Escape ``text`` for XML character data (see the module docstring)."""
    if _TEXT_SPECIAL.search(text) is None:
        return text
    return _TEXT_SPECIAL.sub(_escape_char, text)


def _escape_attr(text: str) -> str:
    return _ATTR_SPECIAL.sub(_escape_char, text)


def _iso(when: _dt.datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("naive datetime: AWS timestamps must be timezone-aware")
    return iso_z(when)


class XmlMap(dict):
    """A Query-protocol map: rendered as ``<entry><key>K</key><value>V</value></entry>``."""


def _render(parts: list[str], value: Any) -> None:
    if isinstance(value, str):
        parts.append(escape_text(value))
    elif isinstance(value, XmlMap):
        for key, child in value.items():
            parts.append(f"<entry><key>{escape_text(str(key))}</key><value>")
            _render(parts, child)
            parts.append("</value></entry>")
    elif isinstance(value, Mapping):
        for key, child in value.items():
            if child is not None:
                parts.append(f"<{key}>")
                _render(parts, child)
                parts.append(f"</{key}>")
    elif isinstance(value, (list, tuple)):
        for item in value:
            if item is None:
                raise TypeError("None inside a list cannot be rendered")
            parts.append("<member>")
            _render(parts, item)
            parts.append("</member>")
    else:
        parts.append(_scalar_text(value))


def render_result(action: str, namespace: str, result: ResultNode, request_id: str) -> bytes:
    """``<{action}Response>`` with an ``<{action}Result>`` (omitted when result is None)."""
    parts = [f'<{action}Response xmlns="{_escape_attr(namespace)}">']
    if result is not None:
        parts.append(f"<{action}Result>")
        _render(parts, result)
        parts.append(f"</{action}Result>")
    parts.append(f"<ResponseMetadata><RequestId>{escape_text(request_id)}</RequestId>"
                 f"</ResponseMetadata></{action}Response>")
    return "".join(parts).encode("utf-8")


def render_error(code: str, message: str, fault: str, namespace: str, request_id: str) -> bytes:
    """The Query ``<ErrorResponse>``; ``fault`` is ``Sender`` or ``Receiver``."""
    return (
        f'<ErrorResponse xmlns="{_escape_attr(namespace)}"><Error>'
        f"<Type>{escape_text(fault)}</Type><Code>{escape_text(code)}</Code>"
        f"<Message>{escape_text(message)}</Message></Error>"
        f"<RequestId>{escape_text(request_id)}</RequestId></ErrorResponse>"
    ).encode("utf-8")


def new_request_id() -> str:
    """A fresh request id: a random UUID, as AWS uses."""
    return str(uuid.uuid4())


# --- XML parsing (client side, untrusted input) -------------------------------------


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _parse_xml(data: bytes | str, max_bytes: int):
    if len(data) > max_bytes:
        raise QueryError(f"XML document larger than {max_bytes} bytes", "MalformedResponse")
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        return fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise QueryError(f"malformed XML: {exc}", "MalformedResponse") from exc


def _to_python(elem, depth: int) -> Any:
    children = list(elem)
    if not children:
        return elem.text or ""
    if depth >= MAX_XML_DEPTH:
        raise QueryError(f"XML nested deeper than {MAX_XML_DEPTH}", "MalformedResponse")
    names = [_local(child.tag) for child in children]
    if all(n == "member" for n in names):
        return [_to_python(child, depth + 1) for child in children]
    if all(n == "entry" for n in names):
        return {_text_of(c, "key"): _to_python(_child(c, "value"), depth + 1) for c in children}
    out: dict[str, Any] = {}
    for name, child in zip(names, children):
        if name in out:
            raise QueryError(f"element <{name}> repeated", "MalformedResponse")
        out[name] = _to_python(child, depth + 1)
    return out


def _child(elem, name: str):
    for child in elem:
        if _local(child.tag) == name:
            return child
    raise QueryError(f"<{_local(elem.tag)}> has no <{name}>", "MalformedResponse")


def _text_of(elem, name: str) -> str:
    return _child(elem, name).text or ""


def parse_response(xml_bytes: bytes | str, action: str, *,
                   max_bytes: int = MAX_RESPONSE_BYTES) -> dict[str, Any]:
    """``<{action}Response>`` -> the result's members plus ``ResponseMetadata``.

    Leaves are strings (empty elements ``""``, so an empty list reads as ``""``);
    ``member`` children become lists, ``entry``/``key``/``value`` maps; the
    caller converts types. Namespaces are ignored.

    Raises:
        QueryError: malformed, oversized or too deep XML; an error document; a
            root other than ``{action}Response``.
    """
    root = _parse_xml(xml_bytes, max_bytes)
    name = _local(root.tag)
    if name != f"{action}Response":
        raise QueryError(f"expected <{action}Response>, got <{name}>", "MalformedResponse")
    out: dict[str, Any] = {}
    for child in root:
        local = _local(child.tag)
        if local == f"{action}Result":
            result = _to_python(child, 1)
            if isinstance(result, dict):
                out.update(result)
            elif result != "":
                raise QueryError(f"<{local}> is not a structure", "MalformedResponse")
        elif local == "ResponseMetadata":
            meta = _to_python(child, 1)
            out["ResponseMetadata"] = meta if isinstance(meta, dict) else {}
    return out


def parse_error(xml_bytes: bytes | str, *,
                max_bytes: int = MAX_RESPONSE_BYTES) -> tuple[str, str, str]:
    """An AWS error document -> ``(code, message, request_id)``.

    Accepts ``<ErrorResponse><Error>`` and ``<Response><Errors><Error>`` (the
    first ``Error`` anywhere); ``RequestId``/``RequestID`` anywhere; missing
    message or request id read as ``""``.

    Raises:
        QueryError: malformed XML, or no ``Error`` with a non-empty ``Code``.
    """
    root = _parse_xml(xml_bytes, max_bytes)
    code = message = request_id = ""
    error = None
    for elem in root.iter():
        local = _local(elem.tag)
        if local == "Error" and error is None:
            error = elem
        elif local in ("RequestId", "RequestID") and not request_id:
            request_id = elem.text or ""
    if error is not None:
        for child in error:
            local = _local(child.tag)
            if local == "Code":
                code = (child.text or "").strip()
            elif local == "Message":
                message = child.text or ""
    if not code:
        raise QueryError("not an AWS error document (no Error/Code)", "MalformedResponse")
    return code, message, request_id

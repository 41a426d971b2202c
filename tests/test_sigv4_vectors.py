"""wire.sigv4 against the official AWS SigV4 test suite, both ways.

Signing: every ``.req`` gives its ``.creq``, ``.sts`` and ``.authz`` byte for byte.
Verifying: every ``.sreq`` is accepted, and changing any one signed part of it
(method, path, a query name or value, a signed header, the body, the date, the
signature) makes ``verify`` refuse it with SignatureDoesNotMatch.

The suite's files hold *decoded* request-targets (``get-utf8`` has a raw UTF-8
path, ``get-space`` a raw space), so their canonical URI is encoded once; real
clients send percent-encoded paths, which canonicalise to the double-encoded
form (tests/interop cover that). Cases that need special handling:

- ``get-header-value-multiline``: an obs-fold header; unfolded here as h11 does
  (continuation joined with one space), and the raw folded value is checked too.
- ``get-vanilla-with-session-token``: its ``.req`` lacks the token that its
  ``.creq`` signs (the signer adds it from the credentials, as SigV4Auth does),
  and its published ``.sreq`` carries get-vanilla's signature, not the one in
  its ``.authz``: that ``.sreq`` must be *refused*; the corrected one verifies.
- ``post-sts-token/post-sts-header-after``: the token is appended after signing;
  it is accepted unsigned and surfaced, so the backend must check it itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import httpx
import pytest

from tests.clocks import FixedClock
from wire.sigv4 import (
    Credentials,
    SigV4Auth,
    SignatureDoesNotMatch,
    authorization_header,
    canonical_request,
    credential_scope,
    signature,
    signing_key,
    string_to_sign,
    verify,
)

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "sigv4"
if not VECTORS.is_dir():
    pytest.skip(f"SigV4 test vectors not found: {VECTORS} is missing", allow_module_level=True)

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION, SERVICE = "us-east-1", "service"
STAMP = "20150830T123600Z"
NOW = dt.datetime(2015, 8, 30, 12, 36, tzinfo=dt.timezone.utc)
# The token this case's .creq signs; its .req leaves adding it to the signer.
SIGNER_ADDS_TOKEN = {"get-vanilla-with-session-token": "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"}
# Published .sreq files whose Authorization does not match their own .authz.
BROKEN_SREQ = {"get-vanilla-with-session-token"}


@dataclasses.dataclass(frozen=True)
class Raw:
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header_names(self) -> list[str]:
        return sorted({name.lower() for name, _ in self.headers})


def parse(text: str) -> Raw:
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    request_line, *lines = head.split("\n")
    words = request_line.split(" ")
    target = " ".join(words[1:-1])  # normalize-path/get-space has a space in its path
    headers: list[tuple[str, str]] = []
    for line in filter(None, lines):
        if line[0] in " \t":  # obs-fold continuation: unfold as h11 does
            name, value = headers.pop()
            headers.append((name, value + " " + line.lstrip(" \t")))
        else:
            name, _, value = line.partition(":")
            headers.append((name, value))
    path, _, query = target.partition("?")
    return Raw(words[0], path, query, tuple(headers), body.encode())


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    req: Raw
    sreq: Raw
    creq: str
    sts: str
    authz: str

    @classmethod
    def load(cls, req_file: Path) -> Case:
        read = lambda ext: req_file.with_suffix(ext).read_text(encoding="utf-8").replace("\r\n", "\n")  # noqa: E731
        name = req_file.parent.relative_to(VECTORS).as_posix()
        return cls(name, parse(read(".req")), parse(read(".sreq")), read(".creq"), read(".sts"), read(".authz"))

    def request_to_sign(self) -> Raw:
        token = SIGNER_ADDS_TOKEN.get(self.name)
        if token is None:
            return self.req
        return dataclasses.replace(self.req, headers=(*self.req.headers, ("X-Amz-Security-Token", token)))

    def good_sreq(self) -> Raw:
        """The .sreq, with the Authorization of .authz where the published one is wrong."""
        if self.name not in BROKEN_SREQ:
            return self.sreq
        kept = tuple(h for h in self.sreq.headers if h[0].lower() != "authorization")
        return dataclasses.replace(self.sreq, headers=(*kept, ("Authorization", self.authz)))


CASES = [Case.load(p) for p in sorted(VECTORS.rglob("*.req"))]
BY_NAME = {case.name: case for case in CASES}


def lookup(key_id: str, token: str | None) -> str | None:
    return SECRET if key_id == KEY_ID else None


def check(raw: Raw, now: dt.datetime = NOW):
    return verify(raw.method, raw.path, raw.query, raw.headers, raw.body, lookup, now, service=SERVICE, region=REGION)


def sign(raw: Raw) -> tuple[str, str, str]:
    names = raw.header_names()
    creq = canonical_request(raw.method, raw.path, raw.query, raw.headers, names, hashlib.sha256(raw.body).hexdigest())
    scope = credential_scope(STAMP[:8], REGION, SERVICE)
    sts = string_to_sign(STAMP, scope, creq)
    sig = signature(signing_key(SECRET, STAMP[:8], REGION, SERVICE), sts)
    return creq, sts, authorization_header(KEY_ID, scope, names, sig)


def test_the_whole_suite_is_here():
    assert len(CASES) == 34
    assert {"normalize-path/get-space", "post-sts-token/post-sts-header-after"} <= set(BY_NAME)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_canonical_request(case):
    assert sign(case.request_to_sign())[0] == case.creq


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_string_to_sign(case):
    assert sign(case.request_to_sign())[1] == case.sts


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_authorization_header(case):
    assert sign(case.request_to_sign())[2] == case.authz


def test_folded_header_value_canonicalises_like_its_unfolded_form():
    case = BY_NAME["get-header-value-multiline"]
    folded = [(n, "value1\n  value2\n     value3" if n == "My-Header1" else v) for n, v in case.req.headers]
    raw = dataclasses.replace(case.req, headers=tuple(folded))
    assert sign(raw)[0] == case.creq


# SigV4Auth signs host, content-type and x-amz-*: it reproduces every case whose
# headers are only those and whose target an httpx URL carries unchanged.
AUTH_CASES = [c for c in CASES
              if set(c.request_to_sign().header_names()) <= {"host", "x-amz-date", "content-type", "x-amz-security-token"}
              and c.req.path.isascii() and " " not in c.req.path]


@pytest.mark.parametrize("case", AUTH_CASES, ids=lambda c: c.name)
def test_sigv4auth_reproduces_vector(case):
    raw = case.request_to_sign()
    token = next((v for n, v in raw.headers if n.lower() == "x-amz-security-token"), None)
    headers = {n: v for n, v in raw.headers if n.lower() == "content-type"}
    url = f"https://example.amazonaws.com{raw.path}" + (f"?{raw.query}" if raw.query else "")
    request = httpx.Request(raw.method, url, headers=headers, content=raw.body)
    auth = SigV4Auth(Credentials(KEY_ID, SECRET, token), REGION, SERVICE, FixedClock(NOW))
    signed = next(auth.sync_auth_flow(request))
    assert signed.headers["Authorization"] == case.authz


def test_sigv4auth_covers_the_session_token_case():
    assert "get-vanilla-with-session-token" in {c.name for c in AUTH_CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_signed_request_verifies(case):
    result = check(case.good_sreq())
    assert (result.access_key_id, result.date, result.region, result.service) == (KEY_ID, "20150830", REGION, SERVICE)
    assert ";".join(result.signed_headers) == case.authz.split("SignedHeaders=")[1].split(",")[0]
    assert result.signed_at == NOW and not result.presigned
    tokens = [v for n, v in case.sreq.headers if n.lower() == "x-amz-security-token"]
    assert result.session_token == (tokens[0] if tokens else None)


def test_published_sreq_with_wrong_signature_is_refused():
    with pytest.raises(SignatureDoesNotMatch):
        check(BY_NAME["get-vanilla-with-session-token"].sreq)


def test_token_appended_after_signing_is_unsigned_so_any_value_passes_the_signature():
    case = BY_NAME["post-sts-token/post-sts-header-after"]
    changed = tuple((n, v + "x" if n.lower() == "x-amz-security-token" else v) for n, v in case.sreq.headers)
    result = check(dataclasses.replace(case.sreq, headers=changed))
    assert result.session_token is not None and result.session_token.endswith("==x")
    assert "x-amz-security-token" not in result.signed_headers


def _edit_query(query: str, index: int, edit) -> str:
    pieces = query.split("&")
    name, eq, value = pieces[index].partition("=")
    pieces[index] = "".join(edit(name, eq, value))
    return "&".join(pieces)


def mutations(raw: Raw, signed: set[str]) -> dict[str, Raw]:
    """Each signed part of ``raw`` changed, one at a time."""
    swap = dataclasses.replace
    out = {
        "method": swap(raw, method="POST" if raw.method == "GET" else "GET"),
        "path": swap(raw, path=raw.path + "x"),
        "query-added": swap(raw, query=f"{raw.query}&extra=1" if raw.query else "extra=1"),
        "body": swap(raw, body=raw.body + b"x"),
    }
    for i in range(len(raw.query.split("&")) if raw.query else 0):
        out[f"query-{i}-name"] = swap(raw, query=_edit_query(raw.query, i, lambda n, e, v: (n + "x", e, v)))
        out[f"query-{i}-value"] = swap(raw, query=_edit_query(raw.query, i, lambda n, e, v: (n, "=", v + "x")))
    for i, (name, value) in enumerate(raw.headers):
        lname = name.lower()
        if lname in signed and lname != "x-amz-date":  # the date has its own cases below
            headers = list(raw.headers)
            headers[i] = (name, value + "x")
            out[f"header-{lname}-{i}-value"] = swap(raw, headers=tuple(headers))
            out[f"header-{lname}-{i}-dropped"] = swap(raw, headers=raw.headers[:i] + raw.headers[i + 1:])
            out[f"header-{lname}-{i}-repeated"] = swap(raw, headers=(*raw.headers, (name, value)))
    repeated = [h for h in raw.headers if sum(n.lower() == h[0].lower() for n, _ in raw.headers) > 1]
    if len({v for _, v in repeated}) > 1:  # get-header-value-order: the order of values is signed
        rest = [h for h in raw.headers if h not in repeated]
        out["header-order"] = swap(raw, headers=(*reversed(repeated), *rest))
    for label, stamp in (("date-plus-1s", "20150830T123601Z"), ("date-day-before", "20150829T123600Z"),
                         ("date-20-min-later", "20150830T125600Z")):
        out[label] = swap(raw, headers=tuple((n, stamp if n.lower() == "x-amz-date" else v) for n, v in raw.headers))
    sig_flip = lambda v: v[:-1] + ("0" if v[-1] != "0" else "1")  # noqa: E731
    out["signature"] = swap(raw, headers=tuple((n, sig_flip(v) if n.lower() == "authorization" else v)
                                               for n, v in raw.headers))
    return out


MUTATIONS = [(case, label, mutated)
             for case in CASES
             for label, mutated in mutations(case.good_sreq(), set(case.request_to_sign().header_names())).items()]


@pytest.mark.parametrize(("case", "label", "mutated"), MUTATIONS, ids=[f"{c.name}:{lbl}" for c, lbl, _ in MUTATIONS])
def test_changing_a_signed_part_is_refused(case, label, mutated):
    assert mutated != case.good_sreq()
    with pytest.raises(SignatureDoesNotMatch):
        check(mutated)


def test_unsigned_extra_header_does_not_matter():
    raw = BY_NAME["get-vanilla"].sreq
    assert check(dataclasses.replace(raw, headers=(*raw.headers, ("User-Agent", "anything")))).access_key_id == KEY_ID

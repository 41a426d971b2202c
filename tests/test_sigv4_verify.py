"""wire.sigv4: verify()'s refusals and messages, SigV4Auth driven by hand, presign_url.

The official vectors are in test_sigv4_vectors.py; real SDKs in tests/interop/.
"""

from __future__ import annotations

import dataclasses
import email.utils
import datetime as dt
import hashlib

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire import sigv4
from tests.clocks import FixedClock
from wire.sigv4 import (
    Credentials,
    IncompleteSignature,
    UnknownAccessKey,
    MissingAuthenticationToken,
    SigV4Auth,
    SigV4Error,
    SignatureDoesNotMatch,
    authorization_header,
    canonical_request,
    credential_scope,
    presign_url,
    signature,
    signing_key,
    string_to_sign,
    verify,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
KEY_ID, SECRET, TOKEN = "AKIAROLECALLTEST0001", "s3cr3t/KEY+material0123456789abcdefghij", "FQoGZXIvYXdz+token/with=="
CREDS = Credentials(KEY_ID, SECRET)
URL = "http://127.0.0.1:8900/"
FORM = b"Action=GetCallerIdentity&Version=2011-06-15"
FORM_TYPE = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


@dataclasses.dataclass(frozen=True)
class Wire:
    """A request as verify() receives it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def of(cls, request: httpx.Request) -> Wire:
        path, _, query = request.url.raw_path.decode("ascii").partition("?")
        return cls(request.method, path, query, tuple(request.headers.multi_items()), request.content)

    def set(self, name: str, value: str | None) -> Wire:
        """This request with header ``name`` replaced (or removed when ``value`` is None)."""
        kept = tuple(h for h in self.headers if h[0].lower() != name.lower())
        return dataclasses.replace(self, headers=kept if value is None else (*kept, (name, value)))

    def get(self, name: str) -> str:
        return next(v for n, v in self.headers if n.lower() == name.lower())


def lookup(key_id: str, token: str | None) -> str | None:
    return {KEY_ID: SECRET}.get(key_id)


def check(w: Wire, now: dt.datetime = T0, lookup=lookup, **scope):
    return verify(w.method, w.path, w.query, w.headers, w.body, lookup, now, **scope)


def signed(when: dt.datetime = T0, creds: Credentials = CREDS, method: str = "POST", url: str = URL,
           service: str = "sts", **kwargs) -> Wire:
    if method == "POST" and "content" not in kwargs:
        kwargs = {"content": FORM, "headers": FORM_TYPE, **kwargs}
    request = httpx.Request(method, url, **kwargs)
    flow = SigV4Auth(creds, "us-east-1", service, FixedClock(when)).sync_auth_flow(request)
    return Wire.of(next(flow))


def resign(w: Wire, names: list[str], *, scope_date: str = "20260101", stamp: str = "20260101T000000Z") -> Wire:
    """Replace ``w``'s Authorization with a correct signature over ``names``."""
    creq = canonical_request(w.method, w.path, w.query, w.headers, names, hashlib.sha256(w.body).hexdigest())
    scope = credential_scope(scope_date, "us-east-1", "sts")
    sig = signature(signing_key(SECRET, scope_date, "us-east-1", "sts"), string_to_sign(stamp, scope, creq))
    return w.set("Authorization", authorization_header(KEY_ID, scope, names, sig))


# --- the happy path, and SigV4Auth by hand -----------------------------------


def test_sigv4auth_flow_by_hand_signs_a_request_that_verifies():
    request = httpx.Request("POST", URL, content=FORM, headers=FORM_TYPE)
    flow = SigV4Auth(Credentials(KEY_ID, SECRET, TOKEN), "us-east-1", "sts", FixedClock(T0)).sync_auth_flow(request)
    out = next(flow)
    assert out.headers["X-Amz-Date"] == "20260101T000000Z"
    assert out.headers["X-Amz-Security-Token"] == TOKEN
    assert "x-amz-content-sha256" not in out.headers  # as botocore for STS
    assert out.headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20260101/us-east-1/sts/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=")
    result = check(Wire.of(out), service="sts", region="us-east-1")
    assert (result.access_key_id, result.session_token, result.signed_at, result.presigned) == (KEY_ID, TOKEN, T0, False)
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200))


def test_resigning_replaces_the_old_signature():
    auth = SigV4Auth(CREDS, "us-east-1", "sts", FixedClock(T0))
    request = next(auth.sync_auth_flow(httpx.Request("GET", URL, headers={"Authorization": "Bearer stale"})))
    again = next(auth.sync_auth_flow(request))
    assert len(again.headers.get_list("Authorization")) == 1
    assert len(again.headers.get_list("X-Amz-Date")) == 1
    check(Wire.of(again))


def test_sigv4auth_signs_extra_x_amz_headers_and_the_query():
    w = signed(method="GET", url=URL + "a/b?Action=GetCallerIdentity&x=a%20b+c", headers={"X-Amz-Target": "t"})
    assert check(w).signed_headers == ("host", "x-amz-date", "x-amz-target")
    with pytest.raises(SignatureDoesNotMatch):
        check(w.set("X-Amz-Target", "u"))


def test_payload_hash_header_that_matches_the_body_is_accepted():
    w = signed(headers={**FORM_TYPE, "x-amz-content-sha256": hashlib.sha256(FORM).hexdigest()})
    assert "x-amz-content-sha256" in check(w).signed_headers


@pytest.mark.parametrize("claimed", [hashlib.sha256(b"other").hexdigest(), "UNSIGNED-PAYLOAD"])
def test_payload_hash_header_that_does_not_match_the_body_is_refused(claimed):
    w = signed(headers={**FORM_TYPE, "x-amz-content-sha256": claimed})
    with pytest.raises(SignatureDoesNotMatch, match="'x-amz-content-sha256' header does not match"):
        check(w)


# --- the clock -----------------------------------------------------------------


@pytest.mark.parametrize("minutes", [-15, -14, 0, 14, 15])
def test_clock_window_accepts_up_to_15_minutes_either_way(minutes):
    assert check(signed(), now=T0 + dt.timedelta(minutes=minutes)).signed_at == T0


def test_signature_16_minutes_old_is_expired():
    with pytest.raises(SignatureDoesNotMatch) as info:
        check(signed(), now=T0 + dt.timedelta(minutes=16))
    assert info.value.message == ("Signature expired: 20260101T000000Z is now earlier than "
                                  "20260101T000100Z (20260101T001600Z - 15 min.)")


def test_signature_16_minutes_ahead_is_not_yet_current():
    with pytest.raises(SignatureDoesNotMatch) as info:
        check(signed(), now=T0 - dt.timedelta(minutes=16))
    assert info.value.message == ("Signature not yet current: 20260101T000000Z is still later than "
                                  "20251231T235900Z (20251231T234400Z + 15 min.)")


def test_naive_now_is_a_programming_error():
    with pytest.raises(ValueError):
        check(signed(), now=T0.replace(tzinfo=None))


# --- keys, scope, headers --------------------------------------------------------


def test_no_auth_at_all():
    w = signed().set("Authorization", None)
    with pytest.raises(MissingAuthenticationToken) as info:
        check(w)
    assert (info.value.code, info.value.http_status, info.value.message) == (
        "MissingAuthenticationToken", 403, "Request is missing Authentication Token")


def test_unknown_key():
    with pytest.raises(UnknownAccessKey) as info:
        check(signed(creds=Credentials("AKIAUNKNOWN000000000", SECRET)))
    assert (info.value.http_status, info.value.message) == (403, "The security token included in the request is invalid.")


def test_wrong_secret():
    with pytest.raises(SignatureDoesNotMatch) as info:
        check(signed(creds=Credentials(KEY_ID, "not-the-secret")))
    assert info.value.http_status == 403
    assert info.value.message.startswith("The request signature we calculated does not match")
    assert SECRET not in info.value.message and "not-the-secret" not in info.value.message


def test_lookup_receives_the_session_token_and_its_exceptions_propagate():
    class Revoked(Exception):
        pass

    seen = []

    def failing(key_id, token):
        seen.append((key_id, token))
        raise Revoked("session revoked")

    with pytest.raises(Revoked):
        check(signed(creds=Credentials(KEY_ID, SECRET, TOKEN)), lookup=failing)
    assert seen == [(KEY_ID, TOKEN)]


def test_unsigned_session_token_header_is_still_surfaced():
    w = signed().set("X-Amz-Security-Token", TOKEN)
    result = check(w)
    assert result.session_token == TOKEN and "x-amz-security-token" not in result.signed_headers


def test_scope_date_must_be_the_x_amz_date_day():
    w = resign(signed(), ["content-type", "host", "x-amz-date"], scope_date="20251231")
    with pytest.raises(SignatureDoesNotMatch) as info:
        check(w)
    assert info.value.message == ("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                                  "from HTTP: '20251231' != '20260101', from '20260101T000000Z'.")


@pytest.mark.parametrize(("scope", "message"), [
    ({"service": "iam"}, "Credential should be scoped to correct service: 'iam'. "),
    ({"region": "eu-west-1"}, "Credential should be scoped to a valid region, not 'us-east-1'. "),
])
def test_scope_service_and_region_when_required(scope, message):
    with pytest.raises(SignatureDoesNotMatch) as info:
        check(signed(), **scope)
    assert info.value.message == message


def test_any_region_when_none_is_required():
    assert check(signed(), service="sts").region == "us-east-1"


def test_host_must_be_signed():
    w = resign(signed(), ["content-type", "x-amz-date"])
    with pytest.raises(IncompleteSignature, match="'Host' or ':authority' must be a 'SignedHeader'"):
        check(w)


def test_date_header_when_there_is_no_x_amz_date():
    w = signed().set("X-Amz-Date", None).set("Date", "Thu, 01 Jan 2026 00:00:00 GMT")
    w = resign(w, ["content-type", "date", "host"])
    assert check(w).signed_at == T0


# --- malformed Authorization ------------------------------------------------------


GOOD = signed().get("Authorization")


@pytest.mark.parametrize(("header", "message"), [
    ("AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sts/aws4_request",
     "Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' "
     "parameter. Authorization=AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sts/aws4_request"),
    ("AWS4-HMAC-SHA256 ",
     "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. "
     "Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 "),
    ("AWS4-HMAC-SHA256 Credential= AKID/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=ab",
     "'AKID/20260101/us-east-1/sts/aws4_request' not a valid key=value pair (missing equal-sign) in Authorization "
     "header: 'AWS4-HMAC-SHA256 Credential= AKID/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, "
     "Signature=ab'."),
    ("AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sts, SignedHeaders=host, Signature=ab",
     "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
     "got 'AKID/20260101/us-east-1/sts'"),
    (GOOD.replace("SignedHeaders=", "SignedHeaders=host, SignedHeaders="),
     f"Authorization header has 'SignedHeaders' more than once. Authorization={GOOD.replace('SignedHeaders=', 'SignedHeaders=host, SignedHeaders=')}"),
])
def test_malformed_authorization_header(header, message):
    with pytest.raises(IncompleteSignature) as info:
        check(signed().set("Authorization", header))
    assert (info.value.code, info.value.http_status, info.value.message) == ("IncompleteSignature", 400, message)


def test_authorization_header_needs_a_date():
    with pytest.raises(IncompleteSignature) as info:
        check(signed().set("X-Amz-Date", None))
    assert info.value.message == ("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                                  f"header. Authorization={GOOD}")


@pytest.mark.parametrize("stamp", ["2026-01-01T00:00:00Z", "20261301T000000Z", "20260101T000000Z\n", ""])
def test_bad_x_amz_date(stamp):
    with pytest.raises(IncompleteSignature, match=r"^Date must be in ISO-8601 'basic format'\. Got '"):
        check(signed().set("X-Amz-Date", stamp))


def test_scope_terminator():
    w = signed().set("Authorization", GOOD.replace("aws4_request", "aws5_request"))
    with pytest.raises(SignatureDoesNotMatch, match="valid terminator: 'aws4_request', not 'aws5_request'"):
        check(w)


def test_other_schemes_are_refused_without_echoing_their_secret():
    with pytest.raises(IncompleteSignature) as info:
        check(signed().set("Authorization", "Bearer eyJhbGciOi.secret-bearer-token"))
    assert "secret-bearer-token" not in info.value.message
    assert "hashed with SHA-256 and encoded with Base64" in info.value.message


def test_two_authorization_headers():
    w = signed()
    with pytest.raises(IncompleteSignature):
        check(dataclasses.replace(w, headers=(*w.headers, ("Authorization", GOOD))))


def test_control_characters_are_not_echoed_raw():
    with pytest.raises(IncompleteSignature) as info:
        check(signed().set("Authorization", "AWS4-HMAC-SHA256 Credential=a\x00b"))
    assert "\x00" not in info.value.message and "a\\x00b" in info.value.message


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text().map(lambda s: "AWS4-HMAC-SHA256 " + s),
                 st.lists(st.sampled_from(["Credential=", "SignedHeaders=", "Signature=", "AKID/20260101/us-east-1/sts/aws4_request",
                                           "host;x-amz-date", ",", " ", "=", "/", "\x00", "é"]))
                 .map(lambda parts: "AWS4-HMAC-SHA256 " + "".join(parts))))
def test_random_authorization_headers_only_ever_raise_sigv4_errors(header):
    with pytest.raises(SigV4Error) as info:
        check(signed().set("Authorization", header))
    assert SECRET not in info.value.message


_OFFSETS = st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=14)), dt.timezone(-dt.timedelta(hours=14))])
_HTTP_DATES = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31), timezones=_OFFSETS)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["X-Amz-Date", "Date"]),
       st.one_of(st.text(), _HTTP_DATES.map(email.utils.format_datetime), _HTTP_DATES.map(lambda d: d.strftime("%Y%m%dT%H%M%SZ"))))
def test_random_dates_only_ever_raise_sigv4_errors(header, value):
    w = signed().set("X-Amz-Date", None).set(header, value)
    with pytest.raises(SigV4Error):
        check(w)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text(), st.text())
def test_random_presign_parameters_only_ever_raise_sigv4_errors(credential, stamp, expires):
    from urllib.parse import urlencode
    query = urlencode({"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": credential, "X-Amz-Date": stamp,
                       "X-Amz-Expires": expires, "X-Amz-SignedHeaders": "host", "X-Amz-Signature": "00"})
    with pytest.raises(SigV4Error):
        verify("GET", "/", query, [("Host", "h")], b"", lookup, T0)


# --- presigned URLs -----------------------------------------------------------------


def presigned(url: str = URL + "?Action=GetCallerIdentity&Version=2011-06-15", creds: Credentials = CREDS,
              expires: int = 900, method: str = "GET") -> Wire:
    out = httpx.URL(presign_url(method, url, creds, region="us-east-1", service="sts", when=T0, expires=expires))
    path, _, query = out.raw_path.decode().partition("?")
    return Wire(method, path, query, (("Host", out.netloc.decode()),), b"")


def test_presigned_url_verifies_and_surfaces_its_token():
    result = check(presigned(creds=Credentials(KEY_ID, SECRET, TOKEN)), now=T0 + dt.timedelta(minutes=5))
    assert (result.presigned, result.session_token, result.signed_headers) == (True, TOKEN, ("host",))


def test_presigned_url_is_good_until_date_plus_expires_and_no_longer():
    w = presigned(expires=3600)
    check(w, now=T0 + dt.timedelta(seconds=3600))
    with pytest.raises(SignatureDoesNotMatch, match="^Request has expired"):
        check(w, now=T0 + dt.timedelta(seconds=3601))


def test_presigned_url_dated_in_the_future_is_not_yet_current():
    with pytest.raises(SignatureDoesNotMatch, match="^Signature not yet current"):
        check(presigned(), now=T0 - dt.timedelta(minutes=16))


@pytest.mark.parametrize(("expires", "message"), [
    ("0", "X-Amz-Expires must be at least 1 second"),
    ("604801", "X-Amz-Expires must be less than a week (in seconds) that is 604800"),
    ("1.5", "X-Amz-Expires should be a number of seconds, got '1.5'"),
    ("-1", "X-Amz-Expires should be a number of seconds, got '-1'"),
    ("９", "X-Amz-Expires should be a number of seconds, got '９'"),
])
def test_presigned_expires_must_be_an_integer_from_1_to_604800(expires, message):
    w = presigned()
    w = dataclasses.replace(w, query=w.query.replace("X-Amz-Expires=900", f"X-Amz-Expires={expires}"))
    with pytest.raises(IncompleteSignature) as info:
        check(w)
    assert info.value.message == message


@pytest.mark.parametrize("expires", [0, 604801])
def test_presign_url_refuses_out_of_range_expiry(expires):
    with pytest.raises(ValueError):
        presigned(expires=expires)


@pytest.mark.parametrize("tamper", [
    lambda w: dataclasses.replace(w, query=w.query.replace("GetCallerIdentity", "AssumeRole")),
    lambda w: dataclasses.replace(w, query=w.query.replace("X-Amz-Expires=900", "X-Amz-Expires=901")),
    lambda w: dataclasses.replace(w, method="POST"),
    lambda w: dataclasses.replace(w, path="/other"),
    lambda w: w.set("Host", "127.0.0.1:8901"),
])
def test_tampered_presigned_url_is_refused(tamper):
    with pytest.raises(SignatureDoesNotMatch):
        check(tamper(presigned()))


def test_presigned_query_missing_parameters():
    w = presigned()
    query = "&".join(p for p in w.query.split("&") if not p.startswith(("X-Amz-Date=", "X-Amz-Expires=")))
    with pytest.raises(IncompleteSignature) as info:
        check(dataclasses.replace(w, query=query))
    assert info.value.message == ("AWS query-string parameters must include 'X-Amz-Date', 'X-Amz-Expires'. "
                                  "Re-examine the query-string parameters.")


def test_presigned_query_parameter_given_twice():
    w = presigned()
    with pytest.raises(IncompleteSignature, match="'X-Amz-Date' must appear only once"):
        check(dataclasses.replace(w, query=w.query + "&X-Amz-Date=20260101T000001Z"))


def test_header_and_query_auth_together_are_refused():
    w = presigned().set("Authorization", GOOD)
    with pytest.raises(IncompleteSignature, match="^Only one auth mechanism allowed"):
        check(w)


# --- the types themselves -----------------------------------------------------------


def test_error_base_is_abstract_and_subclasses_carry_code_and_status():
    with pytest.raises(TypeError):
        SigV4Error("x")
    table = {cls.code: cls.http_status for cls in
             (IncompleteSignature, SignatureDoesNotMatch, UnknownAccessKey, MissingAuthenticationToken)}
    assert table == {"IncompleteSignature": 400, "SignatureDoesNotMatch": 403,
                     "InvalidClientTokenId": 403, "MissingAuthenticationToken": 403}
    assert str(SignatureDoesNotMatch("m")) == "m"


def test_reprs_hide_secret_and_token():
    creds = Credentials(KEY_ID, SECRET, TOKEN)
    auth = SigV4Auth(creds, "us-east-1", "sts", FixedClock(T0))
    verified = check(signed(creds=creds))
    for text in (repr(creds), str(creds), repr(auth), repr(verified)):
        assert SECRET not in text and TOKEN not in text
    assert KEY_ID in repr(creds) and "session_token=None" in repr(CREDS)


def test_signing_keys_are_cached_in_a_bounded_lru():
    signing_key.cache_clear()
    first = signing_key(SECRET, "20260101", "us-east-1", "sts")
    assert signing_key(SECRET, "20260101", "us-east-1", "sts") is first
    assert signing_key.cache_info().hits == 1 and signing_key.cache_info().maxsize == 256
    assert SECRET not in repr(signing_key)


def test_public_names():
    assert sorted(sigv4.__all__) == sorted(
        ["ALGORITHM", "Credentials", "IncompleteSignature", "MissingAuthenticationToken",
         "SigV4Auth", "SigV4Error", "SignatureDoesNotMatch", "VerifiedRequest", "authorization_header",
         "canonical_query", "canonical_request", "canonical_uri", "credential_scope", "presign_url", "signature",
         "signing_key", "string_to_sign", "UnknownAccessKey", "verify"])
    assert all(hasattr(sigv4, name) for name in sigv4.__all__)

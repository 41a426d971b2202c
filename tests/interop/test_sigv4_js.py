"""The AWS SDK for JavaScript v3's signer (@smithy/signature-v4) signs, wire.sigv4 verifies.

``js/sign.mjs`` signs every spec below in one node process (no network) and
returns the requests as the SDK would put them on the wire; each must verify,
and tampering with one must not. The JS signer adds and signs
``x-amz-content-sha256``, which verify() checks against the body.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import pytest

from wire.sigv4 import SignatureDoesNotMatch, verify

pytestmark = pytest.mark.interop

from tests.interop import JS_DIR, require_node
T0 = dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.timezone.utc)
KEY_ID, SECRET = "AKIAROLECALLTEST0003", "c2VjcmV0/JS+key0123456789abcdefghijklmno"
TOKEN = "IQoJb3JpZ2luX2VjEPT//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+ab/cd=="
FORM = "application/x-www-form-urlencoded"


def spec(method="GET", path="/", query=(), headers=None, body=None, token=None, service="sts",
         region="us-east-1", time=T0, **extra) -> dict:
    creds = {"accessKeyId": KEY_ID, "secretAccessKey": SECRET, **({"sessionToken": token} if token else {})}
    return {"method": method, "hostname": "127.0.0.1", "port": 8900, "path": path, "query": [list(q) for q in query],
            "headers": headers or {}, "body": body, "credentials": creds, "region": region, "service": service,
            "time": time and time.isoformat().replace("+00:00", "Z"), **extra}


SPECS = {
    "post-sts-form": spec("POST", headers={"content-type": FORM},
                          body="Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole"
                               "%2Fapp&RoleSessionName=web-1&Tags.member.1.Value=ops%20%C3%BC"),
    "post-session-token": spec("POST", headers={"content-type": FORM}, token=TOKEN,
                               body="Action=GetCallerIdentity&Version=2011-06-15"),
    "get-query-special-characters": spec(query=[("Action", "GetCallerIdentity"), ("space", "a b"), ("plus", "1+1"),
                                                ("slash", "a/b"), ("unicode", "ü✓"), ("reserved", "*!'();:@&=$,?#"),
                                                ("repeated", "b"), ("repeated", "a"), ("empty", "")]),
    "encoded-unicode-path": spec(path="/caf%C3%A9/%E2%9C%93/a%20b"),
    "dot-segments-path": spec(path="/a/./b/../c//d/"),
    "header-whitespace": spec(headers={"x-amz-meta-note": "  a   b\tc  "}),
    "iam-other-region": spec("POST", headers={"content-type": FORM}, body="Action=ListUsers&Version=2010-05-08",
                             service="iam", region="eu-west-1"),
    "presigned-get": spec(query=[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")], token=TOKEN,
                          presign=True, expiresIn=900),
    "presigned-post-long-expiry": spec("POST", query=[("Action", "GetCallerIdentity")], presign=True, expiresIn=604800),
    "real-clock": spec("POST", headers={"content-type": FORM}, body="Action=GetCallerIdentity", time=None),
}


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> dict[str, dict]:
    node = require_node("@smithy/signature-v4", "@smithy/hash-node", "@smithy/protocol-http")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path_factory.mktemp("node-home")),
           "AWS_EC2_METADATA_DISABLED": "true"}
    done = subprocess.run([node, str(JS_DIR / "sign.mjs")], input=json.dumps(list(SPECS.values())), cwd=JS_DIR,
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    results = dict(zip(SPECS, json.loads(done.stdout), strict=True))
    errors = {name: r["error"] for name, r in results.items() if "error" in r}
    assert not errors, errors
    return results


def lookup(key_id, token):
    return SECRET if key_id == KEY_ID else None


def check(result: dict, now=T0, **scope):
    return verify(result["method"], result["path"], result["query"], [tuple(h) for h in result["headers"]],
                  result["body"].encode(), lookup, now, **scope)


@pytest.mark.parametrize("name", [n for n in SPECS if n != "real-clock"])
def test_js_signed_requests_verify(signed, name):
    s = SPECS[name]
    result = check(signed[name], now=T0 + dt.timedelta(seconds=5), service=s["service"], region=s["region"])
    assert (result.access_key_id, result.signed_at) == (KEY_ID, T0)
    assert result.session_token == s["credentials"].get("sessionToken")
    assert result.presigned == bool(s.get("presign"))
    assert "host" in result.signed_headers


def test_js_signs_the_payload_hash_header_too(signed):
    assert "x-amz-content-sha256" in check(signed["post-session-token"]).signed_headers


def test_js_signing_with_the_real_clock_verifies_at_real_now(signed):
    assert check(signed["real-clock"], now=dt.datetime.now(dt.timezone.utc)).access_key_id == KEY_ID


def test_js_presigned_url_expires(signed):
    with pytest.raises(SignatureDoesNotMatch, match="^Request has expired"):
        check(signed["presigned-get"], now=T0 + dt.timedelta(seconds=901))
    check(signed["presigned-post-long-expiry"], now=T0 + dt.timedelta(days=7))


def _with_header(result, name, value):
    return {**result, "headers": [[n, value if n == name else v] for n, v in result["headers"]]}


@pytest.mark.parametrize(("name", "tamper"), [
    ("post-sts-form", lambda r: _with_header(r, "content-type", FORM + "; charset=utf-8")),
    ("post-session-token", lambda r: _with_header(r, "x-amz-security-token", TOKEN + "x")),
    ("get-query-special-characters", lambda r: {**r, "query": r["query"].replace("repeated=a", "repeated=c")}),
    ("encoded-unicode-path", lambda r: {**r, "path": "/caf%C3%A9/%E2%9C%93/a%2520b"}),
    ("presigned-get", lambda r: {**r, "query": r["query"].replace("X-Amz-Expires=900", "X-Amz-Expires=90")}),
    ("presigned-get", lambda r: {**r, "method": "POST"}),
])
def test_tampered_js_requests_are_refused(signed, name, tamper):
    with pytest.raises(SignatureDoesNotMatch):
        check(tamper(signed[name]))


def test_js_body_changed_after_signing_fails_the_payload_hash(signed):
    result = {**signed["post-sts-form"], "body": signed["post-sts-form"]["body"] + "&DurationSeconds=43200"}
    with pytest.raises(SignatureDoesNotMatch, match="'x-amz-content-sha256' header does not match"):
        check(result)

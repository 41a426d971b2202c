"""Authorization vs authentication: one policy evaluation against one SigV4 verification.

    .venv/bin/python bench/policy_eval.py [--rounds 7] [--seconds 0.5]

The principal has 10 identity policies of 10 statements each, written the way real
ones are: actions with wildcards, resources with ``${aws:username}`` and other
variables, conditions on tags, source IP, MFA and time, a few Denies. They are parsed
once (``parse_policy``); each request then pays what the backend pays per request:
``build_request_context`` + ``evaluate``. Two requests, the worst cases: one allowed
only by the last statement of the last policy ("late"), one that nothing allows
("none"), so every statement is tried.

The yardstick, measured in the same run: ``wire.sigv4.verify`` of a realistic STS
request, an AssumeRole form POST with a session token, signed by botocore (its clock
pinned, as the interop tests do). Rounds alternate evaluate-late, evaluate-none,
verify, each timing as many calls as fit in ``--seconds``; the figures are the medians
of the per-call times and the ratio evaluate / verify. The goal is <= 1x: authorization
never costs more than authentication. Pure CPU, one process, no sockets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import botocore.auth  # noqa: E402
import botocore.credentials  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402

from sts_backend.policy import build_request_context, evaluate  # noqa: E402
from sts_backend.policy_document import parse_policy  # noqa: E402
from wire.sigv4 import verify  # noqa: E402

BENCHMARK = "policy evaluation (10 policies x 10 statements, worst case) vs one SigV4 verify"

ACCOUNT = "123456789012"
USER = f"arn:aws:iam::{ACCOUNT}:user/alice"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/deploy/app"
OTHER = "210987654321"
T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
KEY_ID, SECRET = "ASIAROLECALLBENCH001", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzEBYaD" + "x" * 580      # a session token of a realistic size


def _statement(p: int, s: int) -> dict:
    """Statement s of policy p: ten shapes, none of which matches sts:AssumeRole on ROLE."""
    shapes = [
        {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"],
         "Resource": [f"arn:aws:s3:::team-{p}-data", f"arn:aws:s3:::team-{p}-data/home/${{aws:username}}/*"]},
        {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": ["eu-west-1", "eu-central-1"]}}},
        {"Effect": "Allow", "Action": ["iam:*AccessKey*", "iam:GetUser", "iam:ChangePassword"],
         "Resource": f"arn:aws:iam::{ACCOUNT}:user/${{aws:username}}"},
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"],
         "Resource": f"arn:aws:dynamodb:*:{ACCOUNT}:table/orders-{p}*",
         "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["${aws:userid}"]}}},
        {"Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:db8::/32", "198.51.100.0/24"]}}},
        {"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"],
         "Resource": f"arn:aws:sqs:eu-west-1:{ACCOUNT}:jobs-{p}-*",
         "Condition": {"StringEquals": {"aws:PrincipalTag/team": f"team-{p}"}}},
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{OTHER}:role/audit-{p}",
         "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}},
        {"Effect": "Deny", "Action": ["iam:Delete*", "iam:Put*Policy", "organizations:*"], "Resource": "*",
         "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}},
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:aws:logs:*:{ACCOUNT}:log-group:/app/{p}/*",
         "Condition": {"DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}}},
        {"Effect": "Allow", "NotAction": ["iam:*", "sts:*", "organizations:*"],
         "Resource": f"arn:aws:s3:::sandbox-{p}/*"},
    ]
    return {"Sid": f"P{p}S{s}", **shapes[s]}



def policies() -> list:
    docs = []
    for p in range(10):
        statements = [_statement(p, s) for s in range(10)]
        if p == 9:   # the only grant: the last statement of the last policy, behind a condition
            statements[9] = {"Sid": "AssumeDeploy", "Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
                             "Resource": f"arn:aws:iam::{ACCOUNT}:role/deploy/*",
                             "Condition": {"StringLike": {"aws:PrincipalTag/team": "team-*"}}}
        docs.append(parse_policy(json.dumps({"Version": "2012-10-17", "Statement": statements})))
    return docs


def request_keys(team: str) -> dict:
    return dict(user_id="AIDAEXAMPLEUSERID0001", now=T0, mfa_present=None, requested_region="eu-west-1",
                principal_tags={"team": team, "cost-center": "1234"},
                extra={"aws:SourceIp": "203.0.113.7", "aws:SecureTransport": "true"})


def botocore_request() -> dict:
    """An AssumeRole POST as wire.sigv4.verify receives it, signed by botocore at T0
    (botocore reads its own clock; this process pins it, as the interop tests do)."""
    botocore.auth.get_current_datetime = lambda remove_tzinfo=True: T0.replace(tzinfo=None)
    url = "http://127.0.0.1:8900/"
    request = AWSRequest(method="POST", url=url, headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, data={
        "Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": ROLE, "RoleSessionName": "deploy-1",
        "DurationSeconds": "3600", "Tags.member.1.Key": "team", "Tags.member.1.Value": "team-3"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(KEY_ID, SECRET, TOKEN), "sts", "us-east-1").add_auth(request)
    prepared = request.prepare()
    headers = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in prepared.headers.items()]
    headers.append(("Host", urlsplit(url).netloc))
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    return {"method": "POST", "path": "/", "query": "", "headers": headers, "body": body}


def per_call(fn, seconds: float) -> float:
    """Seconds per call of ``fn``, timed over batches until ``seconds`` have passed."""
    calls, started = 0, time.perf_counter()
    batch = 50
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return elapsed / calls


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    args = parser.parse_args(argv)

    identity = policies()
    late = dict(action="sts:AssumeRole", resource=ROLE, principal_arn=USER, **request_keys("team-3"))
    none = dict(action="sts:AssumeRole", resource=ROLE, principal_arn=USER, **request_keys("ops"))
    assert evaluate(build_request_context(**late), identity).sid == "AssumeDeploy"
    assert evaluate(build_request_context(**none), identity).reason == "no allow"
    signed = botocore_request()
    lookup = {KEY_ID: SECRET}.get
    now = T0 + dt.timedelta(seconds=2)
    assert verify(**signed, lookup_secret=lambda k, t: lookup(k), now=now, service="sts").access_key_id == KEY_ID

    jobs = {
        "evaluate (late allow)": lambda: evaluate(build_request_context(**late), identity),
        "evaluate (no allow)": lambda: evaluate(build_request_context(**none), identity),
        "sigv4 verify": lambda: verify(**signed, lookup_secret=lambda k, t: lookup(k), now=now, service="sts"),
    }
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for r in range(args.rounds):
        for name, fn in jobs.items():
            samples[name].append(per_call(fn, args.seconds))
        print(f"round {r + 1}: " + ", ".join(f"{n} {samples[n][-1] * 1e6:.1f} us" for n in jobs), flush=True)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print()
    for name, value in medians.items():
        print(f"{name:24} median {value * 1e6:8.1f} us/call")
    for name in ("evaluate (late allow)", "evaluate (no allow)"):
        ratio = medians[name] / medians["sigv4 verify"]
        print(f"ratio {name} / verify: {ratio:.2f}x  (goal <= 1x: {'met' if ratio <= 1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Properties of the policy engine that hold for every policy set, checked with hypothesis.

[IUG:reference_policies_evaluation-logic]: an explicit Deny only ever takes away; session
policies and permissions boundaries only ever limit [IUG:access_policies §Session policies;
IUG:access_policies_boundaries]; and nothing in the logic depends on the order in which
statements or policies are written. The strategies draw from small pools of actions,
resources, principals and conditions so that statements often match the request, which
is where the properties can fail. Derandomized, so CI sees the same examples every run.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sts_backend.policy import build_request_context, evaluate
from sts_backend.policy_document import PolicyKind, parse_policy

ACCT = "111122223333"
ALICE = f"arn:aws:iam::{ACCT}:user/alice"
BOB = f"arn:aws:iam::{ACCT}:user/bob"
ROLE = f"arn:aws:iam::{ACCT}:role/app"
SESSION = f"arn:aws:sts::{ACCT}:assumed-role/app/s1"
OTHER_QUEUE = "arn:aws:sqs:us-east-1:444455556666:q"

ACTIONS = ["s3:GetObject", "s3:PutObject", "sqs:SendMessage", "iam:GetUser"]
ACTION_PATTERNS = ACTIONS + ["s3:*", "s3:Get*", "*", "iam:*", "S3:getobject", "sqs:?endMessage"]
RESOURCES = ["arn:aws:s3:::b/k", "arn:aws:s3:::b/alice/k", "arn:aws:s3:::c/k", OTHER_QUEUE, ALICE]
RESOURCE_PATTERNS = RESOURCES + ["*", "arn:aws:s3:::b/*", "arn:aws:s3:::b/${aws:username}/*",
                                 "arn:aws:sqs:*:*:q", "arn:aws:iam::*:user/*"]
CONDITIONS = [
    {"StringEquals": {"aws:PrincipalTag/team": "blue"}},
    {"StringNotEquals": {"aws:PrincipalTag/team": ["red", "blue"]}},
    {"StringLikeIfExists": {"aws:PrincipalTag/team": "b*"}},
    {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
    {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
    {"Null": {"aws:TokenIssueTime": "true"}},
    {"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}},
    {"ForAnyValue:StringLike": {"aws:TagKeys": "a*"}},
    {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
    {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}},
    {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:*"}},
]
PRINCIPALS = ["*", {"AWS": ALICE}, {"AWS": ACCT}, {"AWS": ROLE}, {"AWS": SESSION}, {"AWS": [BOB, ACCT]}]


@st.composite
def statements(draw, effect=None, resource_policy=False):
    # Biased towards statements that apply ("*" half the time, Allow four times in
    # five, a condition one time in four): a property is only tested when something
    # is allowed (GRANTS below help).
    st_: dict = {"Effect": effect or draw(st.sampled_from(["Allow", "Allow", "Allow", "Allow", "Deny"]))}
    actions = draw(st.lists(st.just("*") | st.sampled_from(ACTION_PATTERNS), min_size=1, max_size=2))
    st_["NotAction" if draw(st.integers(0, 7)) == 0 else "Action"] = actions
    resources = draw(st.lists(st.just("*") | st.sampled_from(RESOURCE_PATTERNS), min_size=1, max_size=2))
    st_["NotResource" if draw(st.integers(0, 7)) == 0 else "Resource"] = resources
    if draw(st.integers(0, 3)) == 0:
        st_["Condition"] = draw(st.sampled_from(CONDITIONS))
    if resource_policy:
        st_["NotPrincipal" if draw(st.integers(0, 5)) == 0 else "Principal"] = draw(st.sampled_from(PRINCIPALS))
    return st_


def documents(effect=None, resource_policy=False, max_size=3):
    def render(items):
        body = [dict(s, Sid=f"S{i}") if i % 2 else s for i, s in enumerate(items)]
        return {"Version": "2012-10-17", "Statement": body}
    return st.lists(statements(effect, resource_policy), min_size=1, max_size=max_size).map(render)


@st.composite
def requests(draw):
    principal = draw(st.sampled_from([ALICE, BOB, SESSION]))
    keys: dict = {}
    if draw(st.booleans()):
        keys["aws:PrincipalTag/team"] = draw(st.sampled_from(["blue", "red"]))
    if draw(st.booleans()):
        keys["aws:TagKeys"] = draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3))
    if draw(st.booleans()):
        keys["aws:SourceIp"] = draw(st.sampled_from(["203.0.113.9", "198.51.100.1"]))
    temporary = principal == SESSION or draw(st.booleans())
    return dict(action=draw(st.sampled_from(ACTIONS)), resource=draw(st.sampled_from(RESOURCES)),
                principal_arn=principal, role_arn=ROLE if principal == SESSION else None,
                mfa_present=draw(st.booleans()) if temporary else None,
                mfa_age_seconds=draw(st.sampled_from([60, 7200])), extra=keys)


def _parse(doc, kind=PolicyKind.IDENTITY):
    return parse_policy(json.dumps(doc), kind)


def _evaluate(request, identity, session=(), boundary=None, resource=None):
    return evaluate(build_request_context(**request), [_parse(d) for d in identity],
                    session_policies=[_parse(d) for d in session],
                    permissions_boundary=_parse(boundary) if boundary else None,
                    resource_policy=_parse(resource, PolicyKind.RESOURCE) if resource else None)


PROPERTY = settings(max_examples=120, derandomize=True, deadline=None)
# Plain grants mixed in, so that requests are often allowed before the change under test.
GRANTS = st.sampled_from([
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    {"Version": "2012-10-17", "Statement": [{"Sid": "S3", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}]},
])
policies = GRANTS | documents()
identities = st.lists(policies, min_size=1, max_size=2)
optional_resource = st.none() | documents(resource_policy=True)
optional_boundary = st.none() | policies
sessions = st.lists(policies, max_size=2)


@PROPERTY
@given(requests(), identities, sessions, optional_boundary, optional_resource,
       st.sampled_from(["identity", "session", "boundary", "resource"]), st.data())
def test_adding_a_deny_never_grants(request, identity, session, boundary, resource, layer, data):
    before = _evaluate(request, identity, session, boundary, resource)
    deny = data.draw(documents("Deny", resource_policy=layer == "resource", max_size=2))
    deny["Statement"] = [dict(s, Sid="X" + s["Sid"]) if "Sid" in s else s for s in deny["Statement"]]
    if layer == "identity":
        identity = identity + [deny]
    elif layer == "session":
        session = session + [deny]
    elif layer == "boundary":
        boundary = {"Version": "2012-10-17",
                    "Statement": (boundary or {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
                    ["Statement"] + deny["Statement"]}
    else:
        resource = {"Version": "2012-10-17", "Statement": (resource or {"Statement": []})["Statement"] + deny["Statement"]}
    after = _evaluate(request, identity, session, boundary, resource)
    assert not after.allowed or before.allowed


@PROPERTY
@given(requests(), identities, st.lists(policies, min_size=1, max_size=2), optional_boundary, optional_resource)
def test_a_session_policy_never_widens(request, identity, session, boundary, resource):
    if _evaluate(request, identity, session, boundary, resource).allowed:
        assert _evaluate(request, identity, (), boundary, resource).allowed


@PROPERTY
@given(requests(), identities, sessions, policies, optional_resource)
def test_a_permissions_boundary_never_widens(request, identity, session, boundary, resource):
    if _evaluate(request, identity, session, boundary, resource).allowed:
        assert _evaluate(request, identity, session, None, resource).allowed


def _decision(d):
    return d.allowed, d.reason, d.source


@PROPERTY
@given(requests(), identities, sessions, optional_boundary, optional_resource, st.randoms(use_true_random=False))
def test_evaluation_is_independent_of_statement_and_policy_order(request, identity, session, boundary, resource, rnd):
    def shuffled(doc):
        if doc is None:
            return None
        body = list(doc["Statement"])
        rnd.shuffle(body)
        return dict(doc, Statement=body)
    before = _evaluate(request, identity, session, boundary, resource)
    identity2 = [shuffled(d) for d in identity]
    session2 = [shuffled(d) for d in session]
    rnd.shuffle(identity2)
    rnd.shuffle(session2)
    after = _evaluate(request, identity2, session2, shuffled(boundary), shuffled(resource))
    assert _decision(after) == _decision(before)

"""The conformance table (tests/policy_cases.py) run through the product's own path.

Each case's documents go through ``parse_policy`` (identity and session policies and
the boundary as IDENTITY, the resource policy as RESOURCE, the trust policy as TRUST),
its request through ``build_request_context``, and then ``evaluate`` or
``evaluate_trust``; the decision, the deciding Sid and the layer must be the table's.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from sts_backend.policy import build_request_context, evaluate, evaluate_trust
from sts_backend.policy_document import PolicyKind, parse_policy
from tests.policy_cases import ALL, PAGES, Case

_CITE = re.compile(r"\[IUG:([a-z_-]+) §([^\]]+)\]")


def _parse(doc: dict, kind: PolicyKind = PolicyKind.IDENTITY):
    return parse_policy(json.dumps(doc), kind)


def _decide(case: Case):
    request = build_request_context(**case.request)
    if case.trust is not None:
        return evaluate_trust(request, _parse(case.trust, PolicyKind.TRUST))
    return evaluate(
        request, [_parse(d) for d in case.identity],
        session_policies=[_parse(d) for d in case.session],
        resource_policy=_parse(case.resource, PolicyKind.RESOURCE) if case.resource is not None else None,
        permissions_boundary=_parse(case.boundary) if case.boundary is not None else None,
    )


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_conformance(case: Case):
    decision = _decide(case)
    assert (decision.reason, decision.sid, decision.source) == case.expect, case.cite
    assert decision.allowed is (case.expect[0] == "allowed")
    if case.trust is not None and decision.allowed:
        assert decision.needs_identity_allow is case.needs_identity_allow, case.cite


def test_table_is_well_formed():
    assert len(ALL) >= 200
    duplicates = [name for name, n in Counter(c.id for c in ALL).items() if n > 1]
    assert not duplicates
    for case in ALL:
        match = _CITE.fullmatch(case.cite)
        assert match and match.group(1) in PAGES, case.id
        assert (case.trust is None) or not (case.identity or case.session or case.boundary or case.resource), case.id
    # every outcome and every layer is exercised, not only "allowed by identity"
    outcomes = Counter((c.expect[0], c.expect[2]) for c in ALL)
    for needed in [("allowed", "identity"), ("allowed", "resource"), ("allowed", "trust"),
                   ("explicit deny", "identity"), ("explicit deny", "session"), ("explicit deny", "boundary"),
                   ("explicit deny", "resource"), ("explicit deny", "trust"), ("no allow", "identity"),
                   ("no allow", "session"), ("no allow", "boundary"), ("no allow", "resource"),
                   ("no allow", "trust")]:
        assert outcomes[needed], needed

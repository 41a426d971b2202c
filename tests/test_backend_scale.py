"""bench/backend_scale.py's seeding, and the query plan that keeps AssumeRole flat with fleet size.

The seeding helper writes users, keys, memberships and policy rows in bulk; these tests
read a small seeded store back through the ``Store`` API and the backend app (no sockets:
``Backend.handle_httpx`` behind ``httpx.MockTransport``, as tests/test_sts_ops.py does), so
the benchmark measures identities the backend really serves. The plan test runs
``EXPLAIN QUERY PLAN`` on the SQL that ``Store.identity_policies`` executes.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
from pathlib import Path

import httpx
import pytest

from sts_backend.app import Backend
from sts_backend.audit import AuditLog
from sts_backend.policy_document import parse_policy, policy_size
from sts_backend.store import Store
from tests.clocks import FixedClock
from wire.query import encode_form, parse_error, parse_response
from wire.sigv4 import Credentials, SigV4Auth

ROOT = Path(__file__).resolve().parents[1]


def _bench_module():
    spec = importlib.util.spec_from_file_location("backend_scale", ROOT / "bench" / "backend_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


scale = _bench_module()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """25 users in batches of 10, in groups of 10 (3 groups): (data dir, keys)."""
    data_dir = tmp_path_factory.mktemp("scale") / "data"
    return data_dir, scale.seed(data_dir, 25, batch=10, group_size=10)


def test_every_seeded_user_has_a_key_and_ten_valid_policies(seeded):
    data_dir, keys = seeded
    with Store.open(data_dir) as store:
        users = store.list_users("/fleet/")
        assert [u.user_name for u in users] == [f"agent-{n:06d}" for n in range(25)]
        assert len({u.user_id for u in users}) == 25
        for n, (user, (key_id, secret)) in enumerate(zip(users, keys)):
            key = store.access_key(key_id)
            assert (key.user_name, key.status, key.secret_access_key) == (user.user_name, "Active", secret)
            assert user.arn == f"arn:aws:iam::{scale.ACCOUNT}:user/fleet/{user.user_name}"
            assert len(store.inline_policy_names("user", user.user_name)) == 4
            assert len(store.attached_policies("user", user.user_name)) == 4
            assert [g.group_name for g in store.groups_of_user(user.user_name)] == [f"fleet-{n // 10:03d}"]
            documents = store.identity_policies("user", user.user_name)
            assert len(documents) == 10
            for document in documents:
                parse_policy(document)
        inline = sum(policy_size(doc) for doc in scale.inline_documents())
        assert inline <= store.quota("UserPolicySize")
        assert store.quota("UsersPerAccount") >= 25


def _assume(backend: Backend, clock: FixedClock, key: tuple[str, str], role_arn: str) -> httpx.Response:
    auth = SigV4Auth(Credentials(*key), "us-east-1", "sts", clock)
    form = {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role_arn, "RoleSessionName": "scale"}
    with httpx.Client(transport=httpx.MockTransport(backend.handle_httpx), auth=auth) as http:
        return http.post("http://127.0.0.1:8900/", content=encode_form(form),
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})


def test_a_seeded_identity_may_assume_the_bench_role_and_no_other(seeded, tmp_path):
    data_dir, keys = seeded
    clock = FixedClock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    store = Store.open(data_dir, clock)
    audit = AuditLog(os.path.join(tmp_path, "audit.log"))
    try:
        other = store.create_role("other", scale.TRUST).arn
        backend = Backend(store, clock, audit)
        answer = _assume(backend, clock, keys[17], scale.ROLE_ARN)
        assert answer.status_code == 200, answer.content
        assumed = parse_response(answer.content, "AssumeRole")["AssumedRoleUser"]["Arn"]
        assert assumed == f"arn:aws:sts::{scale.ACCOUNT}:assumed-role/bench/scale"
        refused = _assume(backend, clock, keys[17], other)
        assert refused.status_code == 403
        assert parse_error(refused.content)[0] == "AccessDenied"
    finally:
        audit.close()
        store.close()


def test_a_users_policies_are_found_from_its_own_rows(seeded):
    """Every step of the user-policy query is an index search keyed by the user or its groups.

    Without statistics SQLite once planned the group part from all groups' policy rows
    (``inline_policies (kind=?)``) inward: a scan of every group policy on every request.
    """
    data_dir, _ = seeded
    executed: list[str] = []
    with Store.open(data_dir) as store:
        with store.transaction() as conn:   # the store's own connection, to watch its statements
            conn.set_trace_callback(executed.append)
        assert len(store.identity_policies("user", "agent-000003")) == 10
        conn.set_trace_callback(None)
        plan = [row[3] for sql in executed if "inline_policies" in sql
                for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    assert plan, executed
    for step in plan:
        assert not step.startswith("SCAN"), plan
        if "inline_policies" in step or " a USING" in step:
            assert "owner_id=?" in step, plan
        if "group_members" in step:
            assert "group_members_by_user (user_id=?)" in step, plan
    assert sum("group_members_by_user" in step for step in plan) == 2, plan


def test_the_store_reads_its_pages_through_a_memory_map(seeded):
    """Page reads by mmap, not read() into a 2 MB cache: at 100,000 users that copying cost
    ~15% of an AssumeRole (bench/backend_scale.py)."""
    data_dir, _ = seeded
    with Store.open(data_dir) as store:
        with store.transaction() as conn:
            assert conn.execute("PRAGMA mmap_size").fetchone()[0] >= 256 << 20


def test_distinct_policies_give_each_user_texts_of_its_own(tmp_path):
    scale.seed(tmp_path / "data", 3, distinct=True)
    with Store.open(tmp_path / "data") as store:
        texts = [store.get_inline_policy("user", f"agent-{n:06d}", "fleet-inline-1")[1] for n in range(3)]
        assert len(set(texts)) == 3 and "${aws:username}" not in texts[0]
        assert "fleet-home/agent-000002/*" in texts[2]
        assert sum(policy_size(doc) for doc in scale.inline_documents("agent-000002")) <= store.quota("UserPolicySize")
        for n in range(3):
            for document in store.identity_policies("user", f"agent-{n:06d}"):
                parse_policy(document)

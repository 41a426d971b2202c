"""The store contract: what every engine behind ``sts_backend.store_api`` must do.

Each test runs against every engine in ``ENGINES`` (SQLite, and PostgreSQL on a
throwaway cluster: ``tests.pg_support``, skipped with the reason where none can
start) through the ``Store`` methods the backend calls. ``tests/test_store.py`` keeps
the SQLite engine's own concerns (files, modes, pragmas, migrations, durability),
``tests/test_store_postgres.py`` PostgreSQL's.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import inspect
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from sts_backend import store_api
from sts_backend.errors import DeleteConflict, EntityAlreadyExists, LimitExceeded, NoSuchEntity
from sts_backend.records import Session
from sts_backend.store import SQL_REPOSITORIES, Store, StoreError
from tests.clocks import FixedClock

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
ACCOUNT = "123456789012"
TRUST = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}'
ALLOW_S3 = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
ALLOW_SQS = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:*","Resource":"*"}]}'
PACKAGE = Path(__file__).resolve().parents[1] / "sts_backend"


@dataclasses.dataclass
class Engine:
    """How to make a fresh database and open a second store object on it."""

    name: str
    create: Callable[[object, FixedClock], Store]
    open: Callable[[object, FixedClock], Store]


ENGINES = [
    Engine("sqlite", lambda where, clock: Store.create(where, ACCOUNT, clock),
           lambda where, clock: Store.open(where, clock)),
    Engine("postgresql", lambda where, clock: Store.create_database(where, ACCOUNT, clock),
           lambda where, clock: Store.open_database(where, clock)),
]


@pytest.fixture(params=ENGINES, ids=lambda e: e.name)
def engine(request):
    return request.param


@pytest.fixture
def clock():
    return FixedClock(T0)


@pytest.fixture
def where(engine, tmp_path, request):
    """The engine's database: a data dir, or a fresh PostgreSQL database's URL."""
    return tmp_path / "data" if engine.name == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture
def store(engine, where, clock):
    s = engine.create(where, clock)
    yield s
    s.close()


@pytest.fixture
def other(engine, where, clock, store):
    """A second store object on the same database (another replica or process)."""
    s = engine.open(where, clock)
    yield s
    s.close()


def session_of(store, *, role=None, key="", user=None, mfa_serial=None, issued=T0) -> Session:
    r = store.role(role) if role else None
    return Session(kind="AssumeRole" if role else "GetSessionToken", access_key_id="ASIA" + "A" * 16,
                   secret_access_key="s" * 40, account_id=ACCOUNT, principal_arn="arn:x", user_id="x",
                   source_user_name=user, source_access_key_id=key, role_name=role,
                   role_id=r.role_id if r else None, session_name="s" if role else None, source_identity=None,
                   mfa_authenticated=mfa_serial is not None, mfa_auth_time=None, issued_at=issued,
                   expires_at=issued + dt.timedelta(hours=1), chained=False, mfa_serial=mfa_serial)


# ---- the interface itself ------------------------------------------------------------------

@pytest.mark.parametrize("attr,protocol", store_api.REPOSITORIES, ids=[a for a, _ in store_api.REPOSITORIES])
def test_each_repository_implements_its_protocol_exactly(attr, protocol):
    impl = SQL_REPOSITORIES[attr]
    for name in store_api.members(protocol):
        mine, declared = inspect.signature(getattr(impl, name)), inspect.signature(getattr(protocol, name))
        assert list(mine.parameters) == list(declared.parameters), name
        assert [p.default for p in mine.parameters.values()] == [p.default for p in declared.parameters.values()]


def test_the_facade_answers_every_protocol_method_by_its_repository(store):
    names = [n for _, p in store_api.REPOSITORIES for n in store_api.members(p)]
    assert len(names) == len(set(names)), "a method name belongs to two repositories"
    for attr, protocol in store_api.REPOSITORIES:
        for name in store_api.members(protocol):
            assert getattr(Store, name).__wrapped__ is getattr(SQL_REPOSITORIES[attr], name)
            assert getattr(store, name).__self__ is getattr(store, attr)
    assert store.account_id() == store.account.account_id() == ACCOUNT


def test_store_modules_import_no_private_names_from_each_other():
    for path in PACKAGE.glob("store*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sts_backend"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_sql_stays_in_the_engine():
    for name in ("store_api.py", "store_core.py"):
        text = (PACKAGE / name).read_text()
        assert "import sqlite3" not in text and "SELECT " not in text and "INSERT " not in text, name


# ---- users, keys, groups, roles, tags ------------------------------------------------------

def test_users(store, other):
    alice = store.create_user("Alice", path="/team/")
    assert alice.arn == f"arn:aws:iam::{ACCOUNT}:user/team/Alice" and alice.user_id.startswith("AIDA")
    assert other.get_user("alice") == alice and other.user("ALICE") == alice
    with pytest.raises(EntityAlreadyExists):
        other.create_user("ALICE")
    store.create_user("bob")
    assert [u.user_name for u in store.list_users()] == ["Alice", "bob"]
    assert [u.user_name for u in store.list_users("/team/")] == ["Alice"]
    store.delete_user("bob")
    assert other.user("bob") is None
    with pytest.raises(NoSuchEntity):
        store.get_user("bob")


def test_access_keys(store, other, clock):
    store.create_user("alice")
    epoch = store.revocation_epoch()
    k1, k2 = store.create_access_key("alice"), store.create_access_key("alice")
    assert k1.access_key_id.startswith("AKIA") and k1.status == "Active" and k1.user_name == "alice"
    with pytest.raises(LimitExceeded):
        store.create_access_key("alice")
    assert [k.access_key_id for k in other.access_keys_of("ALICE")] == [k1.access_key_id, k2.access_key_id]
    assert other.access_key(k1.access_key_id).secret_access_key == k1.secret_access_key
    with pytest.raises(DeleteConflict):
        store.delete_user("alice")
    store.update_access_key("alice", k1.access_key_id, "Inactive")
    assert other.access_key(k1.access_key_id).status == "Inactive"
    assert other.revocation_epoch() == epoch + 1
    store.update_access_key("alice", k1.access_key_id, "Inactive")      # no change: no bump
    assert store.revocation_epoch() == epoch + 1
    store.delete_access_key("alice", k1.access_key_id)
    assert other.access_key(k1.access_key_id) is None and store.revocation_epoch() == epoch + 2
    with pytest.raises(NoSuchEntity):
        store.delete_access_key("alice", k1.access_key_id)


def test_key_use_is_buffered_then_visible_to_others(store, other):
    store.create_user("alice")
    key = store.create_access_key("alice")
    store.record_key_use(key.access_key_id, "sts", "us-east-1", T0)
    store.record_key_use(key.access_key_id, "iam", "us-east-1", T0 - dt.timedelta(minutes=1))  # older: ignored
    assert other.key_last_used(key.access_key_id).last_used is None    # still in store's buffer
    used = store.key_last_used(key.access_key_id)                      # flushes
    assert (used.last_used, used.service, used.region) == (T0, "sts", "us-east-1")
    assert other.key_last_used(key.access_key_id).last_used == T0


def test_groups(store):
    store.create_user("alice")
    store.create_group("Devs")
    with pytest.raises(EntityAlreadyExists):
        store.create_group("devs")
    store.add_user_to_group("devs", "alice")
    store.add_user_to_group("Devs", "alice")                           # idempotent
    assert [g.group_name for g in store.groups_of_user("alice")] == ["Devs"]
    assert [u.user_name for u in store.members_of_group("devs")] == ["alice"]
    with pytest.raises(DeleteConflict):
        store.delete_group("Devs")
    store.remove_user_from_group("Devs", "alice")
    with pytest.raises(NoSuchEntity):
        store.remove_user_from_group("Devs", "alice")
    store.delete_group("Devs")
    assert store.list_groups() == []


def test_roles_and_trust_as_shown(store, other):
    user = store.create_user("alice")
    trust = TRUST.replace('"*"', f'"{user.arn}"')
    role = store.create_role("App", trust, max_session_duration=7200, description="d",
                             principal_ids=store.principal_ids([user.arn]))
    assert other.role("app") == role and role.role_id.startswith("AROA")
    assert store.update_role("app", description="e").description == "e"
    assert other.get_role("App").assume_role_policy == trust
    store.delete_user("alice")
    store.create_user("alice")                                           # same name, another principal
    assert user.user_id in other.get_role("App").assume_role_policy      # shown as the old unique id
    store.delete_role("App")
    assert other.role("App") is None


def test_tags(store):
    user = store.create_user("alice", tags=[("Team", "a"), ("env", "prod")])
    store.tag("user", "alice", [("team", "b")])                          # keys case-insensitive
    assert store.tags_of("user", "ALICE") == [("team", "b"), ("env", "prod")]
    assert store.tags_of_id("user", user.user_id) == [("team", "b"), ("env", "prod")]
    store.untag("user", "alice", ["ENV", "absent"])
    assert store.tags_of("user", "alice") == [("team", "b")]
    with pytest.raises(LimitExceeded):
        store.tag("user", "alice", [(f"k{i}", "v") for i in range(50)])
    assert store.tags_of("user", "alice") == [("team", "b")]            # the refused change is rolled back


# ---- policies ------------------------------------------------------------------------------

def test_inline_policies(store):
    store.create_user("alice")
    store.put_inline_policy("user", "alice", "p", ALLOW_S3, 1000)
    assert store.get_inline_policy("user", "ALICE", "p") == ("alice", ALLOW_S3)
    with pytest.raises(LimitExceeded):
        store.put_inline_policy("user", "alice", "q", ALLOW_S3, 1049)   # 2,048 in all per user
    store.put_inline_policy("user", "alice", "p", ALLOW_SQS, 2048)      # replacing p: only its new size counts
    assert store.inline_policy_names("user", "alice") == ["p"]
    store.delete_inline_policy("user", "alice", "p")
    with pytest.raises(NoSuchEntity):
        store.get_inline_policy("user", "alice", "p")


def test_managed_policies_and_versions(store, other):
    policy = store.create_policy("S3", ALLOW_S3, path="/p/")
    arn = policy.arn
    assert arn == f"arn:aws:iam::{ACCOUNT}:policy/p/S3" and policy.default_version_id == "v1"
    with pytest.raises(EntityAlreadyExists):
        store.create_policy("S3", ALLOW_S3)
    for n in range(2, 6):
        assert store.create_policy_version(arn, ALLOW_SQS).version_id == f"v{n}"
    with pytest.raises(LimitExceeded):
        store.create_policy_version(arn, ALLOW_SQS)
    store.set_default_policy_version(arn, "v3")
    assert other.get_policy(arn).default_version_id == "v3"
    assert [v.version_id for v in other.policy_versions(arn)] == ["v5", "v4", "v3", "v2", "v1"]
    with pytest.raises(DeleteConflict):
        store.delete_policy_version(arn, "v3")
    store.delete_policy_version(arn, "v5")
    assert store.create_policy_version(arn, ALLOW_S3, set_as_default=True).version_id == "v6"  # never reused
    assert store.get_policy_version(arn, "v6").is_default
    with pytest.raises(NoSuchEntity):
        store.get_policy_version(arn, "v5")
    with pytest.raises(DeleteConflict):
        store.delete_policy(arn)                                          # has versions


def test_attachments_and_identity_policies(store):
    store.create_user("alice")
    store.create_group("devs")
    store.add_user_to_group("devs", "alice")
    store.create_role("app", TRUST)
    s3 = store.create_policy("S3", ALLOW_S3).arn
    sqs = store.create_policy("SQS", ALLOW_SQS).arn
    store.attach_policy("user", "alice", s3)
    store.attach_policy("user", "alice", s3)                              # idempotent
    store.attach_policy("group", "devs", sqs)
    store.put_inline_policy("role", "app", "inline", ALLOW_SQS, 10)
    assert sorted(store.identity_policies("user", "alice")) == sorted([ALLOW_S3, ALLOW_SQS])
    assert store.identity_policies("role", "app") == [ALLOW_SQS]
    assert store.identity_policies("role", "gone") == []
    assert [a.policy_name for a in store.attached_policies("user", "alice")] == ["S3"]
    assert store.get_policy(s3).attachment_count == 1
    sources, boundary = store.policy_sources("user", "alice")
    assert [(s.name, s.kind) for s in sources] == [("S3", "user-managed"), ("SQS", "user-managed")]
    assert boundary is None
    with pytest.raises(DeleteConflict):
        store.delete_policy(s3)
    store.detach_policy("user", "alice", s3)
    with pytest.raises(NoSuchEntity):
        store.detach_policy("user", "alice", s3)
    store.delete_policy(s3)
    with pytest.raises(NoSuchEntity):
        store.attach_policy("user", "alice", s3)


def test_permissions_boundaries(store):
    store.create_role("app", TRUST)
    arn = store.create_policy("Bound", ALLOW_S3).arn
    assert store.boundary_document("role", "app") == (None, None)
    store.set_permissions_boundary("role", "app", arn)
    assert store.permissions_boundary("role", "APP") == arn
    assert store.boundary_document("role", "app") == (arn, ALLOW_S3)
    assert store.get_policy(arn).permissions_boundary_usage_count == 1
    assert store.policy_sources("role", "app")[1].kind == "permission-boundary"
    with pytest.raises(DeleteConflict):
        store.delete_policy(arn)
    store.delete_permissions_boundary("role", "app")
    assert store.permissions_boundary("role", "app") is None


# ---- MFA -----------------------------------------------------------------------------------

@pytest.fixture
def device(store):
    store.create_user("alice")
    d = store.create_virtual_mfa_device("phone", "JBSWY3DPEHPK3PXP")
    store.enable_mfa_device(d.serial_number, "alice", 100)
    return d.serial_number


def test_mfa_devices(store, device):
    assert store.mfa_device(device).user_name == "alice" and store.mfa_device("arn:nope") is None
    with pytest.raises(EntityAlreadyExists):
        store.create_virtual_mfa_device("phone", "JBSWY3DPEHPK3PXP")
    with pytest.raises(DeleteConflict):
        store.delete_virtual_mfa_device(device)
    assert [d.serial_number for d in store.mfa_devices_of("alice")] == [device]
    assert store.virtual_mfa_devices("Unassigned") == []
    store.deactivate_mfa_device(device, "alice")
    assert [d.serial_number for d in store.virtual_mfa_devices("Unassigned")] == [device]
    with pytest.raises(EntityAlreadyExists):
        store.enable_mfa_device(device, "alice", 100)                   # a used step cannot enable it again
    store.enable_mfa_device(device, "alice", 101)
    assert store.mfa_device(device).last_timecode == 101


def test_a_code_is_accepted_at_most_once_across_store_objects(store, other, device):
    assert not store.consume_totp(device, 100)                          # the step enabling it used
    assert store.consume_totp(device, 102)
    assert not other.consume_totp(device, 102)
    assert not other.consume_totp(device, 101)                          # older steps too
    assert other.consume_totp(device, 103)
    assert not store.consume_totp(device, 103)
    assert not store.resync_mfa_device(device, "alice", 103)


def test_racing_store_objects_accept_a_code_once(engine, where, clock, store, device):
    racers = [engine.open(where, clock) for _ in range(6)]
    results: list[bool] = []
    start = threading.Barrier(len(racers))

    def race(s):
        start.wait()
        results.append(s.consume_totp(device, 200))

    threads = [threading.Thread(target=race, args=(s,)) for s in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in racers:
        s.close()
    assert sorted(results) == [False] * 5 + [True]


def test_racing_failures_are_all_counted(engine, where, clock, store, device):
    racers = [engine.open(where, clock) for _ in range(4)]
    start = threading.Barrier(len(racers))

    def fail(s):
        start.wait()
        s.record_mfa_failure(device, T0)

    threads = [threading.Thread(target=fail, args=(s,)) for s in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in racers:
        s.close()
    assert store.mfa_failures(device).failures == 4                     # no update lost


def test_mfa_failure_counters_are_shared(store, other, device):
    now = T0.timestamp()
    assert store.mfa_failures(device) is None
    assert [store.record_mfa_failure(device, T0) if i % 2 else other.record_mfa_failure(device, T0)
            for i in range(5)] == [False] * 4 + [True]                   # lockout after 5 (default quota)
    state = other.mfa_failures(device)
    assert (state.failures, state.lockouts) == (0, 1) and state.locked_until == now + 300
    store.clear_mfa_failures(device)
    assert other.mfa_failures(device) is None


# ---- token keys and revocation -------------------------------------------------------------

def test_token_keys_add_and_retire(store, other, clock):
    first, keys = store.token_keys()
    assert set(keys) == {first} and len(keys[first]) == 32
    assert other.token_keys() == (first, keys)
    second = other.add_token_key()
    assert other.token_keys()[0] == second                              # its own commit, at once
    assert store.token_keys(fresh=True)[0] == second                    # the other's: at once when asked,
    clock.advance(1)
    assert set(store.token_keys()[1]) == {first, second}                # and within a second anyway
    with pytest.raises(StoreError):
        store.retire_token_key(second)                                   # the current one
    with pytest.raises(StoreError):
        store.retire_token_key(9999)
    assert store.retire_token_key() == first
    clock.advance(1)
    assert other.token_keys() == (second, {second: store.token_keys()[1][second]})
    with pytest.raises(StoreError):
        other.retire_token_key()                                         # only the current key left


def test_revocation(store, other, clock):
    store.create_user("alice")
    key = store.create_access_key("alice")
    store.create_role("app", TRUST)
    before = session_of(store, role="app", key=key.access_key_id, user="alice")
    assert not other.session_revoked(before)
    epoch = other.revocation_epoch()
    clock.advance(60)
    store.revoke_sessions("role", "App")
    assert other.revocation_epoch() == epoch + 1
    assert other.session_revoked(before)
    after = dataclasses.replace(before, issued_at=clock.now() + dt.timedelta(seconds=1))
    assert not other.session_revoked(after)
    store.revoke_sessions("user", "alice", before=clock.now() + dt.timedelta(seconds=5))
    assert other.session_revoked(after)
    with pytest.raises(ValueError):
        store.revoke_sessions("group", "devs")


def test_deleted_or_recreated_role_and_deactivated_mfa_revoke(store, other, clock, device):
    store.create_role("app", TRUST)
    session = session_of(store, role="app", mfa_serial=device)
    assert not other.session_revoked(session)
    clock.advance(1)
    store.deactivate_mfa_device(device)
    assert other.session_revoked(session)
    session = session_of(store, role="app", issued=clock.now())
    store.delete_role("app")
    store.create_role("app", TRUST)
    assert other.session_revoked(session)                                # a new role of the same name


# ---- OIDC providers, account -----------------------------------------------------------------

def test_oidc_providers(store, other):
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/idp.example.com"
    made = store.create_oidc_provider(arn, "https://idp.example.com", ["app"], ["a" * 40], [("k", "v")])
    assert other.get_oidc_provider(arn) == made and made.client_ids == ("app",) and made.tags == (("k", "v"),)
    with pytest.raises(EntityAlreadyExists):
        store.create_oidc_provider(arn, "https://idp.example.com", [], [], [])
    changed = other.update_oidc_provider(arn, lambda p: ([*p.client_ids, "cli"], p.thumbprints, p.tags))
    assert store.oidc_provider(arn).client_ids == ("app", "cli") == changed.client_ids
    assert [p.arn for p in store.oidc_providers()] == [arn]
    assert store.entity_counts()["Providers"] == 1
    store.delete_oidc_provider(arn)
    assert other.oidc_provider(arn) is None
    with pytest.raises(NoSuchEntity):
        store.delete_oidc_provider(arn)


def test_account_quotas_aliases_and_counts(store, other):
    assert other.account_created() == T0
    store.set_quota("UsersPerAccount", 1)
    assert other.quota("UsersPerAccount") == 1
    other.create_user("a")
    with pytest.raises(LimitExceeded):
        store.create_user("b")
    with pytest.raises(KeyError):
        store.set_quota("NoSuchQuota", 1)
    store.create_account_alias("my-lab")
    store.create_account_alias("my-lab")
    with pytest.raises(LimitExceeded):
        store.create_account_alias("other")
    assert other.account_aliases() == ["my-lab"]
    store.delete_account_alias("my-lab")
    with pytest.raises(NoSuchEntity):
        store.delete_account_alias("my-lab")
    assert other.entity_counts()["Users"] == 1


def test_a_transaction_commits_all_or_nothing(store, other):
    with pytest.raises(RuntimeError), store.transaction():
        store.create_user("alice")
        store.create_role("app", TRUST)
        raise RuntimeError("the audit line cannot be written")
    assert other.user("alice") is None and other.role("app") is None
    with store.transaction():
        store.create_user("alice")
        store.create_role("app", TRUST)
    assert other.user("alice") is not None and other.role("app") is not None

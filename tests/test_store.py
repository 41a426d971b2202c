"""The SQLite store: lifecycle, files, schema, StsStore contract, TOTP, revocation, durability."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import multiprocessing
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sts_backend import records
from sts_backend.errors import EntityAlreadyExists, NoSuchEntity
from sts_backend.records import Session
from sts_backend.store import DB_NAME, Store, StoreError
from sts_backend.store_schema import SCHEMA_VERSION, migrate, schema_version
from tests.clocks import FixedClock

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
ACCOUNT = "123456789012"
TRUST = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}'
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clock():
    return FixedClock(T0)


@pytest.fixture
def store(tmp_path, clock):
    s = Store.create(tmp_path / "data", ACCOUNT, clock)
    yield s
    s.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---- lifecycle -----------------------------------------------------------------------------

def test_create_then_open_keeps_everything(tmp_path, clock):
    data = tmp_path / "data"
    with Store.create(data, ACCOUNT, clock) as s:
        s.create_user("alice")
        key = s.create_access_key("alice")
        s.create_role("app", TRUST)
        keys = s.token_keys()
    with Store.open(data, clock) as s:
        assert s.account_id() == ACCOUNT
        assert s.user("alice").user_name == "alice"
        assert s.access_key(key.access_key_id).secret_access_key == key.secret_access_key
        assert s.role("app").assume_role_policy == TRUST
        assert s.token_keys() == keys


def test_create_refuses_an_initialised_dir(tmp_path, clock):
    data = tmp_path / "data"
    Store.create(data, ACCOUNT, clock).close()
    with pytest.raises(StoreError) as info:
        Store.create(data, None, clock)
    message = str(info.value)
    assert "already initialised" in message and str(data) in message and "\n" not in message


def test_open_refuses_an_uninitialised_dir(tmp_path):
    with pytest.raises(StoreError, match="not initialised"):
        Store.open(tmp_path / "nothing")


def test_random_account_id_is_12_digits(tmp_path):
    with Store.create(tmp_path / "a") as a, Store.create(tmp_path / "b") as b:
        for s in (a, b):
            assert len(s.account_id()) == 12 and s.account_id().isdigit()
        assert a.account_id() != b.account_id()


@pytest.mark.parametrize("bad", ["12345", "12345678901a", "1234567890123"])
def test_bad_account_id_refused(tmp_path, bad):
    with pytest.raises(StoreError, match="12 digits"):
        Store.create(tmp_path / "data", bad)
    assert not (tmp_path / "data" / DB_NAME).exists()


def test_files_are_0600_and_new_dir_0700(tmp_path, clock):
    data = tmp_path / "data"
    with Store.create(data, ACCOUNT, clock) as s:
        s.create_user("alice")
        assert _mode(data) == 0o700
        for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
            assert (data / name).exists(), name
            assert _mode(data / name) == 0o600, name
    with Store.open(data, clock) as s:
        s.create_user("bob")
        for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
            if (data / name).exists():
                assert _mode(data / name) == 0o600, name


def test_pragmas(store):
    conn = store.db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_schema_version_and_idempotent_migration(store, tmp_path, clock):
    assert schema_version(store.db.conn) == SCHEMA_VERSION
    assert migrate(store.db.conn) == SCHEMA_VERSION
    assert migrate(store.db.conn) == SCHEMA_VERSION
    with Store.open(store.path.parent, clock) as again:
        assert schema_version(again.db.conn) == SCHEMA_VERSION


def test_upgrade_resolves_the_principals_of_trust_policies_saved_before(store):
    """A role saved before v3 kept no principal ids; the v4 step records them from the live entities."""
    bob = store.create_user("bob")
    arn = f"arn:aws:iam::{ACCOUNT}:user/bob"
    document = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["' + arn +
                f'", "arn:aws:iam::210987654321:user/x", "{ACCOUNT}"]}},"Action":"sts:AssumeRole"}}]}}')
    store.create_role("old", document)   # no principal_ids: as a pre-v3 row reads after the v3 columns
    store.db.conn.execute("ALTER TABLE access_keys DROP COLUMN seq")   # the table as it was before v5
    store.db.conn.execute("PRAGMA user_version = 3")
    assert migrate(store.db.conn) == SCHEMA_VERSION
    row = store.db.conn.execute("SELECT trust_principal_ids FROM roles WHERE name = 'old'").fetchone()
    assert json.loads(row[0]) == {arn: bob.user_id}
    store.delete_user("bob")
    store.create_user("bob")
    shown = json.loads(store.role("old").assume_role_policy)
    assert shown["Statement"][0]["Principal"]["AWS"][0] == bob.user_id


def test_upgrade_keeps_the_creation_order_of_access_keys(store):
    """v5 turns SQLite's rowid into a column both engines have: same-time keys keep their order."""
    store.create_user("alice")
    for key in (store.create_access_key("alice"), store.create_access_key("alice")):  # one clock instant
        store.db.conn.execute("UPDATE access_keys SET access_key_id = ? WHERE access_key_id = ?",
                              ("AKIAZZZZZZZZZZZZZZZZ" if key.access_key_id == store.access_keys_of("alice")[0]
                               .access_key_id else "AKIAAAAAAAAAAAAAAAAA", key.access_key_id))
    store.db.conn.execute("ALTER TABLE access_keys DROP COLUMN seq")
    store.db.conn.execute("PRAGMA user_version = 4")
    assert migrate(store.db.conn) == SCHEMA_VERSION
    # creation order (the old rowid), not the ids' order
    assert [k.access_key_id for k in store.access_keys_of("alice")] == ["AKIAZZZZZZZZZZZZZZZZ", "AKIAAAAAAAAAAAAAAAAA"]


def test_newer_schema_refused(store, clock):
    store.db.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        Store.open(store.path.parent, clock)


def test_repr_shows_no_secret(store):
    key = store.create_access_key(store.create_user("alice").user_name)
    assert key.secret_access_key not in repr(key)
    assert "Store(" in repr(store)


# ---- the StsStore protocol -----------------------------------------------------------------

def test_implements_sts_store_exactly():
    for name, member in inspect.getmembers(records.StsStore, inspect.isfunction):
        if name.startswith("_"):
            continue
        mine = getattr(Store, name)
        assert list(inspect.signature(mine).parameters) == list(inspect.signature(member).parameters), name


def test_lookups_none_when_missing_and_case_insensitive(store):
    assert store.user("x") is None and store.role("x") is None
    assert store.access_key("AKIAXXXXXXXXXXXXXXXX") is None and store.mfa_device("arn:x") is None
    store.create_user("Alice")
    store.create_role("App", TRUST)
    assert store.user("ALICE").user_name == "Alice"
    assert store.role("app").role_name == "App"
    with pytest.raises(EntityAlreadyExists):
        store.create_user("alice")


def test_identity_policies_include_groups_and_default_versions(store):
    store.create_user("alice")
    store.put_inline_policy("user", "alice", "own", '{"own":1}', 7)
    policy = store.create_policy("managed", '{"v":1}')
    store.create_policy_version(policy.arn, '{"v":2}', set_as_default=True)
    store.create_policy_version(policy.arn, '{"v":3}', set_as_default=False)
    store.attach_policy("user", "alice", policy.arn)
    store.create_group("devs")
    store.add_user_to_group("devs", "alice")
    store.put_inline_policy("group", "devs", "grp", '{"grp":1}', 7)
    group_policy = store.create_policy("groupmanaged", '{"gm":1}')
    store.attach_policy("group", "devs", group_policy.arn)
    assert sorted(store.identity_policies("user", "ALICE")) == sorted(
        ['{"own":1}', '{"v":2}', '{"grp":1}', '{"gm":1}'])
    store.create_role("app", TRUST)
    store.put_inline_policy("role", "app", "r", '{"r":1}', 5)
    store.attach_policy("role", "app", policy.arn)
    assert sorted(store.identity_policies("role", "app")) == ['{"r":1}', '{"v":2}']
    assert store.identity_policies("role", "gone") == []


# ---- TOTP single use -----------------------------------------------------------------------

def test_consume_totp_single_use(store):
    device = store.create_virtual_mfa_device("dev", "A" * 64)
    serial = device.serial_number
    assert store.consume_totp(serial, 100) is True
    assert store.consume_totp(serial, 100) is False
    assert store.consume_totp(serial, 99) is False
    assert store.consume_totp(serial, 101) is True
    assert store.mfa_device(serial).last_timecode == 101
    assert store.consume_totp("arn:aws:iam::123456789012:mfa/none", 5) is False


def _race(data_dir: str, serial: str, timecode: int, barrier, results) -> None:
    s = Store.open(data_dir)
    try:
        barrier.wait(timeout=30)
        results.put(s.consume_totp(serial, timecode))
    finally:
        s.close()


def test_consume_totp_two_processes_exactly_one_wins(tmp_path, clock):
    data = tmp_path / "data"
    with Store.create(data, ACCOUNT, clock) as s:
        serial = s.create_virtual_mfa_device("dev", "A" * 64).serial_number
    ctx = multiprocessing.get_context("fork")
    for timecode in range(1000, 1008):
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(str(data), serial, timecode, barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        outcomes = sorted(results.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        assert outcomes == [False, True], timecode


# ---- token keys ----------------------------------------------------------------------------

def test_token_keys_rotation_seen_by_other_instances(store, clock):
    current, keys = store.token_keys()
    assert len(keys) == 1 and len(keys[current]) == 32
    with Store.open(store.path.parent, clock) as other:
        new_id = other.add_token_key()
    current2, keys2 = store.token_keys()
    assert current2 == new_id != current
    assert keys2[current] == keys[current] and len(keys2) == 2


def test_retire_token_key_oldest_first_never_the_current(store):
    first, _ = store.token_keys()
    with pytest.raises(StoreError, match="only the current token key is left"):
        store.retire_token_key()
    second, third = store.add_token_key(), store.add_token_key()
    with pytest.raises(StoreError, match=f"token key {third} is the current one"):
        store.retire_token_key(third)
    with pytest.raises(StoreError, match="there is no token key 99"):
        store.retire_token_key(99)
    assert store.retire_token_key() == first
    assert store.retire_token_key(second) == second
    assert store.token_keys() == (third, {third: store.token_keys()[1][third]})


# ---- revocation ----------------------------------------------------------------------------

def _session(store, *, role=None, key=None, user=None, issued=T0) -> Session:
    r = store.role(role) if role else None
    return Session(kind="AssumeRole" if role else "GetSessionToken", access_key_id="ASIA" + "A" * 16,
                   secret_access_key="s" * 40, account_id=ACCOUNT, principal_arn="arn:x",
                   user_id="x", source_user_name=user, source_access_key_id=key or "",
                   role_name=role, role_id=r.role_id if r else None, session_name="s" if role else None,
                   source_identity=None, mfa_authenticated=False, mfa_auth_time=None, issued_at=issued,
                   expires_at=issued + dt.timedelta(hours=1), chained=False)


@pytest.fixture
def world(store):
    store.create_user("alice")
    key = store.create_access_key("alice")
    store.create_role("app", TRUST)
    return store, key


def test_intact_session_not_revoked(world):
    store, key = world
    assert not store.session_revoked(_session(store, role="app", key=key.access_key_id, user="alice"))


def test_role_deleted_or_recreated_revokes(world):
    store, key = world
    session = _session(store, role="app", key=key.access_key_id, user="alice")
    epoch = store.revocation_epoch()
    store.delete_role("app")
    assert store.revocation_epoch() > epoch
    assert store.session_revoked(session)
    store.create_role("APP", TRUST)
    assert store.session_revoked(session)


def test_key_deactivated_or_deleted_revokes(world):
    store, key = world
    session = _session(store, key=key.access_key_id, user="alice")
    epoch = store.revocation_epoch()
    store.update_access_key("alice", key.access_key_id, "Inactive")
    assert store.revocation_epoch() == epoch + 1 and store.session_revoked(session)
    store.update_access_key("alice", key.access_key_id, "Inactive")
    assert store.revocation_epoch() == epoch + 1
    store.update_access_key("alice", key.access_key_id, "Active")
    assert not store.session_revoked(session)
    store.delete_access_key("alice", key.access_key_id)
    assert store.revocation_epoch() == epoch + 3 and store.session_revoked(session)


def test_user_deleted_revokes(world):
    store, key = world
    session = _session(store, user="alice")
    store.delete_access_key("alice", key.access_key_id)
    epoch = store.revocation_epoch()
    store.delete_user("alice")
    assert store.revocation_epoch() == epoch + 1 and store.session_revoked(session)


def test_revoke_sessions_by_issue_time(world, clock):
    store, key = world
    old = _session(store, role="app", issued=T0)
    clock.advance(60)
    epoch = store.revocation_epoch()
    store.revoke_sessions("role", "APP")
    assert store.revocation_epoch() == epoch + 1
    newer = _session(store, role="app", issued=T0 + dt.timedelta(seconds=61))
    assert store.session_revoked(old) and not store.session_revoked(newer)
    user_session = _session(store, user="alice", key=key.access_key_id, issued=T0)
    store.revoke_sessions("user", "alice")
    assert store.session_revoked(user_session)


def test_failed_delete_does_not_bump_epoch(world):
    store, _ = world
    epoch = store.revocation_epoch()
    with pytest.raises(NoSuchEntity):
        store.delete_role("nope")
    assert store.revocation_epoch() == epoch


# ---- key use -------------------------------------------------------------------------------

def test_record_key_use_buffered_and_flushed(world, clock):
    store, key = world
    when = T0 + dt.timedelta(minutes=5)
    store.record_key_use(key.access_key_id, "sts", "eu-west-1", when)
    raw = sqlite3.connect(store.path)
    try:
        assert raw.execute("SELECT last_used FROM access_keys").fetchone()[0] is None
        used = store.key_last_used(key.access_key_id)
        assert (used.last_used, used.service, used.region) == (when, "sts", "eu-west-1")
        with Store.open(store.path.parent, clock) as other:
            other.record_key_use(key.access_key_id, "iam", "us-east-1", when + dt.timedelta(minutes=1))
            other.record_key_use(key.access_key_id, "sts", "us-east-1", when - dt.timedelta(minutes=1))
        assert raw.execute("SELECT last_service FROM access_keys").fetchone()[0] == "iam"
    finally:
        raw.close()
    used = store.key_last_used(key.access_key_id)
    assert used.last_used == when + dt.timedelta(minutes=1)  # an older use never overwrites a newer one
    store.record_key_use(key.access_key_id, "sts", "ap-south-1", when)
    assert store.key_last_used(key.access_key_id).service == "iam"


def test_never_used_key(world):
    store, key = world
    used = store.key_last_used(key.access_key_id)
    assert (used.user_name, used.last_used, used.service) == ("alice", None, None)
    with pytest.raises(NoSuchEntity):
        store.key_last_used("AKIANOTAKEY000000000")


# ---- durability ----------------------------------------------------------------------------

_WRITER = """
import sys, datetime as dt
from sts_backend.store import Store
s = Store.open(sys.argv[1])
i = 0
while True:
    name = f"user{i:05d}"
    s.create_user(name)
    print(name, flush=True)
    i += 1
"""


def test_acknowledged_writes_survive_sigkill(tmp_path, clock):
    data = tmp_path / "data"
    Store.create(data, ACCOUNT, clock).close()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(data)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env=env)
    acknowledged = []
    try:
        for line in proc.stdout:
            acknowledged.append(line.strip())
            if len(acknowledged) >= 60:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 60
    with Store.open(data, clock) as s:
        present = {u.user_name for u in s.list_users()}
    assert set(acknowledged) <= present

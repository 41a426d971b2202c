"""The PostgreSQL engine's own concerns (``store_postgres``): URLs and passwords, the schema
version ``serve`` checks, the read lane's one-second cache, the dialect rewrite. What both
engines must do is in ``tests/test_store_contract.py``; replicas over real sockets in
``tests/interop/test_backend_postgres.py``. Runs on a throwaway cluster (``tests.pg_support``),
skipped with the reason where none can start."""

from __future__ import annotations

import datetime as dt
import sys

import pytest

from sts_backend.store import Store, StoreError
from tests.clocks import FixedClock

psycopg = pytest.importorskip("psycopg", reason="psycopg 3 is not installed: pip install 'rolecall[postgresql]'")
from sts_backend.store_postgres import SCHEMA_VERSION, translate  # noqa: E402 - needs psycopg

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def clock():
    return FixedClock(T0)


def test_without_the_driver_database_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)   # as if not installed
    monkeypatch.delitem(sys.modules, "sts_backend.store_postgres")
    monkeypatch.delattr(sys.modules["sts_backend"], "store_postgres")   # so the import runs again
    with pytest.raises(StoreError) as exc:
        Store.open_database("postgresql://rolecall@127.0.0.1/db")
    assert str(exc.value) == ("--database needs psycopg 3 and psycopg-pool (psycopg is missing): "
                              "pip install 'rolecall[postgresql]'")


def test_the_dialect_rewrite():
    assert translate("SELECT a FROM t WHERE n = ? AND m = ? ORDER BY n COLLATE NOCASE") == \
        "SELECT a FROM t WHERE n = %s AND m = %s ORDER BY n"
    assert translate("SELECT 1 WHERE owner_id = :id OR x = :id") == "SELECT 1 WHERE owner_id = %(id)s OR x = %(id)s"
    assert translate("SELECT '50%' WHERE a::text = ?") == "SELECT '50%%' WHERE a::text = %s"


@pytest.mark.parametrize("url,says", [
    ("postgresql://rolecall:hunter2@127.0.0.1/db", "never in the URL"),
    ("postgresql://rolecall@127.0.0.1/db?password=hunter2", "never in the URL"),
    ("mysql://rolecall@127.0.0.1/db", "must be a postgresql:// URL"),
])
def test_urls_with_a_password_or_of_another_engine_are_refused(url, says):
    with pytest.raises(StoreError, match=says) as exc:
        Store.open_database(url)
    assert "hunter2" not in str(exc.value)


def test_the_password_file_and_its_errors(pg_cluster, pg_url, tmp_path, monkeypatch, clock):
    Store.create_database(pg_url, "123456789012", clock).close()
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))   # libpq finds no password ...
    with pytest.raises(StoreError, match="cannot connect") as exc:
        Store.open_database(pg_url, clock)
    secret = tmp_path / "pw"
    secret.write_text(pg_cluster.password + "\n")
    with Store.open_database(pg_url, clock, password_file=str(secret)) as store:   # ... the file gives it
        assert store.account_id() == "123456789012"
    secret.write_text("wrong\n")
    with pytest.raises(StoreError, match="cannot connect") as exc:
        Store.open_database(pg_url, clock, password_file=str(secret))
    assert "wrong" not in str(exc.value) and pg_cluster.password not in str(exc.value)
    with pytest.raises(StoreError, match="--database-password-file .*missing"):
        Store.open_database(pg_url, clock, password_file=str(tmp_path / "missing"))


def test_schema_versions_it_does_not_know_are_refused_with_one_line(pg_cluster, pg_url, clock):
    with pytest.raises(StoreError, match=r"is not initialised \(run `rolecall backend init --database"):
        Store.open_database(pg_url, clock)
    Store.create_database(pg_url, "123456789012", clock).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE rolecall_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError) as exc:
        Store.open_database(pg_url, clock)
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this rolecall's ({SCHEMA_VERSION})" in str(exc.value)
    assert "\n" not in str(exc.value)
    with pytest.raises(StoreError, match="newer than this rolecall"):
        Store.create_database(pg_url, None, clock)   # init never downgrades either


def test_init_twice_is_refused_and_keeps_the_account(pg_url, clock):
    Store.create_database(pg_url, "123456789012", clock).close()
    with pytest.raises(StoreError, match="already initialised"):
        Store.create_database(pg_url, "210987654321", clock)
    with Store.open_database(pg_url, clock) as store:
        assert store.account_id() == "123456789012"


def test_a_replicas_read_lane_is_at_most_a_second_stale_and_reads_its_own_writes_at_once(pg_url, clock):
    Store.create_database(pg_url, "123456789012", clock).close()
    with Store.open_database(pg_url, clock) as a, Store.open_database(pg_url, clock) as b:
        reader = b.reader()
        try:
            assert reader.user("alice") is None
            a.create_user("alice")                          # another replica's write ...
            assert b.user("alice") is not None              # ... the write lane reads exactly
            assert reader.user("alice") is None             # the read lane answers from memory
            clock.advance(1)
            assert reader.user("alice").user_name == "alice"   # ... for a second at most
            b.delete_user("alice")                          # this replica's own write
            assert reader.user("alice") is None             # is seen at once
        finally:
            reader.close()

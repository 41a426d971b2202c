"""Starting the backend on a data dir that is damaged or incomplete, and tokens no rule of ours makes.

Every start-up failure is one line naming the file and what to do, exit 1, no traceback.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sts_backend import tokens
from sts_backend.auth import plausible
from tests.test_sts_ops import Kit, expect

REPO = Path(__file__).resolve().parent.parent


def rolecall(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def one_line_failure(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1 and done.stdout == "", (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    assert rolecall("backend", "init", "--data-dir", str(path)).returncode == 0
    return path


def test_an_empty_token_key_table_is_one_line_with_the_fix(data_dir):
    with sqlite3.connect(data_dir / "rolecall.db") as conn:
        conn.execute("DELETE FROM token_keys")
    line = one_line_failure(rolecall("backend", "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"))
    assert str(data_dir / "rolecall.db") in line and "rolecall backend rotate-token-key" in line
    rotated = rolecall("backend", "rotate-token-key", "--data-dir", str(data_dir))  # the fix works
    assert rotated.returncode == 0 and "TokenKeyId" in json.loads(rotated.stdout)
    assert "no restart needed" in rotated.stderr


def test_a_damaged_database_is_refused_at_start(data_dir):
    db = data_dir / "rolecall.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE filler (x BLOB)")
        conn.executemany("INSERT INTO filler VALUES (randomblob(3000))", [()] * 200)
    page = 4096
    with open(db, "r+b") as f:  # random bytes over pages in the middle of the file, as a bad disk might leave
        f.seek(page * 20)
        f.write(bytes(range(256)) * (page * 30 // 256))
    line = one_line_failure(rolecall("backend", "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"))
    assert str(db) in line and ("damaged" in line or "malformed" in line) and "backup" in line


def test_an_uninitialised_dir_says_to_init(tmp_path):
    line = one_line_failure(rolecall("backend", "serve", "--data-dir", str(tmp_path / "none")))
    assert "rolecall backend init --data-dir" in line


@pytest.fixture
def kit(tmp_path):
    k = Kit(str(tmp_path / "data"))
    yield k
    k.close()


def _forged(kit: Kit, **changes) -> dict:
    """A correctly sealed token (our own key) whose session breaks one of our rules."""
    out = kit.admin.sts("GetSessionToken", DurationSeconds=3600)["Credentials"]
    key_id, keys = kit.store.token_keys()
    session = tokens.unseal(out["SessionToken"], keys, out["AccessKeyId"])
    return {"AccessKeyId": out["AccessKeyId"], "SecretAccessKey": out["SecretAccessKey"],
            "SessionToken": tokens.seal(dataclasses.replace(session, **changes), key_id, keys[key_id])}


@pytest.mark.parametrize("hours_ahead, lifetime_hours", [(1, 1), (0, 37)])
def test_a_sealed_token_our_rules_could_not_have_made_is_refused(kit, hours_ahead, lifetime_hours):
    now = kit.clock.now()
    issued = now + dt.timedelta(hours=hours_ahead)
    forged = _forged(kit, issued_at=issued, expires_at=issued + dt.timedelta(hours=lifetime_hours))
    error = expect("InvalidClientTokenId", kit.admin.temporary({"Credentials": forged}).sts, "GetCallerIdentity")
    assert error.status == 403


def test_plausibility_rules():
    from sts_backend.records import Session

    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def session(kind, hours, chained=False, ahead=0):
        issued = now + dt.timedelta(minutes=ahead)
        return Session(kind=kind, access_key_id="ASIA" + "A" * 16, secret_access_key="s", account_id="1" * 12,
                       principal_arn="arn", user_id="u", source_user_name=None, source_access_key_id="AKIA",
                       role_name=None, role_id=None, session_name=None, source_identity=None,
                       mfa_authenticated=False, mfa_auth_time=None, issued_at=issued,
                       expires_at=issued + dt.timedelta(hours=hours), chained=chained)

    assert plausible(session("GetSessionToken", 36), now) and not plausible(session("GetSessionToken", 37), now)
    assert plausible(session("AssumeRole", 12), now) and not plausible(session("AssumeRole", 13), now)
    assert not plausible(session("AssumeRole", 2, chained=True), now)
    assert plausible(session("AssumeRole", 1, ahead=4), now) and not plausible(session("AssumeRole", 1, ahead=6), now)

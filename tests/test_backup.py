"""`rolecall backend backup` / `restore`: an online copy during a write burst, restored and served.

The CLI runs as a real process; the writer is another process committing users
through the store while the backup runs, so SQLite's backup sees real
concurrent commits (and restarts its copy on them). The restored data dir is
served by a ``Backend`` over Kit-style signed calls, session tokens minted
before the backup included.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sts_backend.app import Backend
from sts_backend.audit import AuditLog
from sts_backend.backup import is_live
from sts_backend.store import DB_NAME, Store
from tests.test_backend_startup import one_line_failure, rolecall
from tests.test_sts_ops import ACCOUNT, ADMIN_ROLE_POLICY, Client, Kit, trust
from wire.sigv4 import Credentials

REPO = Path(__file__).resolve().parent.parent

_WRITER = """
import sys
from sts_backend.store import Store
s = Store.open(sys.argv[1])
s.set_quota("UsersPerAccount", 10_000_000)   # a slow backup must not end the burst at the 5,000-user quota
i = 0
while True:
    s.create_user(f"burst{i:05d}")
    print(f"burst{i:05d}", flush=True)
    i += 1
"""


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class Served:
    """A ``Backend`` over a restored data dir, for ``tests.test_sts_ops.Client`` calls."""

    def __init__(self, data_dir, clock) -> None:
        self.clock = clock
        self.store = Store.open(data_dir, clock)
        self.audit = AuditLog(os.path.join(data_dir, "audit.log"))
        self.backend = Backend(self.store, clock, self.audit)

    def client(self, creds: Credentials) -> Client:
        return Client(self, creds)

    def close(self) -> None:
        self.audit.close()
        self.store.close()


@pytest.fixture
def kit(tmp_path):
    k = Kit(str(tmp_path / "data"))
    yield k
    k.close()


def test_backup_during_a_write_burst_restores_every_acknowledged_write_and_serves_it(kit, tmp_path):
    alice = kit.user("alice", ADMIN_ROLE_POLICY.replace('"*", "Resource"', '"sts:*", "Resource"'))
    role_arn = kit.role("app", trust({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}), ADMIN_ROLE_POLICY)
    serial, seed = kit.mfa_device("alice")
    session = kit.admin.sts("GetSessionToken", DurationSeconds=3600)
    assumed = kit.admin.sts("AssumeRole", RoleArn=role_arn, RoleSessionName="before-backup")
    secrets = [alice.creds.secret_access_key, kit.admin.creds.secret_access_key,
               session["Credentials"]["SecretAccessKey"], session["Credentials"]["SessionToken"],
               assumed["Credentials"]["SecretAccessKey"], seed]

    writer = subprocess.Popen([sys.executable, "-c", _WRITER, kit.data_dir], stdout=subprocess.PIPE, text=True,
                              cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    acknowledged: list[str] = []
    try:
        for line in writer.stdout:
            acknowledged.append(line.strip())
            if len(acknowledged) >= 40:
                break
        before_backup = list(acknowledged)   # every write acknowledged before the backup starts
        done = rolecall("backend", "backup", "--data-dir", kit.data_dir, "--to", str(tmp_path / "b.db"))
        acknowledged.append(writer.stdout.readline().strip())   # the burst went on during the backup
    finally:
        writer.kill()
        writer.wait(timeout=30)
        writer.stdout.close()
    assert done.returncode == 0, done.stderr
    backup_file = tmp_path / "b.db"
    assert done.stdout.strip() == f'{{"Backup": "{backup_file}", "Bytes": {backup_file.stat().st_size}}}'
    assert _mode(backup_file) == 0o600
    assert not any(name.startswith(".b.db") for name in os.listdir(tmp_path))   # no temp file left

    restored = tmp_path / "restored"
    done_restore = rolecall("backend", "restore", "--from", str(backup_file), "--data-dir", str(restored))
    assert done_restore.returncode == 0, done_restore.stderr
    assert f'"Restored": "{restored / DB_NAME}"' in done_restore.stdout
    assert _mode(restored) == 0o700 and _mode(restored / DB_NAME) == 0o600
    for text in (done.stdout, done.stderr, done_restore.stdout, done_restore.stderr):
        assert not any(secret in text for secret in secrets)

    served = Served(restored, kit.clock)
    try:
        users = {u.user_name for u in served.store.list_users()}
        assert set(before_backup) <= users and {"admin", "alice"} <= users
        admin = served.client(kit.admin.creds)
        assert admin.sts("GetCallerIdentity")["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
        assert served.client(alice.creds).sts("GetCallerIdentity")["Arn"].endswith(":user/alice")
        devices = admin.iam("ListMFADevices", UserName="alice")["MFADevices"]
        assert [d["SerialNumber"] for d in devices] == [serial]
        # Sessions minted before the backup: their token keys came with the copy.
        old_session = Client(served, Credentials(session["Credentials"]["AccessKeyId"],
                                                 session["Credentials"]["SecretAccessKey"],
                                                 session["Credentials"]["SessionToken"]))
        assert old_session.sts("GetCallerIdentity")["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
        old_role = Client(served, Credentials(assumed["Credentials"]["AccessKeyId"],
                                              assumed["Credentials"]["SecretAccessKey"],
                                              assumed["Credentials"]["SessionToken"]))
        assert old_role.sts("GetCallerIdentity")["Arn"].endswith(":assumed-role/app/before-backup")
        assert old_role.iam("GetRole", RoleName="app")["Role"]["Arn"] == role_arn
        # The MFA seed came too: a fresh code authenticates against the restored device.
        mfa_session = served.client(alice.creds).sts("GetSessionToken", SerialNumber=serial,
                                                     TokenCode=kit.code(seed))
        assert mfa_session["Credentials"]["SessionToken"]
        # And the restored store takes writes.
        admin.iam("CreateUser", UserName="after-restore")
    finally:
        served.close()


def test_backup_refuses_an_existing_file_unless_forced(kit, tmp_path):
    target = tmp_path / "b.db"
    target.write_text("keep me")
    line = one_line_failure(rolecall("backend", "backup", "--data-dir", kit.data_dir, "--to", str(target)))
    assert str(target) in line and "--force" in line
    assert target.read_text() == "keep me"
    link = tmp_path / "link.db"
    link.symlink_to(target)
    assert str(link) in one_line_failure(rolecall("backend", "backup", "--data-dir", kit.data_dir, "--to", str(link)))
    done = rolecall("backend", "backup", "--data-dir", kit.data_dir, "--to", str(target), "--force")
    assert done.returncode == 0, done.stderr
    assert target.read_bytes().startswith(b"SQLite format 3\x00") and _mode(target) == 0o600


def test_backup_refuses_an_unsafe_or_missing_data_dir(tmp_path):
    line = one_line_failure(rolecall("backend", "backup", "--data-dir", str(tmp_path / "none"), "--to", str(tmp_path / "b")))
    assert "not initialised" in line and not (tmp_path / "b").exists()


def test_restore_refusals(kit, tmp_path):
    backup_file = tmp_path / "b.db"
    assert rolecall("backend", "backup", "--data-dir", kit.data_dir, "--to", str(backup_file)).returncode == 0

    # Live: this process has the data dir's store open, as a serving backend does. (Not probed
    # from here: closing the probe's descriptor would drop this process's SQLite locks.)
    for force in ((), ("--force",)):
        line = one_line_failure(rolecall("backend", "restore", "--from", str(backup_file), "--data-dir", kit.data_dir,
                                *force))
        assert "live" in line and kit.data_dir in line

    stopped = tmp_path / "stopped"
    assert rolecall("backend", "restore", "--from", str(backup_file), "--data-dir", str(stopped)).returncode == 0
    assert not is_live(stopped)
    line = one_line_failure(rolecall("backend", "restore", "--from", str(backup_file), "--data-dir", str(stopped)))
    assert "already has a database" in line and "--force" in line
    with Store.open(stopped) as s:
        s.create_user("only-in-stopped")
    done = rolecall("backend", "restore", "--from", str(backup_file), "--data-dir", str(stopped), "--force")
    assert done.returncode == 0, done.stderr
    with Store.open(stopped) as s:
        assert s.user("only-in-stopped") is None and s.user("admin") is not None

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    for bad in (text, other):
        fresh = tmp_path / f"fresh-{bad.name}"
        line = one_line_failure(rolecall("backend", "restore", "--from", str(bad), "--data-dir", str(fresh)))
        assert str(bad) in line and "not a rolecall database" in line
        assert not (fresh / DB_NAME).exists() and os.listdir(fresh) == []



class CommittingSource(sqlite3.Connection):
    """A source connection whose stepped backups see another connection commit after every step."""

    def backup(self, target, *, pages=-1, progress=None, **kwargs):
        self.calls.append(pages)

        def step(status, remaining, total):
            self.other.execute("INSERT INTO t VALUES (?)", (f"during{len(self.calls)}-{remaining}",))
            if progress is not None:
                progress(status, remaining, total)

        return super().backup(target, pages=pages, progress=step if pages > 0 else progress, **kwargs)


def test_a_copy_that_keeps_restarting_is_finished_in_one_snapshot(tmp_path):
    from sts_backend.backup import MAX_RESTARTS, stepped_backup

    path = tmp_path / "src.db"
    source = sqlite3.connect(path, factory=CommittingSource, isolation_level=None)
    source.execute("PRAGMA journal_mode = WAL")
    source.execute("CREATE TABLE t (x)")
    source.executemany("INSERT INTO t VALUES (?)", [("x" * 2000,)] * 100)
    source.other = sqlite3.connect(path, isolation_level=None)
    source.calls = []
    dest = sqlite3.connect(tmp_path / "dest.db")
    try:
        stepped_backup(source, dest, 4)
        assert source.calls == [4, -1]   # stepped, restarted MAX_RESTARTS times, then one step
        committed = source.other.execute("SELECT count(*) FROM t").fetchone()[0]
        assert committed >= 100 + MAX_RESTARTS
        assert dest.execute("SELECT count(*) FROM t").fetchone()[0] == committed
        assert dest.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    finally:
        dest.close()
        source.other.close()
        source.close()

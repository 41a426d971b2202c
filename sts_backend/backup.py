"""Online backup and restore of a data dir's ``rolecall.db``.

Backup (``backup``) copies the database with SQLite's online backup API
(``sqlite3.Connection.backup``), ``STEP_PAGES`` pages a step. The source
connection only ever holds a read transaction: in WAL mode that never blocks the
backend's writer, and each step sees one committed snapshot (SQLite restarts the
copy if another connection commits between steps, so the result is always one
consistent snapshot, taken no earlier than the call). A copy restarted
``MAX_RESTARTS`` times (a large database under a steady write load) is finished
in one step instead: one read snapshot, which in WAL mode still blocks no writer. The copy is written to a
temp file beside the target (0600, ``O_EXCL|O_NOFOLLOW``), switched to a
rollback journal (a standalone file, no ``-wal``), checked (``quick_check``),
fsynced, then linked to the target name (``link`` fails if it exists: no
overwrite unless ``force``) and the directory fsynced, so a crash never leaves a
half backup under the target name.

Restore (``restore``) refuses a live data dir (``is_live``) always, and one
that already has a database unless ``force``; it copies the file in the same
way, validates it as a rolecall database before it takes the name
``rolecall.db``, removes the old ``-wal``/``-shm`` (a stale WAL would be replayed
into the restored database), and opens it with ``Store.open``, which migrates an
older schema and runs the start-up checks. The audit log is neither in a backup
nor touched by a restore: it is the record of what happened, restores included.

Liveness: every SQLite connection in WAL mode holds a shared lock on the
"DMS" byte of the ``-shm`` file for as long as it is open (SQLite's unix VFS,
``unixOpenSharedMemory``). ``is_live`` probes for a write lock on that byte with
an open-file-description lock (``F_OFD_SETLK``), which conflicts with SQLite's
POSIX locks even in the same process and is never confused by a ``-shm`` file a
crashed process left behind. (A process that has the database open must not
probe its own: see ``is_live``.)

A backup holds every secret of the data dir (access key secrets, MFA seeds,
token keys): it is 0600 and must be kept like the data dir itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path

from sts_backend.store import DB_NAME, Store, StoreError, private_data_dir
from sts_backend.store_schema import SCHEMA_VERSION

__all__ = ["BackupResult", "backup", "restore", "is_live", "stepped_backup", "STEP_PAGES", "MAX_RESTARTS"]

STEP_PAGES = 1024          # 4 MiB a step at SQLite's default page size
MAX_RESTARTS = 8
SQLITE_MAGIC = b"SQLite format 3\x00"
SHM_DMS_BYTE = 128         # unix VFS: UNIX_SHM_BASE (120) + SQLITE_SHM_NLOCK (8)
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)


@dataclass(frozen=True)
class BackupResult:
    """Where a backup or restore wrote, and how many bytes."""

    path: str
    size: int


def is_live(data_dir: str | os.PathLike) -> bool:
    """True when another process has the data dir's database open.

    Never call it in a process that has the database open itself: closing the
    probe's descriptor drops every POSIX lock this process holds on ``-shm``
    (POSIX lock semantics), SQLite's among them. The CLI's ``restore`` opens
    nothing of the data dir before it probes.
    """
    shm = Path(data_dir) / f"{DB_NAME}-shm"
    try:
        fd = os.open(shm, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks).
        lock = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, SHM_DMS_BYTE, 1, 0)
        try:
            fcntl.fcntl(fd, F_OFD_SETLK, lock)
        except OSError:
            return True
        fcntl.fcntl(fd, F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_UNLCK, os.SEEK_SET, SHM_DMS_BYTE, 1, 0))
        return False
    finally:
        os.close(fd)


def backup(data_dir: str | os.PathLike, target: str | os.PathLike, *, force: bool = False,
           step_pages: int = STEP_PAGES) -> BackupResult:
    """Copy the data dir's database to ``target`` (0600) while a backend may be serving it.

    Raises:
        StoreError: one line naming the file (the data dir is refused by ``Store.open``,
            ``target`` exists and not ``force``, or the copy cannot be written or fails its check).
    """
    target = Path(target)
    if not force and (target.exists() or target.is_symlink()):
        raise StoreError(f"{target} exists (use --force to overwrite it)")
    with Store.open(data_dir, need_token_key=False) as store:   # the data dir's safety and health checks
        source_path = store.path
    # Not ``mode=ro``: a read-only WAL connection cannot create the ``-shm`` it needs when
    # no backend runs. ``query_only`` refuses writes all the same.
    source = sqlite3.connect(source_path, isolation_level=None)
    try:
        source.execute("PRAGMA busy_timeout = 5000")
        source.execute("PRAGMA query_only = ON")
        size = _copy_to(source, target, force=force, step_pages=step_pages)
    finally:
        source.close()
    return BackupResult(str(target), size)


def restore(source: str | os.PathLike, data_dir: str | os.PathLike, *, force: bool = False) -> BackupResult:
    """Put the backup ``source`` in place as ``data_dir``'s database (created 0700 if missing).

    Raises:
        StoreError: one line: the data dir is live, or has a database and not ``force``,
            or ``source`` is not a rolecall database, or the result fails ``Store.open``.
    """
    source, data_dir = Path(source), Path(data_dir)
    private_data_dir(data_dir, create=True)
    target = data_dir / DB_NAME
    if is_live(data_dir):
        raise StoreError(f"{data_dir} is live (a backend or other process has {target} open): stop it first")
    if not force and any((data_dir / f"{DB_NAME}{s}").exists() for s in ("", "-wal")):
        raise StoreError(f"{data_dir} already has a database ({target}): use --force to replace it")
    try:
        with open(source, "rb") as f:
            magic = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"cannot read {source}: {exc.strerror or exc}") from None
    if magic != SQLITE_MAGIC:
        raise StoreError(f"{source} is not a rolecall database (not an SQLite file)")
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None)
    try:
        size = _copy_to(conn, target, force=True, check=lambda c: _check_rolecall(c, source),
                        before_rename=lambda: _clear_for_restore(data_dir))
    finally:
        conn.close()
    with Store.open(data_dir):   # migrates an older schema, then quick_check and the token-key check
        pass
    return BackupResult(str(target), size)


def _clear_for_restore(data_dir: Path) -> None:
    if is_live(data_dir):
        raise StoreError(f"{data_dir} became live during the restore: stop the backend first")
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(data_dir / f"{DB_NAME}{suffix}")


def _check_rolecall(conn: sqlite3.Connection, source: Path) -> None:
    """Refuse a copy that is not a rolecall database this version can open."""
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        account = conn.execute("SELECT account_id FROM account").fetchone() if "account" in tables else None
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{source} is not a rolecall database ({exc})") from None
    if account is None or not {"users", "access_keys", "token_keys"} <= tables:
        raise StoreError(f"{source} is not a rolecall database (no account or IAM tables)")
    if version > SCHEMA_VERSION:
        raise StoreError(f"{source} has schema version {version}, newer than this rolecall's {SCHEMA_VERSION}: "
                         "restore it with the newer rolecall")


class _Restarting(Exception):
    """The stepped copy kept restarting: finish it in one step."""


def stepped_backup(source: sqlite3.Connection, dest: sqlite3.Connection, step_pages: int) -> None:
    """``source.backup`` in steps; in one step if other connections' commits keep restarting it."""
    last = [None, 0]   # remaining pages after the previous step, restarts seen

    def progress(status: int, remaining: int, total: int) -> None:
        if last[0] is not None and remaining > last[0]:
            last[1] += 1
            if last[1] >= MAX_RESTARTS:
                raise _Restarting
        last[0] = remaining

    try:
        source.backup(dest, pages=step_pages, progress=progress)
    except _Restarting:
        source.backup(dest, pages=-1)


def _copy_to(source: sqlite3.Connection, target: Path, *, force: bool, check=None, before_rename=None,
             step_pages: int = STEP_PAGES) -> int:
    """Copy ``source`` into a temp file beside ``target``, check it, fsync it, and give it ``target``'s name."""
    directory = target.parent
    temp = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create {temp}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        dest = sqlite3.connect(temp, isolation_level=None)
        try:
            try:
                stepped_backup(source, dest, step_pages)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot copy into {temp}: {exc}") from None
            dest.execute("PRAGMA journal_mode = DELETE")   # a standalone file: no -wal beside it
            problems = [row[0] for row in dest.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise StoreError(f"the copy {temp} fails SQLite quick_check: {'; '.join(problems)[:300]}")
            if check is not None:
                check(dest)
        finally:
            dest.close()
        fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if before_rename is not None:
            before_rename()
        try:
            if force:
                os.replace(temp, target)
            else:
                os.link(temp, target)   # fails if target appeared meanwhile: never overwrite
        except FileExistsError:
            raise StoreError(f"{target} exists (use --force to overwrite it)") from None
        except OSError as exc:
            raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from None
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return size
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        for suffix in ("-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{temp}{suffix}")

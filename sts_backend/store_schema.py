"""The backend database's schema, as an ordered list of migrations.

``PRAGMA user_version`` holds how many of ``MIGRATIONS`` have been applied.
``migrate`` applies the missing ones, each in its own ``BEGIN IMMEDIATE``
transaction together with the bump of ``user_version``, so a crash leaves the
database at a whole version and two processes opening it at once serialise.
Append new migrations; never edit one that has shipped.

Conventions: names of users, groups, roles, managed policies and tag keys are
unique case-insensitively (``COLLATE NOCASE``), as IAM's are; rows reference
entities by their unique id (``AIDA…``/``AROA…``/``AGPA…``/``ANPA…``), so a
deleted-and-recreated name is a different entity. Timestamps are ISO-8601 UTC
text with microseconds. Inline policies, attachments and tags of users, groups
and roles share tables keyed by ``(kind, owner_id)``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Callable

_V1 = """
CREATE TABLE account (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    account_id TEXT NOT NULL CHECK (length(account_id) = 12),
    created TEXT NOT NULL,
    revocation_epoch INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE account_aliases (
    alias TEXT PRIMARY KEY COLLATE NOCASE
);
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    path TEXT NOT NULL,
    arn TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE access_keys (
    access_key_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id),
    secret TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('Active', 'Inactive', 'Expired')),
    created TEXT NOT NULL,
    last_used TEXT,
    last_service TEXT,
    last_region TEXT
);
CREATE INDEX access_keys_by_user ON access_keys (user_id);
CREATE TABLE groups (
    group_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    path TEXT NOT NULL,
    arn TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups (group_id),
    user_id TEXT NOT NULL REFERENCES users (user_id),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id);
CREATE TABLE roles (
    role_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    path TEXT NOT NULL,
    arn TEXT NOT NULL,
    trust_policy TEXT NOT NULL,
    max_session_duration INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    last_used TEXT,
    last_used_region TEXT
);
CREATE TABLE inline_policies (
    kind TEXT NOT NULL CHECK (kind IN ('user', 'group', 'role')),
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (kind, owner_id, name)
);
CREATE TABLE policies (
    policy_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    path TEXT NOT NULL,
    arn TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    default_version INTEGER NOT NULL,
    next_version INTEGER NOT NULL
);
CREATE TABLE policy_versions (
    policy_id TEXT NOT NULL REFERENCES policies (policy_id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    document TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (policy_id, version)
);
CREATE TABLE policy_attachments (
    kind TEXT NOT NULL CHECK (kind IN ('user', 'group', 'role')),
    owner_id TEXT NOT NULL,
    policy_id TEXT NOT NULL REFERENCES policies (policy_id),
    attached TEXT NOT NULL,
    PRIMARY KEY (kind, owner_id, policy_id)
);
CREATE INDEX policy_attachments_by_policy ON policy_attachments (policy_id);
CREATE TABLE tags (
    kind TEXT NOT NULL CHECK (kind IN ('user', 'role')),
    owner_id TEXT NOT NULL,
    key TEXT NOT NULL COLLATE NOCASE,
    value TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (kind, owner_id, key)
);
CREATE TABLE mfa_devices (
    serial TEXT PRIMARY KEY COLLATE NOCASE,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    seed TEXT NOT NULL,
    user_id TEXT REFERENCES users (user_id),
    enable_date TEXT,
    last_timecode INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
CREATE INDEX mfa_devices_by_user ON mfa_devices (user_id);
CREATE TABLE token_keys (
    key_id INTEGER PRIMARY KEY,
    key BLOB NOT NULL CHECK (length(key) = 32),
    created TEXT NOT NULL
);
CREATE TABLE revocations (
    kind TEXT NOT NULL CHECK (kind IN ('role', 'user')),
    name TEXT NOT NULL COLLATE NOCASE,
    revoked_before TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
"""

# v2: failed MFA codes per device (sts_backend.mfa: the lockout rule), kept across restarts.
_V2 = """
CREATE TABLE mfa_failures (
    serial TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first_failure REAL NOT NULL,
    locked_until REAL NOT NULL,
    lockouts INTEGER NOT NULL
);
"""

# v3: the IAM policy surface. Permission boundaries (a managed policy's ARN) of users and
# roles, indexed for a policy's PermissionsBoundaryUsageCount; the unique ids the principals of a role's trust policy had when it was saved (JSON
# object ARN -> id), so a deleted and re-created principal is not trusted; MFA devices whose
# sessions were ended (deactivation); OpenID Connect providers for AssumeRoleWithWebIdentity
# (client ids, thumbprints and tags as JSON lists).
_V3 = """
ALTER TABLE users ADD COLUMN permissions_boundary TEXT;
ALTER TABLE roles ADD COLUMN permissions_boundary TEXT;
CREATE INDEX users_by_boundary ON users (permissions_boundary);
CREATE INDEX roles_by_boundary ON roles (permissions_boundary);
ALTER TABLE roles ADD COLUMN trust_principal_ids TEXT NOT NULL DEFAULT '{}';
CREATE TABLE mfa_revocations (
    serial TEXT PRIMARY KEY COLLATE NOCASE,
    revoked_before TEXT NOT NULL
);
CREATE TABLE oidc_providers (
    arn TEXT PRIMARY KEY,
    url TEXT NOT NULL UNIQUE COLLATE NOCASE,
    client_ids TEXT NOT NULL DEFAULT '[]',
    thumbprints TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '[]',
    created TEXT NOT NULL
);
"""



def _v4_resolve_trust_principals(conn: sqlite3.Connection) -> None:
    """v4: record the unique ids of the users and roles that the trust policies saved before v3
    name, as CreateRole now does, so an upgraded data dir gets the same protection: from
    here on, a principal deleted and re-created under its name is not trusted. (A name that
    was already re-created before the upgrade cannot be told apart; it keeps its trust.)"""
    account = conn.execute("SELECT account_id FROM account").fetchone()
    if account is None:
        return
    prefix = f"arn:aws:iam::{account[0]}:"
    tables = {"user/": ("users", "user_id"), "role/": ("roles", "role_id")}
    for role_id, document in conn.execute(
            "SELECT role_id, trust_policy FROM roles WHERE trust_principal_ids = '{}'").fetchall():
        found: dict[str, str] = {}
        try:
            statements = json.loads(document)["Statement"]
        except (ValueError, KeyError, TypeError):
            continue
        for st in statements if isinstance(statements, list) else [statements]:
            principal = st.get("Principal") if isinstance(st, dict) else None
            aws = principal.get("AWS", []) if isinstance(principal, dict) else []
            for arn in aws if isinstance(aws, list) else [aws]:
                kind = next((k for k in tables if isinstance(arn, str) and arn.startswith(prefix + k)), None)
                if kind is None:
                    continue
                table, id_col = tables[kind]
                row = conn.execute(f"SELECT {id_col}, arn FROM {table} WHERE name = ?",
                                   (arn.rsplit("/", 1)[-1],)).fetchone()
                if row is not None and row[1].lower() == arn.lower():
                    found[arn] = row[0]
        if found:
            conn.execute("UPDATE roles SET trust_principal_ids = ? WHERE role_id = ?", (json.dumps(found), role_id))


# v5: the order access keys were created in, as a column both engines have (it was SQLite's
# rowid; ListAccessKeys breaks ties of the same creation time by it).
_V5 = """
ALTER TABLE access_keys ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE access_keys SET seq = rowid;
"""

# A migration is SQL (statements run in order) or a function of the connection.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (_V1, _V2, _V3, _v4_resolve_trust_principals,
                                                                       _V5)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The number of migrations applied to ``conn``'s database."""
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration ``conn`` lacks; idempotent. Returns the final version.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Each step runs
    in ``BEGIN IMMEDIATE`` and re-reads ``user_version`` inside the transaction, so
    two processes migrating at once apply each step exactly once.

    Raises:
        RuntimeError: the database is newer than this code (a downgrade).
    """
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(conn)
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"database schema version {version} is newer than this rolecall ({SCHEMA_VERSION})")
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return version
            step = MIGRATIONS[version]
            if callable(step):
                step(conn)
            else:
                for statement in _statements(step):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would COMMIT on its own)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements

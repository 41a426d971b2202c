"""The PostgreSQL engine's schema, as an ordered list of migrations.

The table ``rolecall_schema`` holds how many of ``MIGRATIONS`` have been applied.
``rolecall backend init --database URL`` applies the missing ones (``migrate``),
each in its own transaction under the engine's advisory lock, so two replicas or
an operator running ``init`` twice never apply one twice. ``serve`` and every
other command only check the version (``version``) and refuse one they do not
know. Append new migrations; never edit one that has shipped.

It is the SQLite schema (``store_schema``) at its current version, in this
dialect: names IAM compares without case (users, groups, roles, managed
policies, tag keys, MFA serials, aliases, provider URLs) are ``citext``
(case-insensitive equality and uniqueness, as SQLite's ``COLLATE NOCASE``); every
text column sorts with ``COLLATE "C"`` (byte order, SQLite's default), so both
engines list in the same order whatever the database's locale; ``bytea`` for the
token keys; identity columns where SQLite had an integer primary key.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "version"]

_T = 'text COLLATE "C"'
_CI = 'citext COLLATE "C"'

_V1 = f"""
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE account (
    singleton integer PRIMARY KEY CHECK (singleton = 1),
    account_id {_T} NOT NULL CHECK (length(account_id) = 12),
    created {_T} NOT NULL,
    revocation_epoch bigint NOT NULL DEFAULT 0
);
CREATE TABLE settings (
    name {_T} PRIMARY KEY,
    value bigint NOT NULL
);
CREATE TABLE account_aliases (
    alias {_CI} PRIMARY KEY
);
CREATE TABLE users (
    user_id {_T} PRIMARY KEY,
    name {_CI} NOT NULL UNIQUE,
    path {_T} NOT NULL,
    arn {_T} NOT NULL,
    created {_T} NOT NULL,
    permissions_boundary {_T}
);
CREATE INDEX users_by_boundary ON users (permissions_boundary);
CREATE TABLE access_keys (
    access_key_id {_T} PRIMARY KEY,
    user_id {_T} NOT NULL REFERENCES users (user_id),
    secret {_T} NOT NULL,
    status {_T} NOT NULL CHECK (status IN ('Active', 'Inactive', 'Expired')),
    created {_T} NOT NULL,
    last_used {_T},
    last_service {_T},
    last_region {_T},
    seq bigint NOT NULL DEFAULT 0
);
CREATE INDEX access_keys_by_user ON access_keys (user_id);
CREATE TABLE groups (
    group_id {_T} PRIMARY KEY,
    name {_CI} NOT NULL UNIQUE,
    path {_T} NOT NULL,
    arn {_T} NOT NULL,
    created {_T} NOT NULL
);
CREATE TABLE group_members (
    group_id {_T} NOT NULL REFERENCES groups (group_id),
    user_id {_T} NOT NULL REFERENCES users (user_id),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id);
CREATE TABLE roles (
    role_id {_T} PRIMARY KEY,
    name {_CI} NOT NULL UNIQUE,
    path {_T} NOT NULL,
    arn {_T} NOT NULL,
    trust_policy {_T} NOT NULL,
    max_session_duration bigint NOT NULL,
    description {_T} NOT NULL DEFAULT '',
    created {_T} NOT NULL,
    last_used {_T},
    last_used_region {_T},
    permissions_boundary {_T},
    trust_principal_ids {_T} NOT NULL DEFAULT '{{}}'
);
CREATE INDEX roles_by_boundary ON roles (permissions_boundary);
CREATE TABLE inline_policies (
    kind {_T} NOT NULL CHECK (kind IN ('user', 'group', 'role')),
    owner_id {_T} NOT NULL,
    name {_T} NOT NULL,
    document {_T} NOT NULL,
    size bigint NOT NULL,
    PRIMARY KEY (kind, owner_id, name)
);
CREATE TABLE policies (
    policy_id {_T} PRIMARY KEY,
    name {_CI} NOT NULL UNIQUE,
    path {_T} NOT NULL,
    arn {_T} NOT NULL UNIQUE,
    description {_T} NOT NULL DEFAULT '',
    created {_T} NOT NULL,
    updated {_T} NOT NULL,
    default_version bigint NOT NULL,
    next_version bigint NOT NULL
);
CREATE TABLE policy_versions (
    policy_id {_T} NOT NULL REFERENCES policies (policy_id) ON DELETE CASCADE,
    version bigint NOT NULL,
    document {_T} NOT NULL,
    created {_T} NOT NULL,
    PRIMARY KEY (policy_id, version)
);
CREATE TABLE policy_attachments (
    kind {_T} NOT NULL CHECK (kind IN ('user', 'group', 'role')),
    owner_id {_T} NOT NULL,
    policy_id {_T} NOT NULL REFERENCES policies (policy_id),
    attached {_T} NOT NULL,
    PRIMARY KEY (kind, owner_id, policy_id)
);
CREATE INDEX policy_attachments_by_policy ON policy_attachments (policy_id);
CREATE TABLE tags (
    kind {_T} NOT NULL CHECK (kind IN ('user', 'role')),
    owner_id {_T} NOT NULL,
    key {_CI} NOT NULL,
    value {_T} NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (kind, owner_id, key)
);
CREATE TABLE mfa_devices (
    serial {_CI} PRIMARY KEY,
    name {_T} NOT NULL,
    path {_T} NOT NULL,
    seed {_T} NOT NULL,
    user_id {_T} REFERENCES users (user_id),
    enable_date {_T},
    last_timecode bigint NOT NULL DEFAULT 0,
    created {_T} NOT NULL
);
CREATE INDEX mfa_devices_by_user ON mfa_devices (user_id);
CREATE TABLE mfa_failures (
    serial {_T} PRIMARY KEY,
    failures bigint NOT NULL,
    first_failure double precision NOT NULL,
    locked_until double precision NOT NULL,
    lockouts bigint NOT NULL
);
CREATE TABLE mfa_revocations (
    serial {_CI} PRIMARY KEY,
    revoked_before {_T} NOT NULL
);
CREATE TABLE token_keys (
    key_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    key bytea NOT NULL CHECK (octet_length(key) = 32),
    created {_T} NOT NULL
);
CREATE TABLE revocations (
    kind {_T} NOT NULL CHECK (kind IN ('role', 'user')),
    name {_CI} NOT NULL,
    revoked_before {_T} NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE oidc_providers (
    arn {_T} PRIMARY KEY,
    url {_CI} NOT NULL UNIQUE,
    client_ids {_T} NOT NULL DEFAULT '[]',
    thumbprints {_T} NOT NULL DEFAULT '[]',
    tags {_T} NOT NULL DEFAULT '[]',
    created {_T} NOT NULL
)
"""

MIGRATIONS: tuple[str, ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)


def version(conn: Any) -> int | None:
    """The applied version of the database behind ``conn`` (a psycopg connection); None: no schema."""
    if conn.execute("SELECT to_regclass('rolecall_schema')").fetchone()[0] is None:
        return None
    row = conn.execute("SELECT version FROM rolecall_schema").fetchone()
    return 0 if row is None else row[0]


def migrate(conn: Any, lock_id: int) -> tuple[int, int]:
    """Apply every migration the database lacks, in one transaction per step under the advisory
    lock ``lock_id``; returns (version before, version after).

    Raises:
        RuntimeError: the database's schema is newer than this code (a downgrade).
    """
    before = None
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
            conn.execute("CREATE TABLE IF NOT EXISTS rolecall_schema (version integer NOT NULL)")
            row = conn.execute("SELECT version FROM rolecall_schema").fetchone()
            if row is None:
                conn.execute("INSERT INTO rolecall_schema (version) VALUES (0)")
            current = 0 if row is None else row[0]
            before = current if before is None else before
            if current > SCHEMA_VERSION:
                raise RuntimeError(f"the database's schema version {current} is newer than this rolecall's "
                                   f"({SCHEMA_VERSION}): upgrade rolecall")
            if current == SCHEMA_VERSION:
                return before, current
            for statement in MIGRATIONS[current].split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("UPDATE rolecall_schema SET version = %s", (current + 1,))

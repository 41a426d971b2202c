"""The repository ``store_api.Identities``: users, groups and membership, roles, tags.

Every method raises the AWS error the IAM API would (``iam_errors``); checks and
writes share one ``SqlDb.tx`` so they hold across processes. Deleting a user
or role can revoke live sessions: it bumps the revocation epoch in the same
transaction.
"""

from __future__ import annotations

import dataclasses
import json

from sts_backend import iam_errors as err
from sts_backend import ids
from sts_backend.iam_records import Group
from sts_backend.records import Role, User
from sts_backend.store_core import from_ts
from sts_backend.store_sql import ENTITY_TABLES, Row, SqlDb

_USER_COLS = "name, user_id, arn, path, created"
_ROLE_COLS = ("name, role_id, arn, path, trust_policy, max_session_duration, description, created, "
              "trust_principal_ids")


def user_from_row(row: Row) -> User:
    return User(user_name=row[0], user_id=row[1], arn=row[2], path=row[3], create_date=from_ts(row[4]))


def role_from_row(row: Row) -> Role:
    return Role(role_name=row[0], role_id=row[1], arn=row[2], path=row[3], assume_role_policy=row[4],
                max_session_duration=row[5], description=row[6], create_date=from_ts(row[7]))


def group_from_row(row: Row) -> Group:
    return Group(group_name=row[0], group_id=row[1], arn=row[2], path=row[3], create_date=from_ts(row[4]))


class SqlIdentities:
    """Users, groups, roles, tags."""

    def __init__(self, db: SqlDb) -> None:
        self._db = db

    def user(self, user_name: str) -> User | None:
        """A user by name (case-insensitive), or None."""
        row = self._db.one(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (user_name,))
        return None if row is None else user_from_row(row)

    def role(self, role_name: str) -> Role | None:
        """A role by name (case-insensitive), or None."""
        row = self._db.one(f"SELECT {_ROLE_COLS} FROM roles WHERE name = ?", (role_name,))
        return None if row is None else self._role_from_row(row)

    def _role_from_row(self, row: Row) -> Role:
        """A role row as IAM shows it: in its trust policy, a principal deleted since the policy
        was saved appears as the unique id it had (``trust_as_shown``)."""
        role = role_from_row(row)
        shown = self.trust_as_shown(role.assume_role_policy, json.loads(row[8] or "{}"))
        return role if shown is role.assume_role_policy else dataclasses.replace(role, assume_role_policy=shown)

    def principal_ids(self, arns: list[str]) -> dict[str, str | None]:
        """The unique id of each user or role ARN of this account (None: there is no such entity)."""
        found: dict[str, str | None] = {}
        for arn in arns:
            kind = "user" if ":user/" in arn else "role"
            table, id_col = ENTITY_TABLES[kind]
            row = self._db.one(f"SELECT {id_col}, arn FROM {table} WHERE name = ?", (arn.rsplit("/", 1)[-1],))
            found[arn] = row[0] if row is not None and row[1].lower() == arn.lower() else None
        return found

    def trust_as_shown(self, document: str, saved_ids: dict[str, str]) -> str:
        """``document`` with every principal ARN whose entity no longer has the id it had when the
        policy was saved replaced by that id, as IAM shows it [IUG:reference_policies_elements_principal].

        The id names no live principal, so the grant is gone: a user or role deleted and
        re-created under the same name is not trusted. Returns ``document`` itself when
        nothing is stale (the common case: one small query per named principal).
        """
        if not saved_ids:
            return document
        live = self.principal_ids(list(saved_ids))
        stale = {arn: uid for arn, uid in saved_ids.items() if live.get(arn) != uid}
        if not stale:
            return document
        doc = json.loads(document)
        statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
        for st in statements:
            principal = st.get("Principal")
            if isinstance(principal, dict) and "AWS" in principal:
                aws = principal["AWS"]
                principal["AWS"] = ([stale.get(a, a) for a in aws] if isinstance(aws, list) else stale.get(aws, aws))
        return json.dumps(doc)

    # ---- users -------------------------------------------------------------------------

    def create_user(self, name: str, path: str = "/", tags: list[tuple[str, str]] = ()) -> User:
        """Create an IAM user (names unique case-insensitively)."""
        with self._db.tx():
            if self._db.one("SELECT 1 FROM users WHERE name = ?", (name,)):
                raise err.entity_exists("user", name)
            self._db.check_quota("UsersPerAccount", self._db.count("SELECT count(*) FROM users"))
            user_id = ids.new_unique_id("user")
            self._db.conn.execute("INSERT INTO users (user_id, name, path, arn, created) VALUES (?, ?, ?, ?, ?)",
                                  (user_id, name, path, ids.user_arn(self._db.account_id, name, path), self._db.now()))
            self._put_tags("user", user_id, tags)
        return self.get_user(name)

    def get_user(self, name: str) -> User:
        """The user ``name``, or NoSuchEntity."""
        row = self._db.one(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (name,))
        if row is None:
            raise err.no_such_entity("user", name)
        return user_from_row(row)

    def list_users(self, path_prefix: str = "/") -> list[User]:
        """Users whose path starts with ``path_prefix``, by name."""
        rows = self._db.all(f"SELECT {_USER_COLS} FROM users WHERE substr(path, 1, length(?)) = ? "
                            "ORDER BY name COLLATE NOCASE", (path_prefix, path_prefix))
        return [user_from_row(r) for r in rows]

    def delete_user(self, name: str) -> None:
        """Delete a user that has nothing left attached (else DeleteConflict)."""
        with self._db.tx():
            user_id, _ = self._db.entity("user", name)
            checks = (
                ("SELECT count(*) FROM access_keys WHERE user_id = ?", "delete access keys"),
                ("SELECT count(*) FROM mfa_devices WHERE user_id = ?", "delete MFA device"),
                ("SELECT count(*) FROM inline_policies WHERE kind = 'user' AND owner_id = ?", "delete policies"),
                ("SELECT count(*) FROM policy_attachments WHERE kind = 'user' AND owner_id = ?",
                 "detach all policies"),
                ("SELECT count(*) FROM group_members WHERE user_id = ?", "remove users from group"),
            )
            for sql, what in checks:
                if self._db.count(sql, (user_id,)):
                    raise err.delete_conflict(what)
            self._db.conn.execute("DELETE FROM tags WHERE kind = 'user' AND owner_id = ?", (user_id,))
            self._db.conn.execute("DELETE FROM users WHERE user_id = ?", (user_id,))
            self._db.bump_epoch()

    # ---- groups ------------------------------------------------------------------------

    def create_group(self, name: str, path: str = "/") -> Group:
        """Create a group (names unique case-insensitively)."""
        with self._db.tx():
            if self._db.one("SELECT 1 FROM groups WHERE name = ?", (name,)):
                raise err.entity_exists("group", name)
            self._db.check_quota("GroupsPerAccount", self._db.count("SELECT count(*) FROM groups"))
            self._db.conn.execute("INSERT INTO groups (group_id, name, path, arn, created) VALUES (?, ?, ?, ?, ?)",
                                  (ids.new_unique_id("group"), name, path,
                                ids.group_arn(self._db.account_id, name, path), self._db.now()))
        return self.get_group(name)

    def get_group(self, name: str) -> Group:
        """The group ``name``, or NoSuchEntity."""
        row = self._db.one("SELECT name, group_id, arn, path, created FROM groups WHERE name = ?", (name,))
        if row is None:
            raise err.no_such_entity("group", name)
        return group_from_row(row)

    def list_groups(self, path_prefix: str = "/") -> list[Group]:
        """Groups whose path starts with ``path_prefix``, by name."""
        rows = self._db.all("SELECT name, group_id, arn, path, created FROM groups "
                            "WHERE substr(path, 1, length(?)) = ? ORDER BY name COLLATE NOCASE",
                            (path_prefix, path_prefix))
        return [group_from_row(r) for r in rows]

    def delete_group(self, name: str) -> None:
        """Delete an empty group with no policies (else DeleteConflict)."""
        with self._db.tx():
            group_id, _ = self._db.entity("group", name)
            checks = (
                ("SELECT count(*) FROM group_members WHERE group_id = ?", "remove users from group"),
                ("SELECT count(*) FROM inline_policies WHERE kind = 'group' AND owner_id = ?", "delete policies"),
                ("SELECT count(*) FROM policy_attachments WHERE kind = 'group' AND owner_id = ?",
                 "detach all policies"),
            )
            for sql, what in checks:
                if self._db.count(sql, (group_id,)):
                    raise err.delete_conflict(what)
            self._db.conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,))

    def add_user_to_group(self, group_name: str, user_name: str) -> None:
        """Add a user to a group (idempotent); at most ``GroupsPerUser`` (10) groups."""
        with self._db.tx():
            group_id, _ = self._db.entity("group", group_name)
            user_id, _ = self._db.entity("user", user_name)
            if self._db.one("SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?", (group_id, user_id)):
                return
            self._db.check_quota("GroupsPerUser",
                                 self._db.count("SELECT count(*) FROM group_members WHERE user_id = ?", (user_id,)))
            self._db.conn.execute("INSERT INTO group_members (group_id, user_id) VALUES (?, ?)", (group_id, user_id))

    def remove_user_from_group(self, group_name: str, user_name: str) -> None:
        """Remove a member; NoSuchEntity when the user is not in the group."""
        with self._db.tx():
            group_id, _ = self._db.entity("group", group_name)
            user_id, _ = self._db.entity("user", user_name)
            cur = self._db.conn.execute("DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                                        (group_id, user_id))
            if not cur.rowcount:
                raise err.no_such_entity("user", user_name)

    def groups_of_user(self, user_name: str) -> list[Group]:
        """The groups the user belongs to, by name."""
        user_id, _ = self._db.entity("user", user_name)
        rows = self._db.all("SELECT g.name, g.group_id, g.arn, g.path, g.created FROM groups g "
                            "JOIN group_members m USING (group_id) WHERE m.user_id = ? ORDER BY g.name COLLATE NOCASE",
                            (user_id,))
        return [group_from_row(r) for r in rows]

    def members_of_group(self, group_name: str) -> list[User]:
        """The group's users, by name."""
        group_id, _ = self._db.entity("group", group_name)
        rows = self._db.all("SELECT u.name, u.user_id, u.arn, u.path, u.created FROM users u "
                            "JOIN group_members m USING (user_id) WHERE m.group_id = ? ORDER BY u.name COLLATE NOCASE",
                            (group_id,))
        return [user_from_row(r) for r in rows]

    # ---- roles -------------------------------------------------------------------------

    def create_role(self, name: str, trust_policy: str, path: str = "/", max_session_duration: int = 3600,
                    description: str = "", tags: list[tuple[str, str]] = (),
                    principal_ids: dict[str, str] | None = None) -> Role:
        """Create a role; at most ``RolesPerAccount`` (250 by default) roles. ``principal_ids``:
        the unique id of each user/role ARN the trust policy names (``principal_ids()``)."""
        with self._db.tx():
            if self._db.one("SELECT 1 FROM roles WHERE name = ?", (name,)):
                raise err.entity_exists("role", name)
            self._db.check_quota("RolesPerAccount", self._db.count("SELECT count(*) FROM roles"))
            role_id = ids.new_unique_id("role")
            self._db.conn.execute(
                "INSERT INTO roles (role_id, name, path, arn, trust_policy, max_session_duration, description, "
                "created, trust_principal_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (role_id, name, path, ids.role_arn(self._db.account_id, name, path), trust_policy,
                 max_session_duration, description, self._db.now(), json.dumps(principal_ids or {})))
            self._put_tags("role", role_id, tags)
        return self.get_role(name)

    def get_role(self, name: str) -> Role:
        """The role ``name``, or NoSuchEntity."""
        row = self._db.one(f"SELECT {_ROLE_COLS} FROM roles WHERE name = ?", (name,))
        if row is None:
            raise err.no_such_entity("role", name)
        return self._role_from_row(row)

    def list_roles(self, path_prefix: str = "/") -> list[Role]:
        """Roles whose path starts with ``path_prefix``, by name."""
        rows = self._db.all(f"SELECT {_ROLE_COLS} FROM roles WHERE substr(path, 1, length(?)) = ? "
                            "ORDER BY name COLLATE NOCASE", (path_prefix, path_prefix))
        return [self._role_from_row(r) for r in rows]

    def update_role(self, name: str, description: str | None = None,
                    max_session_duration: int | None = None) -> Role:
        """Change a role's description and/or maximum session duration."""
        with self._db.tx():
            role_id, _ = self._db.entity("role", name)
            if description is not None:
                self._db.conn.execute("UPDATE roles SET description = ? WHERE role_id = ?", (description, role_id))
            if max_session_duration is not None:
                self._db.conn.execute("UPDATE roles SET max_session_duration = ? WHERE role_id = ?",
                                      (max_session_duration, role_id))
        return self.get_role(name)

    def update_trust_policy(self, name: str, document: str, principal_ids: dict[str, str] | None = None) -> None:
        """Replace a role's trust (assume-role) policy (``principal_ids`` as for ``create_role``)."""
        with self._db.tx():
            role_id, _ = self._db.entity("role", name)
            self._db.conn.execute("UPDATE roles SET trust_policy = ?, trust_principal_ids = ? WHERE role_id = ?",
                                  (document, json.dumps(principal_ids or {}), role_id))

    def delete_role(self, name: str) -> None:
        """Delete a role with no policies left (else DeleteConflict); revokes its sessions."""
        with self._db.tx():
            role_id, _ = self._db.entity("role", name)
            if self._db.count("SELECT count(*) FROM inline_policies WHERE kind = 'role' AND owner_id = ?", (role_id,)):
                raise err.delete_conflict("delete policies")
            if self._db.count("SELECT count(*) FROM policy_attachments WHERE kind = 'role' AND owner_id = ?",
                              (role_id,)):
                raise err.delete_conflict("detach all policies")
            self._db.conn.execute("DELETE FROM tags WHERE kind = 'role' AND owner_id = ?", (role_id,))
            self._db.conn.execute("DELETE FROM roles WHERE role_id = ?", (role_id,))
            self._db.bump_epoch()

    # ---- tags --------------------------------------------------------------------------

    def _put_tags(self, kind: str, owner_id: str, tags: list[tuple[str, str]]) -> None:
        """Upsert tags (keys case-insensitive; a new value and spelling replace the old)."""
        seq = self._db.count("SELECT coalesce(max(seq), 0) FROM tags WHERE kind = ? AND owner_id = ?", (kind, owner_id))
        for key, value in tags:
            seq += 1
            self._db.conn.execute(
                "INSERT INTO tags (kind, owner_id, key, value, seq) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, owner_id, key) DO UPDATE SET key = excluded.key, value = excluded.value",
                (kind, owner_id, key, value, seq))
        limit = self._db.quota("TagsPerEntity")
        if self._db.count("SELECT count(*) FROM tags WHERE kind = ? AND owner_id = ?", (kind, owner_id)) > limit:
            # UNVERIFIED wording; AWS's form for count quotas.
            raise err.quota_exceeded("TagsPerUser" if kind == "user" else "TagsPerRole", limit)

    def tag(self, kind: str, name: str, tags: list[tuple[str, str]]) -> None:
        """Add or overwrite tags on a user or role (at most 50 in all)."""
        with self._db.tx():
            owner_id, _ = self._db.entity(kind, name)
            self._put_tags(kind, owner_id, tags)

    def untag(self, kind: str, name: str, keys: list[str]) -> None:
        """Remove tags by key (case-insensitive); unknown keys are ignored."""
        with self._db.tx():
            owner_id, _ = self._db.entity(kind, name)
            self._db.conn.executemany("DELETE FROM tags WHERE kind = ? AND owner_id = ? AND key = ?",
                                      [(kind, owner_id, k) for k in keys])

    def tags_of(self, kind: str, name: str) -> list[tuple[str, str]]:
        """A user's or role's tags, in the order they were first set."""
        owner_id, _ = self._db.entity(kind, name)
        return self.tags_of_id(kind, owner_id)

    def tags_of_id(self, kind: str, owner_id: str) -> list[tuple[str, str]]:
        """The tags of the user or role with unique id ``owner_id`` ([] when there is none)."""
        return [(r[0], r[1]) for r in self._db.all(
            "SELECT key, value FROM tags WHERE kind = ? AND owner_id = ? ORDER BY seq", (kind, owner_id))]

"""The repository ``store_api.Policies``: inline and managed policies, versions, attachments, boundaries.

Sizes are counted by the caller (``sts_backend.policy_document.policy_size``: characters
other than whitespace) and stored with each inline policy, so the aggregate
per-entity limit (user 2,048, group 5,120, role 10,240) is checked inside the
write transaction. Version ids are ``v1``, ``v2``, … and never reused.
"""

from __future__ import annotations

from sts_backend import iam_errors as err
from sts_backend import ids
from sts_backend.iam_records import AttachedPolicy, ManagedPolicy, PolicySource, PolicyVersion
from sts_backend.store_core import from_ts
from sts_backend.store_sql import SqlDb

_SIZE_QUOTAS = {"user": "UserPolicySize", "group": "GroupPolicySize", "role": "RolePolicySize"}
_ATTACH_QUOTAS = {"user": "PoliciesPerUser", "group": "PoliciesPerGroup", "role": "PoliciesPerRole"}
_POLICY_COLS = ("p.name, p.policy_id, p.arn, p.path, p.description, p.created, p.updated, p.default_version, "
                "(SELECT count(*) FROM policy_attachments a WHERE a.policy_id = p.policy_id), "
                "(SELECT count(*) FROM users u WHERE u.permissions_boundary = p.arn) + "
                "(SELECT count(*) FROM roles r WHERE r.permissions_boundary = p.arn)")
_BOUNDARY_TABLES = {"user": "users", "role": "roles"}

# Every policy document granting to a user (own inline + attached + those of its groups)
# or a role; managed policies contribute their default version. A user's groups come from
# ``IN (SELECT ... group_members ...)`` rather than a join: without statistics, SQLite
# planned the join from every group's policy rows inward (a scan of all group policies
# per request, 250 us at 100 groups); the subquery makes it start from the user's
# memberships (``group_members_by_user``). bench/backend_scale.py measured it.
_USER_POLICIES = """
SELECT document FROM inline_policies WHERE kind = 'user' AND owner_id = (SELECT user_id FROM users WHERE name = :name)
UNION ALL
SELECT v.document FROM policy_attachments a JOIN policies p USING (policy_id)
  JOIN policy_versions v ON v.policy_id = p.policy_id AND v.version = p.default_version
  WHERE a.kind = 'user' AND a.owner_id = (SELECT user_id FROM users WHERE name = :name)
UNION ALL
SELECT document FROM inline_policies
  WHERE kind = 'group' AND owner_id IN (SELECT group_id FROM group_members
                                        WHERE user_id = (SELECT user_id FROM users WHERE name = :name))
UNION ALL
SELECT v.document FROM policy_attachments a JOIN policies p USING (policy_id)
  JOIN policy_versions v ON v.policy_id = p.policy_id AND v.version = p.default_version
  WHERE a.kind = 'group' AND a.owner_id IN (SELECT group_id FROM group_members
                                            WHERE user_id = (SELECT user_id FROM users WHERE name = :name))
"""
_ROLE_POLICIES = """
SELECT document FROM inline_policies WHERE kind = 'role' AND owner_id = (SELECT role_id FROM roles WHERE name = :name)
UNION ALL
SELECT v.document FROM policy_attachments a JOIN policies p USING (policy_id)
  JOIN policy_versions v ON v.policy_id = p.policy_id AND v.version = p.default_version
  WHERE a.kind = 'role' AND a.owner_id = (SELECT role_id FROM roles WHERE name = :name)
"""


def policy_from_row(row) -> ManagedPolicy:
    return ManagedPolicy(policy_name=row[0], policy_id=row[1], arn=row[2], path=row[3], description=row[4],
                         create_date=from_ts(row[5]), update_date=from_ts(row[6]),
                         default_version_id=f"v{row[7]}", attachment_count=row[8],
                         permissions_boundary_usage_count=row[9])


def _version_number(version_id: str) -> int | None:
    if version_id[:1] in ("v", "V") and version_id[1:].isdigit():
        return int(version_id[1:])
    return None


class SqlPolicies:
    """Inline and managed policies, attachments, boundaries."""

    def __init__(self, db: SqlDb) -> None:
        self._db = db

    # ---- inline ------------------------------------------------------------------------

    def put_inline_policy(self, kind: str, entity: str, policy_name: str, document: str, size: int) -> None:
        """Create or replace an inline policy; the entity's total size must stay in its quota."""
        with self._db.tx():
            owner_id, stored = self._db.entity(kind, entity)
            others = self._db.count("SELECT coalesce(sum(size), 0) FROM inline_policies "
                                    "WHERE kind = ? AND owner_id = ? AND name != ?", (kind, owner_id, policy_name))
            limit = self._db.quota(_SIZE_QUOTAS[kind])
            if others + size > limit:
                raise err.inline_size_exceeded(kind, stored, limit)
            self._db.conn.execute(
                "INSERT INTO inline_policies (kind, owner_id, name, document, size) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, owner_id, name) DO UPDATE SET document = excluded.document, size = excluded.size",
                (kind, owner_id, policy_name, document, size))

    def get_inline_policy(self, kind: str, entity: str, policy_name: str) -> tuple[str, str]:
        """(stored entity name, document) of an inline policy, or NoSuchEntity."""
        owner_id, stored = self._db.entity(kind, entity)
        row = self._db.one("SELECT document FROM inline_policies WHERE kind = ? AND owner_id = ? AND name = ?",
                           (kind, owner_id, policy_name))
        if row is None:
            raise err.no_such_inline_policy(kind, policy_name)
        return stored, row[0]

    def delete_inline_policy(self, kind: str, entity: str, policy_name: str) -> None:
        """Delete an inline policy, or NoSuchEntity."""
        with self._db.tx():
            owner_id, _ = self._db.entity(kind, entity)
            cur = self._db.conn.execute("DELETE FROM inline_policies WHERE kind = ? AND owner_id = ? AND name = ?",
                                        (kind, owner_id, policy_name))
            if not cur.rowcount:
                raise err.no_such_inline_policy(kind, policy_name)

    def inline_policy_names(self, kind: str, entity: str) -> list[str]:
        """Names of the entity's inline policies, sorted."""
        owner_id, _ = self._db.entity(kind, entity)
        return [r[0] for r in self._db.all("SELECT name FROM inline_policies WHERE kind = ? AND owner_id = ? "
                                           "ORDER BY name", (kind, owner_id))]

    # ---- managed -----------------------------------------------------------------------

    def create_policy(self, name: str, document: str, path: str = "/", description: str = "") -> ManagedPolicy:
        """Create a customer managed policy with version v1 as default."""
        with self._db.tx():
            if self._db.one("SELECT 1 FROM policies WHERE name = ?", (name,)):
                raise err.policy_exists(name)
            self._db.check_quota("PoliciesPerAccount", self._db.count("SELECT count(*) FROM policies"))
            policy_id, now = ids.new_unique_id("policy"), self._db.now()
            arn = ids.policy_arn(self._db.account_id, name, path)
            self._db.conn.execute(
                "INSERT INTO policies (policy_id, name, path, arn, description, created, updated, default_version, "
                "next_version) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 2)", (policy_id, name, path, arn, description, now, now))
            self._db.conn.execute("INSERT INTO policy_versions (policy_id, version, document, created) "
                                  "VALUES (?, 1, ?, ?)", (policy_id, document, now))
        return self.get_policy(arn)

    def _policy_id(self, arn: str) -> str:
        row = self._db.one("SELECT policy_id FROM policies WHERE arn = ?", (arn,))
        if row is None:
            raise err.no_such_policy(arn)
        return row[0]

    def get_policy(self, arn: str) -> ManagedPolicy:
        """The managed policy ``arn``, or NoSuchEntity."""
        row = self._db.one(f"SELECT {_POLICY_COLS} FROM policies p WHERE p.arn = ?", (arn,))
        if row is None:
            raise err.no_such_policy(arn)
        return policy_from_row(row)

    def list_policies(self, path_prefix: str = "/", only_attached: bool = False,
                      usage: str | None = None) -> list[ManagedPolicy]:
        """Customer managed policies under ``path_prefix``, by name.

        ``only_attached`` keeps those attached to an entity; ``usage`` (ListPolicies'
        ``PolicyUsageFilter``) those attached as a permissions policy
        (``PermissionsPolicy``) or set as someone's boundary (``PermissionsBoundary``).
        """
        rows = self._db.all(f"SELECT {_POLICY_COLS} FROM policies p WHERE substr(p.path, 1, length(?)) = ? "
                            "ORDER BY p.name COLLATE NOCASE", (path_prefix, path_prefix))
        policies = [policy_from_row(r) for r in rows]
        if only_attached or usage == "PermissionsPolicy":
            policies = [p for p in policies if p.attachment_count]
        if usage == "PermissionsBoundary":
            policies = [p for p in policies if p.permissions_boundary_usage_count]
        return policies

    def delete_policy(self, arn: str) -> None:
        """Delete a managed policy that is detached, nobody's boundary, and has only its default version."""
        with self._db.tx():
            policy_id = self._policy_id(arn)
            if self._db.count("SELECT count(*) FROM policy_attachments WHERE policy_id = ?", (policy_id,)):
                raise err.policy_attached()
            if self.get_policy(arn).permissions_boundary_usage_count:
                raise err.policy_attached()
            if self._db.count("SELECT count(*) FROM policy_versions WHERE policy_id = ?", (policy_id,)) > 1:
                raise err.policy_has_versions()
            self._db.conn.execute("DELETE FROM policies WHERE policy_id = ?", (policy_id,))

    def create_policy_version(self, arn: str, document: str, set_as_default: bool = False) -> PolicyVersion:
        """Add a version (at most ``VersionsPerPolicy``, 5), optionally as the default."""
        with self._db.tx():
            policy_id = self._policy_id(arn)
            limit = self._db.quota("VersionsPerPolicy")
            if self._db.count("SELECT count(*) FROM policy_versions WHERE policy_id = ?", (policy_id,)) >= limit:
                raise err.too_many_versions(limit)
            number = self._db.count("SELECT next_version FROM policies WHERE policy_id = ?", (policy_id,))
            now = self._db.now()
            self._db.conn.execute("INSERT INTO policy_versions (policy_id, version, document, created) "
                                  "VALUES (?, ?, ?, ?)", (policy_id, number, document, now))
            default = "?" if set_as_default else "default_version"
            args = (number, now, policy_id) if set_as_default else (now, policy_id)
            self._db.conn.execute(f"UPDATE policies SET next_version = next_version + 1, default_version = {default}, "
                                  "updated = ? WHERE policy_id = ?", args)
        return self.get_policy_version(arn, f"v{number}")

    def get_policy_version(self, arn: str, version_id: str) -> PolicyVersion:
        """One version of a managed policy, or NoSuchEntity."""
        policy_id = self._policy_id(arn)
        number = _version_number(version_id)
        row = None if number is None else self._db.one(
            "SELECT v.version, v.document, v.version = p.default_version, v.created FROM policy_versions v "
            "JOIN policies p USING (policy_id) WHERE v.policy_id = ? AND v.version = ?", (policy_id, number))
        if row is None:
            raise err.no_such_policy_version(arn, version_id)
        return PolicyVersion(f"v{row[0]}", row[1], bool(row[2]), from_ts(row[3]))

    def policy_versions(self, arn: str) -> list[PolicyVersion]:
        """Every version of a managed policy, newest first."""
        policy_id = self._policy_id(arn)
        rows = self._db.all("SELECT v.version, v.document, v.version = p.default_version, v.created "
                            "FROM policy_versions v JOIN policies p USING (policy_id) WHERE v.policy_id = ? "
                            "ORDER BY v.version DESC", (policy_id,))
        return [PolicyVersion(f"v{r[0]}", r[1], bool(r[2]), from_ts(r[3])) for r in rows]

    def delete_policy_version(self, arn: str, version_id: str) -> None:
        """Delete a non-default version."""
        with self._db.tx():
            version = self.get_policy_version(arn, version_id)
            if version.is_default:
                raise err.default_version_delete()
            self._db.conn.execute("DELETE FROM policy_versions WHERE policy_id = ? AND version = ?",
                                  (self._policy_id(arn), _version_number(version_id)))

    def set_default_policy_version(self, arn: str, version_id: str) -> None:
        """Make ``version_id`` the version that grants."""
        with self._db.tx():
            self.get_policy_version(arn, version_id)
            self._db.conn.execute("UPDATE policies SET default_version = ?, updated = ? WHERE arn = ?",
                                  (_version_number(version_id), self._db.now(), arn))

    # ---- attachments -------------------------------------------------------------------

    def attach_policy(self, kind: str, entity: str, arn: str) -> None:
        """Attach a managed policy (idempotent); at most 10 per user, group or role."""
        with self._db.tx():
            owner_id, _ = self._db.entity(kind, entity)
            row = self._db.one("SELECT policy_id FROM policies WHERE arn = ?", (arn,))
            if row is None:
                raise err.policy_not_attachable(arn)
            if self._db.one("SELECT 1 FROM policy_attachments WHERE kind = ? AND owner_id = ? AND policy_id = ?",
                            (kind, owner_id, row[0])):
                return
            self._db.check_quota(_ATTACH_QUOTAS[kind], self._db.count(
                "SELECT count(*) FROM policy_attachments WHERE kind = ? AND owner_id = ?", (kind, owner_id)))
            self._db.conn.execute("INSERT INTO policy_attachments (kind, owner_id, policy_id, attached) "
                                  "VALUES (?, ?, ?, ?)", (kind, owner_id, row[0], self._db.now()))

    def detach_policy(self, kind: str, entity: str, arn: str) -> None:
        """Detach a managed policy; NoSuchEntity when it is not attached."""
        with self._db.tx():
            owner_id, _ = self._db.entity(kind, entity)
            cur = self._db.conn.execute(
                "DELETE FROM policy_attachments WHERE kind = ? AND owner_id = ? AND policy_id = "
                "(SELECT policy_id FROM policies WHERE arn = ?)", (kind, owner_id, arn))
            if not cur.rowcount:
                raise err.no_such_policy(arn)

    def attached_policies(self, kind: str, entity: str, path_prefix: str = "/") -> list[AttachedPolicy]:
        """The managed policies attached to an entity, by name."""
        owner_id, _ = self._db.entity(kind, entity)
        rows = self._db.all("SELECT p.name, p.arn FROM policy_attachments a JOIN policies p USING (policy_id) "
                            "WHERE a.kind = ? AND a.owner_id = ? AND substr(p.path, 1, length(?)) = ? "
                            "ORDER BY p.name COLLATE NOCASE", (kind, owner_id, path_prefix, path_prefix))
        return [AttachedPolicy(r[0], r[1]) for r in rows]

    def identity_policies(self, kind: str, name: str) -> list[str]:
        """Policy documents granting to a user (incl. its groups) or role; [] if it is gone.

        One query (the entity's id is a scalar subquery, evaluated once): on PostgreSQL
        each query is a round trip on the hot path of every authorized call."""
        sql = _USER_POLICIES if kind == "user" else _ROLE_POLICIES
        return [r[0] for r in self._db.all(sql, {"name": name})]

    # ---- permissions boundaries --------------------------------------------------------

    def set_permissions_boundary(self, kind: str, entity: str, arn: str) -> None:
        """Make managed policy ``arn`` the boundary of a user or role (replacing any);
        NoSuchEntity for an unknown entity or policy."""
        with self._db.tx():
            owner_id, _ = self._db.entity(kind, entity)
            row = self._db.one("SELECT arn FROM policies WHERE arn = ?", (arn,))
            if row is None:
                raise err.policy_not_attachable(arn)
            table, id_col = _BOUNDARY_TABLES[kind], f"{kind}_id"
            self._db.conn.execute(f"UPDATE {table} SET permissions_boundary = ? WHERE {id_col} = ?", (row[0], owner_id))

    def delete_permissions_boundary(self, kind: str, entity: str) -> None:
        """Remove a user's or role's boundary (none set: nothing to do)."""
        with self._db.tx():
            owner_id, _ = self._db.entity(kind, entity)
            table, id_col = _BOUNDARY_TABLES[kind], f"{kind}_id"
            self._db.conn.execute(f"UPDATE {table} SET permissions_boundary = NULL WHERE {id_col} = ?", (owner_id,))

    def permissions_boundary(self, kind: str, entity: str) -> str | None:
        """The ARN of a user's or role's boundary, None without one; NoSuchEntity for an unknown entity."""
        owner_id, _ = self._db.entity(kind, entity)
        table, id_col = _BOUNDARY_TABLES[kind], f"{kind}_id"
        return self._db.one(f"SELECT permissions_boundary FROM {table} WHERE {id_col} = ?", (owner_id,))[0]

    def boundary_document(self, kind: str, name: str) -> tuple[str | None, str | None]:
        """(boundary ARN, its default version's document) of a user or role, for authorization.

        (None, None) without a boundary or entity; (ARN, None) when the policy is gone,
        which the caller must treat as denying everything.
        """
        table = _BOUNDARY_TABLES[kind]
        row = self._db.one(f"SELECT e.permissions_boundary, v.document FROM {table} e "
                           "LEFT JOIN policies p ON p.arn = e.permissions_boundary "
                           "LEFT JOIN policy_versions v ON v.policy_id = p.policy_id AND v.version = p.default_version "
                           "WHERE e.name = ?", (name,))
        return (None, None) if row is None else (row[0], row[1])

    # ---- the policy simulator ----------------------------------------------------------

    def policy_sources(self, kind: str, name: str) -> tuple[list[PolicySource], PolicySource | None]:
        """The policies of a user, group or role for the simulator, and its permissions boundary.

        Returns:
            ``(sources, boundary)``: inline policies by name (kind the owner's:
            "user", "group", "role"), then attached managed policies by name
            ("user-managed", default version); for a user, then its groups' (inline
            "group", managed once each), groups by name. The boundary ("permission-
            boundary") is the managed policy whose ARN is in the entity's
            ``permissions_boundary`` (users and roles; schema v3), or None.

        Raises:
            NoSuchEntity: there is no such entity.
        """
        owner_id, stored = self._db.entity(kind, name)
        owners = [(kind, owner_id, stored)]
        if kind == "user":
            owners += [("group", r[0], r[1]) for r in self._db.all(
                "SELECT g.group_id, g.name FROM group_members m JOIN groups g USING (group_id) "
                "WHERE m.user_id = ? ORDER BY g.name COLLATE NOCASE", (owner_id,))]
        sources: list[PolicySource] = []
        seen: set[str] = set()
        for owner_kind, oid, owner_name in owners:
            sources += [PolicySource(r[0], owner_kind, r[1], "", owner_kind, owner_name) for r in self._db.all(
                "SELECT name, document FROM inline_policies WHERE kind = ? AND owner_id = ? ORDER BY name",
                (owner_kind, oid))]
            for policy_name, arn, document in self._db.all(
                    "SELECT p.name, p.arn, v.document FROM policy_attachments a JOIN policies p USING (policy_id) "
                    "JOIN policy_versions v ON v.policy_id = p.policy_id AND v.version = p.default_version "
                    "WHERE a.kind = ? AND a.owner_id = ? ORDER BY p.name COLLATE NOCASE", (owner_kind, oid)):
                if arn not in seen:
                    seen.add(arn)
                    sources.append(PolicySource(policy_name, "user-managed", document, arn))
        return sources, self._boundary_source(kind, owner_id)

    def _boundary_source(self, kind: str, owner_id: str) -> PolicySource | None:
        if kind not in ("user", "role"):
            return None
        table, id_col = ("users", "user_id") if kind == "user" else ("roles", "role_id")
        row = self._db.one(f"SELECT p.name, p.arn, v.document FROM {table} e "
                           "JOIN policies p ON p.arn = e.permissions_boundary "
                           "JOIN policy_versions v ON v.policy_id = p.policy_id AND v.version = p.default_version "
                           f"WHERE e.{id_col} = ?", (owner_id,))
        return None if row is None else PolicySource(row[0], "permission-boundary", row[2], row[1])

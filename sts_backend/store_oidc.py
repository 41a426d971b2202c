"""The repository ``store_api.OidcProviders``: IAM OpenID Connect providers.

They live in the ``oidc_providers`` table of schema v3.

A provider is keyed by its ARN, ``arn:aws:iam::ACCT:oidc-provider/`` + the URL without
its scheme; the row keeps the URL as registered (with the scheme, so the JWKS is
fetched the way the administrator said). Client ids, thumbprints and tags are JSON
lists. Every change is a read-check-write inside one ``SqlDb.tx``, so the quota and the
uniqueness of a URL hold across processes.
"""

from __future__ import annotations

import json

from sts_backend import iam_errors as err
from sts_backend.iam_records import OidcProvider
from sts_backend.store_core import from_ts
from sts_backend.store_sql import SqlDb

_OIDC_COLS = "arn, url, client_ids, thumbprints, tags, created"


def oidc_from_row(row) -> OidcProvider:
    return OidcProvider(arn=row[0], url=row[1], client_ids=tuple(json.loads(row[2])),
                        thumbprints=tuple(json.loads(row[3])),
                        tags=tuple((k, v) for k, v in json.loads(row[4])), create_date=from_ts(row[5]))


class SqlOidcProviders:
    """OpenID Connect providers."""

    def __init__(self, db: SqlDb) -> None:
        self._db = db

    def create_oidc_provider(self, arn: str, url: str, client_ids: list[str], thumbprints: list[str],
                             tags: list[tuple[str, str]]) -> OidcProvider:
        """Register a provider; EntityAlreadyExists for its URL, LimitExceeded past the account's quota."""
        with self._db.tx():
            if self._db.one("SELECT 1 FROM oidc_providers WHERE arn = ? OR url = ?", (arn, url)):
                raise err.oidc_provider_exists(url)
            self._db.check_quota("OpenIdConnectProvidersPerAccount",
                                 self._db.count("SELECT count(*) FROM oidc_providers"))
            self._db.conn.execute(
                f"INSERT INTO oidc_providers ({_OIDC_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                (arn, url, json.dumps(list(client_ids)), json.dumps(list(thumbprints)),
                 json.dumps([list(t) for t in tags]), self._db.now()))
        return self.get_oidc_provider(arn)

    def oidc_provider(self, arn: str) -> OidcProvider | None:
        """The provider ``arn``, or None."""
        row = self._db.one(f"SELECT {_OIDC_COLS} FROM oidc_providers WHERE arn = ?", (arn,))
        return None if row is None else oidc_from_row(row)

    def get_oidc_provider(self, arn: str) -> OidcProvider:
        """The provider ``arn``, or NoSuchEntity."""
        found = self.oidc_provider(arn)
        if found is None:
            raise err.no_such_oidc_provider(arn)
        return found

    def oidc_providers(self) -> list[OidcProvider]:
        """Every provider, by ARN."""
        return [oidc_from_row(r) for r in self._db.all(f"SELECT {_OIDC_COLS} FROM oidc_providers ORDER BY arn")]

    def delete_oidc_provider(self, arn: str) -> None:
        """Remove the provider, or NoSuchEntity."""
        with self._db.tx():
            if not self._db.conn.execute("DELETE FROM oidc_providers WHERE arn = ?", (arn,)).rowcount:
                raise err.no_such_oidc_provider(arn)

    def update_oidc_provider(self, arn: str, change) -> OidcProvider:
        """Apply ``change(provider) -> (client_ids, thumbprints, tags)`` atomically (it may raise)."""
        with self._db.tx():
            client_ids, thumbprints, tags = change(self.get_oidc_provider(arn))
            self._db.conn.execute("UPDATE oidc_providers SET client_ids = ?, thumbprints = ?, tags = ? WHERE arn = ?",
                                  (json.dumps(list(client_ids)), json.dumps(list(thumbprints)),
                                json.dumps([list(t) for t in tags]), arn))
        return self.get_oidc_provider(arn)

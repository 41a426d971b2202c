"""Request authentication: who signed this request, and may such a caller call this action?

Theory of operation
-------------------
``Authenticator.authenticate`` runs ``wire.sigv4.verify`` with a ``lookup_secret``
that resolves the signing key:

- ``AKIA…`` (long-term): the key must exist in the store and be ``Active``;
  a session token sent with it is refused.
- ``ASIA…`` (temporary): the ``X-Amz-Security-Token`` is unsealed
  (``sts_backend.tokens``; AES-GCM, no database read), its clear access key id must
  equal the signing key id (constant time), and it must not have expired
  (``ExpiredToken``, 403). The secret comes out of the token itself.

Only after the signature checks out is a temporary credential checked against
revocation (role deleted or recreated, source key deactivated or deleted, MFA device
deactivated, sessions revoked): ``store.session_revoked`` answers are cached per
session and dropped whenever ``store.revocation_epoch()`` moves, so a busy session
costs one tiny query per call. A revoked session still authenticates — it is a valid
principal, and GetCallerIdentity answers it as AWS answers every valid principal —
but ``principal_policies`` gives it an explicit deny-all, as AWS's
``AWSRevokeOlderSessions`` policy does [IUG:id_roles_use_revoke-sessions]: every
authorized call is AccessDenied.

Token keys: the key set is re-read at most once a second (``KEY_CHECK_INTERVAL``,
``store.token_keys`` costs a ``PRAGMA data_version`` when nothing changed), so a key
retired by ``rolecall backend retire-token-key`` in another process stops opening
tokens here within that interval; the cache of opened sessions is emptied whenever
the key set changes, so it never outlives the key that opened a session.

``check_call`` then applies the rules of sts-iam.md §5 that depend only on the
kind of credential, before any policy is read: GetSessionToken credentials
without MFA are not accepted by IAM (``InvalidClientTokenId``), session
credentials may not mint GetSessionToken/GetFederationToken credentials, and so on.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from dataclasses import dataclass
from typing import Any

from sts_backend import ids, tokens
from sts_backend.errors import AccessDenied, ExpiredToken, InvalidClientTokenId, SenderError
from sts_backend.policy import RequestContext, build_request_context
from sts_backend.policy_document import Policy, PolicyKind, parse_policy
from sts_backend.records import AccessKey, PrincipalKind, Session, StsStore
from wire.clock import WallClock
from wire.http import HttpRequest
from wire.sigv4 import SigV4Error, UnknownAccessKey, verify

__all__ = ["Authenticator", "KEY_CHECK_INTERVAL", "Principal", "SERVICES", "UNSIGNED_ACTIONS", "check_call",
           "managed_document", "principal_arn_key", "principal_policies", "principal_tags", "request_context",
           "unsigned_call"]

SERVICES = frozenset({"sts", "iam"})
UNSIGNED_ACTIONS = frozenset({"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"})
_SESSION_KINDS: dict[str, PrincipalKind] = {
    "AssumeRole": "assumed-role", "AssumeRoleWithWebIdentity": "assumed-role",
    "AssumeRoleWithSAML": "assumed-role", "GetFederationToken": "federated-user",
    "GetSessionToken": "user",
}
# STS actions each kind of temporary credential may call (GetCallerIdentity: everyone).
_STS_ALLOWED = {
    "GetSessionToken": frozenset({"AssumeRole", "GetCallerIdentity"}),
    "GetFederationToken": frozenset({"GetCallerIdentity"}),
}
_NOT_WITH_ROLE_SESSION = frozenset({"GetSessionToken", "GetFederationToken"})
_CACHE_LIMIT = 4096
KEY_CHECK_INTERVAL = dt.timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller of one request.

    ``user_name`` is the IAM user behind the credential: the owner of a long-term
    key, or the user who called GetSessionToken/GetFederationToken ("" for root).
    ``session`` is set for temporary credentials, None for long-term keys.
    ``revoked``: a session whose role, source key, user or MFA device was deleted or
    deactivated, or whose sessions were revoked; it may call GetCallerIdentity only.
    ``source_ip`` and ``secure_transport`` describe the connection the request came on.
    """

    kind: PrincipalKind
    arn: str
    account_id: str
    user_id: str
    access_key_id: str
    user_name: str | None
    service: str
    region: str
    session: Session | None = None
    revoked: bool = False
    source_ip: str | None = None
    secure_transport: bool = False

    @property
    def temporary(self) -> bool:
        """True for credentials minted by STS."""
        return self.session is not None


# The longest life each kind of session can be given (sts.py's limits), so a sealed token that
# claims more was not made by this backend's rules, whatever its seal says.
MAX_LIFETIME = {"GetSessionToken": dt.timedelta(hours=36), "GetFederationToken": dt.timedelta(hours=36),
                "AssumeRole": dt.timedelta(hours=12), "AssumeRoleWithWebIdentity": dt.timedelta(hours=12),
                "AssumeRoleWithSAML": dt.timedelta(hours=12)}
CHAINED_LIFETIME = dt.timedelta(hours=1)
ISSUE_SKEW = dt.timedelta(minutes=5)  # replicas' clocks may differ this much


def plausible(session: Session, now: dt.datetime) -> bool:
    """False for a session issued in the future, or living longer than its kind ever may.

    A valid seal proves the token came from a holder of a sealing key; these
    checks bound what a leaked or misused key (or a clock that was wrong when the
    token was minted) can make the backend accept.
    """
    if session.issued_at > now + ISSUE_SKEW:
        return False
    limit = CHAINED_LIFETIME if session.chained else MAX_LIFETIME.get(session.kind, dt.timedelta(hours=12))
    return session.expires_at - session.issued_at <= limit + dt.timedelta(seconds=1)


class Authenticator:
    """Verifies SigV4 requests against one store; keeps small caches between calls."""

    def __init__(self, store: StsStore, clock: WallClock, *, secure_transport: bool = False) -> None:
        self._store = store
        self._clock = clock
        self._secure = secure_transport
        self._keys: dict[int, bytes] = store.token_keys()[1]
        self._keys_checked = clock.now()
        self._sessions: dict[str, Session] = {}
        self._revoked: dict[str, bool] = {}
        self._epoch = store.revocation_epoch()

    def authenticate(self, req: HttpRequest, now: dt.datetime | None = None) -> Principal:
        """Verify ``req``'s signature and resolve its caller.

        Raises:
            SenderError: missing, malformed or wrong signature, or clock skew (``wire.sigv4``'s
                errors, mapped here at the edge to their AWS code and status).
            InvalidClientTokenId: unknown/inactive key, bad or revoked session token.
            ExpiredToken: a session token past its expiry.
        """
        now = now or self._clock.now()
        found: list = []

        def lookup_secret(access_key_id: str, token: str | None) -> str | None:
            if access_key_id.startswith("ASIA"):
                session = self._session(access_key_id, token, now)
                found.append(session)
                return session.secret_access_key
            key = self._long_term_key(access_key_id, token)
            found.append(key)
            return None if key is None else key.secret_access_key

        try:
            verified = verify(req.method, req.path, req.query, req.headers, req.body, lookup_secret, now)
        except UnknownAccessKey as exc:
            raise InvalidClientTokenId(exc.message) from None
        except SigV4Error as exc:
            raise SenderError(exc.code, exc.message, exc.http_status) from None
        if verified.service not in SERVICES:
            raise SenderError("SignatureDoesNotMatch", "Credential should be scoped to correct service: 'sts'. ",
                              403)
        where = (verified.service, verified.region, req.peer[0] if req.peer else None, self._secure)
        if isinstance(found[0], Session):
            revoked = self._revoked_session(found[0], verified.session_token or "")
            return self._session_principal(found[0], *where, revoked)
        self._store.record_key_use(verified.access_key_id, verified.service, verified.region, now)
        return self._key_principal(found[0], *where)

    # -- temporary credentials -------------------------------------------------------------

    def _session(self, access_key_id: str, token: str | None, now: dt.datetime) -> Session:
        if not token:
            raise InvalidClientTokenId()
        self._check_keys(now)
        session = self._sessions.get(token)
        if session is None:
            session = self._unseal(token, access_key_id)
        elif not hmac.compare_digest(session.access_key_id.encode(), access_key_id.encode()):
            raise InvalidClientTokenId()
        if now >= session.expires_at:
            raise ExpiredToken()
        if not plausible(session, now):
            raise InvalidClientTokenId()
        return session

    def _check_keys(self, now: dt.datetime) -> None:
        """Follow the store's key set (at most once per ``KEY_CHECK_INTERVAL``): a retired key's
        sessions leave the cache with it."""
        if abs(now - self._keys_checked) < KEY_CHECK_INTERVAL:
            return
        self._keys_checked = now
        keys = self._store.token_keys()[1]
        if keys != self._keys:
            self._keys = keys
            self._sessions.clear()

    def _unseal(self, token: str, access_key_id: str) -> Session:
        """The token's session (a key added since start is loaded on a miss)."""
        try:
            session = tokens.unseal(token, self._keys, access_key_id)
        except InvalidClientTokenId:
            keys = self._store.token_keys(fresh=True)[1]   # a key added since, here or on another replica?
            if keys == self._keys:
                raise
            self._keys = keys
            self._sessions.clear()   # the new set may lack a retired key too
            session = tokens.unseal(token, keys, access_key_id)
        if len(self._sessions) >= _CACHE_LIMIT:
            self._sessions.clear()
        self._sessions[token] = session
        return session

    def _revoked_session(self, session: Session, token: str) -> bool:
        epoch = self._store.revocation_epoch()
        if epoch != self._epoch or len(self._revoked) >= _CACHE_LIMIT:
            self._revoked.clear()
            self._epoch = epoch
        revoked = self._revoked.get(token)
        if revoked is None:
            revoked = self._revoked[token] = self._store.session_revoked(session)
        return revoked

    @staticmethod
    def _session_principal(session: Session, service: str, region: str, source_ip: str | None, secure: bool,
                           revoked: bool) -> Principal:
        kind = _SESSION_KINDS[session.kind]
        if kind == "user" and session.source_user_name == "":
            kind = "root"
        return Principal(kind, session.principal_arn, session.account_id, session.user_id,
                         session.access_key_id, session.source_user_name, service, region, session, revoked,
                         source_ip, secure)

    # -- long-term keys -------------------------------------------------------------------

    def _long_term_key(self, access_key_id: str, token: str | None) -> AccessKey | None:
        if token is not None:
            raise InvalidClientTokenId()
        key = self._store.access_key(access_key_id)
        return key if key is not None and key.status == "Active" else None

    def _key_principal(self, key: AccessKey, service: str, region: str, source_ip: str | None,
                       secure: bool) -> Principal:
        account = self._store.account_id()
        if key.user_name == "":
            return Principal("root", ids.root_arn(account), account, account, key.access_key_id, "", service, region,
                             source_ip=source_ip, secure_transport=secure)
        user = self._store.user(key.user_name)
        if user is None:
            raise InvalidClientTokenId()
        return Principal("user", user.arn, account, user.user_id, key.access_key_id, user.user_name, service, region,
                         source_ip=source_ip, secure_transport=secure)


def check_call(principal: Principal, service: str, action: str) -> None:
    """Refuse calls that this kind of credential may never make (sts-iam.md §5).

    Raises:
        InvalidClientTokenId: IAM called with GetSessionToken credentials minted
            without MFA, or with GetFederationToken credentials.
        AccessDenied: an STS action the credential kind does not allow, or
            AssumeRole with root credentials.
    """
    session = principal.session
    if service == "iam":
        if session is not None and (session.kind == "GetFederationToken"
                                    or (session.kind == "GetSessionToken" and not session.mfa_authenticated)):
            raise InvalidClientTokenId()
        return
    if action == "GetCallerIdentity":
        return
    if session is None:
        if principal.kind == "root" and action == "AssumeRole":
            raise AccessDenied("You cannot call AssumeRole by using AWS root account credentials")
        return
    allowed = _STS_ALLOWED.get(session.kind)
    if (allowed is not None and action not in allowed) or action in _NOT_WITH_ROLE_SESSION:
        raise AccessDenied(f"Cannot call {action} with session credentials")


def unsigned_call(action: str) -> SenderError:
    """The answer to an unsigned call AWS accepts unsigned but this backend does not serve."""
    return SenderError("InvalidAction", f"{action} is not supported by this backend: it has no "
                                        "SAML providers to trust")


# ---- authorization inputs ---------------------------------------------------------------------

_DENY_ALL = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]})
_FROM_SESSION = object()


def principal_policies(principal: Principal, store) -> tuple[list[Policy], list[Policy], Policy | None]:
    """(identity policies, session policies, permissions boundary) that decide what ``principal`` may do.

    A role session gets its role's policies and boundary, every other caller its
    IAM user's (root: none; root is allowed everything by the caller of this).
    Both are read now, not when the session was made: a changed boundary applies
    to live sessions [IUG:access_policies_boundaries]. The user's boundary also caps
    its GetSessionToken and GetFederationToken sessions (a session's permissions are
    what the identity policies, the boundary and the session policies all allow).
    Session policies are the inline and managed ones passed when the session was
    made; a GetFederationToken session without any, or a session whose managed
    session policies were all deleted since, gets an explicit deny-all instead, so a
    session policy that disappears never widens a session. A boundary whose policy
    cannot be read is a deny-all too. A revoked session gets an explicit deny-all
    among its identity policies.
    """
    session = principal.session
    if principal.kind == "assumed-role" and session is not None:
        kind, name = "role", session.role_name or ""
    elif principal.user_name:
        kind, name = "user", principal.user_name
    else:
        kind, name = None, ""
    texts = store.identity_policies(kind, name) if kind else []
    if principal.revoked:
        texts = [*texts, _DENY_ALL]
    identity = [parse_policy(t, PolicyKind.IDENTITY) for t in texts]
    boundary = _boundary(store, kind, name) if kind else None
    if session is None:
        return identity, [], boundary
    documents = [session.session_policy] if session.session_policy else []
    for arn in session.policy_arns:
        found = managed_document(store, arn)
        if found is not None:
            documents.append(found)
    wanted = session.session_policy or session.policy_arns or session.kind == "GetFederationToken"
    if wanted and not documents:
        documents = [_DENY_ALL]
    return identity, [parse_policy(t, PolicyKind.IDENTITY) for t in documents], boundary


def _boundary(store, kind: str, name: str) -> Policy | None:
    """The entity's permissions boundary, parsed; deny-all when it is set but unreadable."""
    arn, document = store.boundary_document(kind, name)
    if arn is None:
        return None
    return parse_policy(document if document is not None else _DENY_ALL, PolicyKind.IDENTITY)


def managed_document(store, arn: str) -> str | None:
    """The default version of managed policy ``arn``, or None when there is no such policy."""
    try:
        found = store.get_policy(arn)
        return store.get_policy_version(arn, found.default_version_id).document
    except SenderError:
        return None


def principal_tags(principal: Principal, store) -> dict[str, str]:
    """``aws:PrincipalTag`` values: the user's or role's own tags, then the session's tags over
    them (a session tag wins over an entity tag with the same key, case-insensitively)
    [IUG:id_session-tags]. Federated users and root have only their session tags."""
    session = principal.session
    own: list[tuple[str, str]] = []
    if principal.kind == "assumed-role" and session is not None and session.role_id:
        own = store.tags_of_id("role", session.role_id)
    elif principal.kind == "user":
        own = store.tags_of_id("user", principal.user_id)
    merged = {key.lower(): (key, value) for key, value in own}
    if session is not None:
        merged.update((key.lower(), (key, value)) for key, value in session.tags)
    return dict(merged.values())


def principal_arn_key(principal: Principal) -> str | None:
    """``aws:PrincipalArn``: a role session's role ARN with the role's path (None: derive it)."""
    session = principal.session
    if principal.kind == "assumed-role" and session is not None and session.role_name and session.role_path:
        return ids.role_arn(principal.account_id, session.role_name, session.role_path)
    return None


def request_context(principal: Principal, action: str, resource: str, now: dt.datetime, store, *,
                    mfa_present: Any = _FROM_SESSION, mfa_time: dt.datetime | None = None,
                    resource_tags: list[tuple[str, str]] | None = None,
                    extra: dict[str, Any] | None = None) -> RequestContext:
    """The policy ``RequestContext`` for ``principal`` asking ``action`` on ``resource``.

    Every global key AWS sets for such a call is there: the principal's ARN (a role
    session's with the role's path), account, type, user name and id; its tags
    (``principal_tags``); the MFA keys, which follow sts-iam.md §8 (absent for
    long-term keys, ``false`` for temporary credentials minted without MFA, ``true``
    plus ``aws:MultiFactorAuthAge`` with it); token issue time, current time, source
    identity, region, ``aws:SourceIp`` and ``aws:SecureTransport``. ``resource_tags``
    (the target user's or role's) become ``aws:ResourceTag/*`` and ``iam:ResourceTag/*``.
    Pass ``mfa_present``/``mfa_time`` to override what the session says (AssumeRole
    with its own MFA code); ``extra`` adds request-specific keys, and wins.
    """
    session = principal.session
    if mfa_present is _FROM_SESSION:
        mfa_present = None if session is None else session.mfa_authenticated
        mfa_time = None if session is None else session.mfa_auth_time
    age = int((now - mfa_time).total_seconds()) if mfa_present and mfa_time is not None else None
    keys: dict[str, Any] = {"aws:SecureTransport": principal.secure_transport, "aws:SourceIp": principal.source_ip}
    for key, value in resource_tags or ():
        keys[f"aws:ResourceTag/{key}"] = keys[f"iam:ResourceTag/{key}"] = value
    keys.update(extra or {})
    return build_request_context(
        action, resource, principal.arn, principal_account=principal.account_id, user_id=principal.user_id,
        role_arn=principal_arn_key(principal), now=now, mfa_present=mfa_present, mfa_age_seconds=age,
        token_issued_at=session.issued_at if session else None,
        source_identity=session.source_identity if session else None, requested_region=principal.region,
        principal_tags=principal_tags(principal, store) or None, extra=keys)

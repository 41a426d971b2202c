"""The STS operations: GetSessionToken, AssumeRole, GetFederationToken, GetCallerIdentity,
GetAccessKeyInfo — pure functions over a verified ``Principal``, the store and a time.

Each takes the typed parameters ``validation.validate`` produced and returns the
``<ActionResult>`` body as a dict in the STS model's member order. The credential
rules that depend only on the kind of credential (sts-iam.md §5) were applied by
``auth.check_call``; what is checked here needs the role, the policies or the MFA
device. Temporary credentials are a fresh ``ASIA`` id and secret plus a session
token that seals the whole ``Session`` (``tokens.seal``): nothing is stored per
session.

Authorization follows sts-iam.md §10: AssumeRole needs the role's trust policy to
allow the caller (and ``sts:TagSession`` / ``sts:SetSourceIdentity`` when tags or a
source identity are passed); the caller's identity policies must allow too unless
the trust policy names the caller itself — and an explicit Deny there always wins.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any, Callable

from sts_backend import ids, mfa, tokens
from sts_backend.auth import Principal, managed_document, principal_policies, request_context
from sts_backend.errors import AccessDenied, MfaLockout, SenderError, ValidationError
from sts_backend.policy import EXPLICIT_DENY, access_denied_message, evaluate, evaluate_trust
from sts_backend.policy_document import PolicyKind, parse_policy
from sts_backend.records import Role, Session, SessionKind, StsStore

__all__ = ["handle_sts", "HANDLERS", "credentials_out", "mint", "packed_percent", "session_limits"]

ROLE_CHAINING_LIMIT = 3600
ROOT_SESSION_LIMIT = 3600
SESSION_POLICY_CHARS = 2048
MAX_POLICY_ARNS = 10
BAD_MFA_CODE = "MultiFactorAuthentication failed with invalid MFA one time pass code."
UNKNOWN_MFA_DEVICE = ("MultiFactorAuthentication failed, unable to validate MFA code. Please verify your MFA "
                      "serial number is valid and associated with this user.")
MFA_PAIR_NEEDED = "MultiFactorAuthentication failed, must provide both MFA serial number and one time pass code."
# While a device is locked out its codes are not even checked (no oracle); the message says so.
MFA_LOCKED = ("MultiFactorAuthentication failed: too many invalid codes for this MFA device; it accepts codes "
              "again after a waiting period.")
OVER_ROLE_MAX = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
OVER_CHAIN_MAX = "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
# AWS documents that both fail but not the error; InvalidParameterValue and these texts are ours.
SOURCE_IDENTITY_SET = "The source identity of a role session cannot be changed: it carries through role chaining."
INHERITED_TAG = ("Session tag {!r} has the same key as a transitive tag inherited from the calling session; "
                 "inherited transitive tags cannot be overridden.")

Handler = Callable[[dict, Principal, StsStore, dt.datetime], dict]


def handle_sts(action: str, params: dict, principal: Principal, store: StsStore, now: dt.datetime) -> dict:
    """Run STS operation ``action`` for ``principal`` at wall time ``now``.

    Returns:
        The result body (model member names, in order).

    Raises:
        SenderError: ``InvalidAction`` for operations this backend does not serve,
            or the operation's own error (AccessDenied, ValidationError, ...).
    """
    handler = HANDLERS.get(action)
    if handler is None:
        raise SenderError("InvalidAction", f"{action} is not supported by this backend")
    return handler(params, principal, store, now)


# ---- GetSessionToken / GetCallerIdentity / GetAccessKeyInfo --------------------------------

def get_session_token(p: dict, principal: Principal, store: StsStore, now: dt.datetime) -> dict:
    """Session credentials for an IAM user (or root, capped at one hour), with MFA state."""
    if principal.temporary:
        raise AccessDenied("Cannot call GetSessionToken with session credentials")
    duration = p.get("DurationSeconds", 43200)
    if principal.kind == "root":
        duration = min(duration, ROOT_SESSION_LIMIT)
    mfa_time = _mfa_from_params(p, principal, store, now)
    session, token = mint(store, "GetSessionToken", principal, now, duration, principal_arn=principal.arn,
                          user_id=principal.user_id, mfa_time=mfa_time,
                          mfa_serial=p["SerialNumber"] if mfa_time is not None else None)
    return {"Credentials": credentials_out(session, token)}


def get_caller_identity(p: dict, principal: Principal, store: StsStore, now: dt.datetime) -> dict:
    """Who is calling: allowed to every valid principal, never denied."""
    return {"UserId": principal.user_id, "Account": principal.account_id, "Arn": principal.arn}


def get_access_key_info(p: dict, principal: Principal, store: StsStore, now: dt.datetime) -> dict:
    """The account of an access key id: ours for our long-term keys and any temporary id."""
    _require_identity_allow(principal, store, now, "sts:GetAccessKeyInfo", "*")
    key_id = p["AccessKeyId"]
    if key_id == principal.access_key_id or key_id.startswith("ASIA") or store.access_key(key_id) is not None:
        return {"Account": store.account_id()}
    raise SenderError("InvalidParameterValue", "The access key ID provided does not exist in our records.")


# ---- AssumeRole ------------------------------------------------------------------------------

def assume_role(p: dict, principal: Principal, store: StsStore, now: dt.datetime) -> dict:
    """Role credentials, after the trust policy and the caller's policies agree."""
    role = _target_role(p["RoleArn"], principal, store)
    chained = principal.temporary
    duration = p.get("DurationSeconds", 3600)
    if chained and duration > ROLE_CHAINING_LIMIT:
        raise ValidationError(OVER_CHAIN_MAX)
    if duration > role.max_session_duration:
        raise ValidationError(OVER_ROLE_MAX)
    policy, policy_arns, tags = session_limits(p, store)
    inherited, transitive = _chained_tags(p, principal.session, tags)
    mfa_present, mfa_time, mfa_serial = _mfa_state(p, principal, store, now)
    source_identity = _chained_source_identity(p, principal.session)
    extra = _trust_keys(p, tags)
    ctx = request_context(principal, "sts:AssumeRole", role.arn, now, store, mfa_present=mfa_present,
                          mfa_time=mfa_time, resource_tags=store.tags_of_id("role", role.role_id), extra=extra)
    _authorize_assume(ctx, principal, role, store, p, tags)
    name = p["RoleSessionName"]
    session, token = mint(
        store, "AssumeRole", principal, now, duration,
        principal_arn=ids.assumed_role_arn(principal.account_id, role.role_name, name),
        user_id=f"{role.role_id}:{name}", role=role, session_name=name, source_identity=source_identity,
        mfa_time=mfa_time if mfa_present else None, mfa_serial=mfa_serial if mfa_present else None,
        chained=chained, policy=policy, policy_arns=policy_arns, tags=inherited + tags,
        transitive_tag_keys=transitive)
    result: dict[str, Any] = {"Credentials": credentials_out(session, token),
                              "AssumedRoleUser": {"AssumedRoleId": session.user_id, "Arn": session.principal_arn}}
    if policy or policy_arns or tags:
        result["PackedPolicySize"] = packed_percent(policy, policy_arns, tags)
    if source_identity:
        result["SourceIdentity"] = source_identity
    return result


def _chained_source_identity(p: dict, parent: Session | None) -> str | None:
    """The new session's source identity: set once, then carried through every chained session
    unchanged [IUG:id_credentials_temp_control-access_monitor]."""
    wanted = p.get("SourceIdentity")
    kept = parent.source_identity if parent is not None else None
    if kept is not None and wanted is not None and wanted != kept:
        raise SenderError("InvalidParameterValue", SOURCE_IDENTITY_SET)
    return kept or wanted


def _chained_tags(p: dict, parent: Session | None, tags: tuple[tuple[str, str], ...]
                  ) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(tags inherited from the calling session, the new session's transitive keys).

    A chained session inherits the caller's transitive session tags, and they stay
    transitive; a tag passed with the same key as an inherited one fails the call
    [IUG:id_session-tags §Chaining roles with session tags; sts-model AssumeRole Tags].
    """
    inherited: tuple[tuple[str, str], ...] = ()
    keys: list[str] = []
    if parent is not None and parent.transitive_tag_keys:
        wanted = {k.lower() for k in parent.transitive_tag_keys}
        inherited = tuple((k, v) for k, v in parent.tags if k.lower() in wanted)
        keys = [k for k, _ in inherited]
        clash = {k.lower() for k, _ in inherited} & {k.lower() for k, _ in tags}
        if clash:
            raise SenderError("InvalidParameterValue", INHERITED_TAG.format(
                next(k for k, _ in inherited if k.lower() in clash)))
    passed = {k.lower() for k, _ in tags}
    for key in p.get("TransitiveTagKeys") or ():
        if key.lower() in passed and key.lower() not in {k.lower() for k in keys}:
            keys.append(next(k for k, _ in tags if k.lower() == key.lower()))
    return inherited, tuple(keys)


def _target_role(arn: str, principal: Principal, store: StsStore) -> Role:
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iam" or not parts[5].startswith("role/"):
        raise ValidationError("Request ARN is invalid")
    role = store.role(parts[5].rsplit("/", 1)[1]) if parts[4] == store.account_id() else None
    if role is None or role.arn.lower() != arn.lower():
        raise AccessDenied(access_denied_message(principal.arn, "sts:AssumeRole", arn))
    return role


def _authorize_assume(ctx, principal: Principal, role: Role, store: StsStore, p: dict, tags) -> None:
    denied = AccessDenied(access_denied_message(principal.arn, "sts:AssumeRole", role.arn))
    trust_policy = parse_policy(role.assume_role_policy, PolicyKind.TRUST)
    trust = evaluate_trust(ctx, trust_policy)
    if not trust.allowed:
        raise denied
    identity, session_policies, boundary = principal_policies(principal, store)
    decision = evaluate(ctx, identity, session_policies=session_policies, permissions_boundary=boundary)
    capped = not decision.allowed and decision.source in ("session", "boundary")
    if decision.reason == EXPLICIT_DENY or (trust.needs_identity_allow and not decision.allowed) \
            or (trust.via_role_arn and capped):
        raise denied
    for action, wanted in (("sts:TagSession", tags), ("sts:SetSourceIdentity", p.get("SourceIdentity"))):
        if wanted and not evaluate_trust(_with_action(ctx, action), trust_policy).allowed:
            raise AccessDenied(access_denied_message(principal.arn, action, role.arn))


def _with_action(ctx, action: str):
    return dataclasses.replace(ctx, action=action)


def _trust_keys(p: dict, tags: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    extra: dict[str, Any] = {"sts:ExternalId": p.get("ExternalId"), "sts:RoleSessionName": p["RoleSessionName"],
                             "sts:SourceIdentity": p.get("SourceIdentity")}
    if tags:
        extra["aws:TagKeys"] = [k for k, _ in tags]
        extra.update({f"aws:RequestTag/{k}": v for k, v in tags})
    if p.get("TransitiveTagKeys"):
        extra["sts:TransitiveTagKeys"] = list(p["TransitiveTagKeys"])
    return extra


# ---- GetFederationToken ----------------------------------------------------------------------

def get_federation_token(p: dict, principal: Principal, store: StsStore, now: dt.datetime) -> dict:
    """Federated-user credentials for a long-term key; no permissions without a session policy."""
    if principal.temporary:
        raise AccessDenied("Cannot call GetFederationToken with session credentials")
    name = p["Name"]
    arn = ids.federated_user_arn(principal.account_id, name)
    _require_identity_allow(principal, store, now, "sts:GetFederationToken", arn)
    duration = p.get("DurationSeconds", 43200)
    if principal.kind == "root":
        duration = min(duration, ROOT_SESSION_LIMIT)
    policy, policy_arns, tags = session_limits(p, store)
    session, token = mint(store, "GetFederationToken", principal, now, duration, principal_arn=arn,
                          user_id=f"{principal.account_id}:{name}", session_name=name, policy=policy,
                          policy_arns=policy_arns, tags=tags)
    result: dict[str, Any] = {"Credentials": credentials_out(session, token),
                              "FederatedUser": {"FederatedUserId": session.user_id, "Arn": arn}}
    if policy or policy_arns or tags:
        result["PackedPolicySize"] = packed_percent(policy, policy_arns, tags)
    return result


def _require_identity_allow(principal: Principal, store: StsStore, now: dt.datetime, action: str,
                            resource: str) -> None:
    if principal.kind == "root" and not principal.revoked:
        return
    identity, session_policies, boundary = principal_policies(principal, store)
    ctx = request_context(principal, action, resource, now, store)
    if not evaluate(ctx, identity, session_policies=session_policies, permissions_boundary=boundary).allowed:
        raise AccessDenied(access_denied_message(principal.arn, action, resource))


# ---- shared pieces ---------------------------------------------------------------------------

def session_limits(p: dict, store: StsStore) -> tuple[str | None, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Session policy (parsed to check it), managed policy ARNs and tags, within their limits."""
    policy = p.get("Policy")
    if policy is not None:
        if len(policy) > SESSION_POLICY_CHARS:
            raise ValidationError(f"1 validation error detected: Value '{policy}' at 'policy' failed to satisfy "
                                  f"constraint: Member must have length less than or equal to {SESSION_POLICY_CHARS}")
        parse_policy(policy, PolicyKind.IDENTITY)
    # ``validation`` requires ``arn`` in every item; indexing (never filtering) keeps a
    # missing one from silently dropping a restriction if that ever changed.
    arns = tuple(d["arn"] for d in p.get("PolicyArns") or ())
    if len(arns) > MAX_POLICY_ARNS:
        raise ValidationError(f"1 validation error detected: Value '[{', '.join(arns)}]' at 'policyArns' failed "
                              f"to satisfy constraint: Member must have length less than or equal to {MAX_POLICY_ARNS}")
    for arn in arns:
        if managed_document(store, arn) is None:
            raise SenderError("InvalidParameterValue", f"Policy {arn} does not exist or is not attachable.")
    tags = tuple((t["Key"], t.get("Value", "")) for t in p.get("Tags") or ())
    if len({k.casefold() for k, _ in tags}) != len(tags):
        raise SenderError("InvalidParameterValue",
                          "Duplicate tag keys found. Please note that Tag keys are case insensitive.")
    if packed_percent(policy, arns, tags) > 100:
        raise SenderError("PackedPolicyTooLarge", "Packed size of the session policies and tags exceeds the "
                          f"allowed size: {packed_percent(policy, arns, tags)}% of the limit.")
    return policy, arns, tags


def packed_percent(policy: str | None, arns: tuple[str, ...], tags: tuple[tuple[str, str], ...]) -> int:
    """How full the session's policy-and-tag budget is, in percent (2,048 characters = 100)."""
    used = len(policy or "") + sum(len(a) for a in arns) + sum(len(k) + len(v) for k, v in tags)
    return math.ceil(100 * used / SESSION_POLICY_CHARS)


def _mfa_from_params(p: dict, principal: Principal, store: StsStore, now: dt.datetime) -> dt.datetime | None:
    """Check SerialNumber/TokenCode when given: the MFA time (now), or None without MFA.

    The caller records ``p["SerialNumber"]`` in the session it mints (``Session.mfa_serial``),
    so deactivating the device ends the session."""
    serial, code = p.get("SerialNumber"), p.get("TokenCode")
    if serial is None and code is None:
        return None
    if serial is None or code is None:
        raise AccessDenied(MFA_PAIR_NEEDED)
    device = store.mfa_device(serial)
    owner = principal.user_name or ""
    if device is None or device.user_name is None or device.user_name.lower() != owner.lower():
        raise AccessDenied(UNKNOWN_MFA_DEVICE)
    failures = store.mfa_failures(serial)
    if mfa.locked(failures, now):
        raise AccessDenied(MFA_LOCKED)
    step = mfa.verify_code(device.seed_base32, code, now, device.last_timecode)
    if step is None or not store.consume_totp(serial, step):
        if store.record_mfa_failure(serial, now):
            raise MfaLockout(BAD_MFA_CODE, serial)
        raise AccessDenied(BAD_MFA_CODE)
    if failures is not None:
        store.clear_mfa_failures(serial)
    return now


def _mfa_state(p: dict, principal: Principal, store: StsStore, now: dt.datetime
               ) -> tuple[bool | None, dt.datetime | None, str | None]:
    """(aws:MultiFactorAuthPresent, MFA time, device serial) for AssumeRole: this call's code,
    else the caller's session."""
    mfa_time = _mfa_from_params(p, principal, store, now)
    if mfa_time is not None:
        return True, mfa_time, p["SerialNumber"]
    session = principal.session
    if session is None:
        return None, None, None
    return session.mfa_authenticated, session.mfa_auth_time, session.mfa_serial


def mint(store: StsStore, kind: SessionKind, principal: Principal, now: dt.datetime, duration: int, *,
         principal_arn: str, user_id: str, role: Role | None = None, session_name: str | None = None,
         source_identity: str | None = None, mfa_time: dt.datetime | None = None,
         mfa_serial: str | None = None, chained: bool = False, policy: str | None = None,
         policy_arns: tuple[str, ...] = (), tags: tuple[tuple[str, str], ...] = (),
         transitive_tag_keys: tuple[str, ...] = ()) -> tuple[Session, str]:
    """A new temporary credential for ``principal``: the ``Session`` and its sealed token."""
    parent = principal.session
    issued = now.replace(microsecond=0)
    session = Session(
        kind=kind, access_key_id=ids.new_access_key_id(temporary=True),
        secret_access_key=ids.new_secret_access_key(), account_id=principal.account_id,
        principal_arn=principal_arn, user_id=user_id, source_user_name=principal.user_name,
        source_access_key_id=parent.source_access_key_id if parent else principal.access_key_id,
        role_name=role.role_name if role else None, role_id=role.role_id if role else None,
        session_name=session_name, source_identity=source_identity, mfa_authenticated=mfa_time is not None,
        mfa_auth_time=mfa_time, issued_at=now, expires_at=issued + dt.timedelta(seconds=duration),
        chained=chained, session_policy=policy, policy_arns=policy_arns, tags=tags,
        transitive_tag_keys=transitive_tag_keys, mfa_serial=mfa_serial,
        role_path=role.path if role else None)
    key_id, keys = store.token_keys()
    return session, tokens.seal(session, key_id, keys[key_id])


def credentials_out(session: Session, token: str) -> dict:
    """The ``Credentials`` structure of a result."""
    return {"AccessKeyId": session.access_key_id, "SecretAccessKey": session.secret_access_key,
            "SessionToken": token, "Expiration": session.expires_at}


HANDLERS: dict[str, Handler] = {
    "GetSessionToken": get_session_token, "AssumeRole": assume_role,
    "GetFederationToken": get_federation_token, "GetCallerIdentity": get_caller_identity,
    "GetAccessKeyInfo": get_access_key_info,
}

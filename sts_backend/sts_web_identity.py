"""AssumeRoleWithWebIdentity: role credentials for a verified OpenID Connect ID token.

The call is unsigned: the token is the caller's proof. In order [sts-model
AssumeRoleWithWebIdentity; IUG:id_roles_providers_oidc]:

1. ``ProviderId`` (OAuth 2.0 access tokens of www.amazon.com and graph.facebook.com) is
   refused: verifying those means asking that provider, which this backend never does;
2. the token's ``iss`` without its scheme names the IAM provider
   (``arn:aws:iam::ACCT:oidc-provider/HOST[/PATH]``); none: InvalidIdentityToken;
3. its signing key comes from the provider's JWKS (``jwks.JwksCache``, may fetch) and
   ``web_identity.verify`` checks signature, times and audience;
4. the role must exist and its trust policy allow ``sts:AssumeRoleWithWebIdentity`` to
   ``{"Federated": PROVIDER_ARN}`` with the request context below; else AccessDenied
   "Not authorized to perform sts:AssumeRoleWithWebIdentity" (aws/aws-sdk-java-v2#1470,
   aws/aws-sdk-net#1522). A ``source_identity`` claim also needs ``sts:SetSourceIdentity``;
5. DurationSeconds (default 3600) may not exceed the role's MaxSessionDuration, and session
   policies follow AssumeRole's rules (``sts.session_limits``).

Request context: ``aws:FederatedProvider`` (the provider ARN), ``aws:PrincipalType``
``WebIdentity``, ``sts:RoleSessionName``, ``sts:SourceIdentity``, and the provider's keys
``PROVIDER:sub``/``:aud``/``:oaud``/``:amr`` (``web_identity.WebIdentity.condition_keys``).

The session is ``AssumeRoleWithWebIdentity``: no IAM user or access key stands behind it
(``source_access_key_id`` is "", ``source_user_name`` None), so revocation follows the role
only (deleted, recreated, or its sessions revoked). Not supported: session tags from the
token's ``https://aws.amazon.com/tags`` claim, and AssumeRoleWithSAML.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sts_backend import ids, web_identity
from sts_backend.auth import Principal
from sts_backend.errors import AccessDenied, SenderError, ValidationError
from sts_backend.iam_oidc import provider_arn
from sts_backend.iam_records import OidcProvider
from sts_backend.jwks import JwksCache
from sts_backend.policy import PrincipalType, build_request_context, evaluate_trust
from sts_backend.policy_document import PolicyKind, parse_policy
from sts_backend.sts import OVER_ROLE_MAX, credentials_out, mint, packed_percent, session_limits
from sts_backend.web_identity import WebIdentity

__all__ = ["ACTION", "assume_role_with_web_identity"]

ACTION = "sts:AssumeRoleWithWebIdentity"
NOT_AUTHORIZED = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
_SOURCE_IDENTITY = re.compile(r"[\w+=,.@-]{2,256}", re.ASCII)


def assume_role_with_web_identity(p: dict, store: Any, now: dt.datetime, keys: JwksCache,
                                  connection: dict[str, Any] | None = None) -> dict:
    """Run AssumeRoleWithWebIdentity with validated parameters ``p`` at wall time ``now``;
    ``connection`` holds the request's ``aws:SourceIp`` and ``aws:SecureTransport``.

    Returns:
        The result body, members in the STS model's order.

    Raises:
        SenderError: InvalidParameterValue (ProviderId), InvalidIdentityToken,
            ExpiredTokenException, IDPCommunicationError, AccessDenied, ValidationError.
    """
    if p.get("ProviderId"):
        raise SenderError("InvalidParameterValue", "ProviderId is not supported by this backend: it verifies "
                          "OpenID Connect ID tokens of its IAM OIDC providers, not OAuth 2.0 access tokens")
    provider, identity = _verified(p["WebIdentityToken"], store, keys, now)
    account = store.account_id()
    role = _role(p["RoleArn"], store)
    duration = p.get("DurationSeconds", 3600)
    if duration > role.max_session_duration:
        raise ValidationError(OVER_ROLE_MAX)
    policy, policy_arns, _ = session_limits(p, store)
    source = identity.source_identity
    if source is not None and (not _SOURCE_IDENTITY.fullmatch(source) or source.lower().startswith("aws:")):
        raise web_identity.invalid_token()
    _authorize(role, provider.arn, provider.host_path, identity, p["RoleSessionName"], now, connection or {})
    name = p["RoleSessionName"]
    caller = Principal("assumed-role", provider.arn, account, identity.subject, "", None, "sts", "")
    session, sealed = mint(store, "AssumeRoleWithWebIdentity", caller, now, duration,
                           principal_arn=ids.assumed_role_arn(account, role.role_name, name),
                           user_id=f"{role.role_id}:{name}", role=role, session_name=name,
                           source_identity=source, policy=policy, policy_arns=policy_arns)
    result: dict[str, Any] = {
        "Credentials": credentials_out(session, sealed), "SubjectFromWebIdentityToken": identity.subject,
        "AssumedRoleUser": {"AssumedRoleId": session.user_id, "Arn": session.principal_arn}}
    if policy or policy_arns:
        result["PackedPolicySize"] = packed_percent(policy, policy_arns, ())
    result["Provider"] = identity.issuer
    result["Audience"] = identity.audience
    if source:
        result["SourceIdentity"] = source
    return result


def _verified(token: str, store: Any, keys: JwksCache, now: dt.datetime) -> tuple[OidcProvider, WebIdentity]:
    """The provider the token's ``iss`` names, and the token verified with that provider's key."""
    header = web_identity.peek(token)
    scheme, sep, host_path = header.issuer.partition("://")
    provider = None
    if sep and scheme in ("https", "http"):
        provider = store.oidc_provider(provider_arn(store.account_id(), host_path))
    if provider is None:
        raise web_identity.no_provider(header.issuer)
    jwk = keys.key(provider.url, header.issuer, header.kid)
    return provider, web_identity.verify(token, header, jwk, provider.client_ids, now)


def _role(arn: str, store: Any):
    """The role ``arn`` names in this account; AccessDenied for any other (no oracle)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iam" or not parts[5].startswith("role/"):
        raise ValidationError("Request ARN is invalid")
    role = store.role(parts[5].rsplit("/", 1)[1]) if parts[4] == store.account_id() else None
    if role is None or role.arn.lower() != arn.lower():
        raise AccessDenied(NOT_AUTHORIZED)
    return role


def _authorize(role, provider: str, prefix: str, identity: WebIdentity, session_name: str,
               now: dt.datetime, connection: dict[str, Any]) -> None:
    extra = {**connection, "aws:FederatedProvider": provider, "sts:RoleSessionName": session_name,
             **identity.condition_keys(prefix)}
    if identity.source_identity:
        extra["sts:SourceIdentity"] = identity.source_identity
    ctx = build_request_context(ACTION, role.arn, provider, principal_account=role.arn.split(":")[4],
                                principal_type=PrincipalType.WEB_IDENTITY, now=now,
                                source_identity=identity.source_identity, extra=extra)
    trust_policy = parse_policy(role.assume_role_policy, PolicyKind.TRUST)
    if not evaluate_trust(ctx, trust_policy).allowed:
        raise AccessDenied(NOT_AUTHORIZED)
    if identity.source_identity:
        source_ctx = build_request_context("sts:SetSourceIdentity", role.arn, provider,
                                           principal_account=ctx.principal_account,
                                           principal_type=PrincipalType.WEB_IDENTITY, now=now,
                                           source_identity=identity.source_identity, extra=extra)
        if not evaluate_trust(source_ctx, trust_policy).allowed:
            raise AccessDenied(NOT_AUTHORIZED)

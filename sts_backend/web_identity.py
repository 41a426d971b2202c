"""OpenID Connect ID tokens for AssumeRoleWithWebIdentity: claims and signatures, no I/O.

Theory of operation
-------------------
``peek`` reads a token's header and claims *unverified*, only to find which IAM provider
it claims (its ``iss`` without the scheme names the provider's ARN) and which key signed
it (``kid``, ``alg``). The key itself comes from ``sts_backend.jwks`` (the one place that
talks to identity providers); ``verify`` then checks, with PyJWT, the signature with that
JWK (RS256/384/512 or ES256/384/512, never ``none`` or HMAC), and, here, against the
injected wall clock (PyJWT would read the system clock, so its time checks are off):

- ``exp`` must be present and after now (no leeway: ``ExpiredTokenException``);
- ``nbf`` and ``iat``, when present, no later than now plus ``CLOCK_SKEW``;
- ``aud`` must be present; its value (with several values, the ``azp`` claim) must be one
  of the provider's client ids. That value is the result's ``Audience`` and the
  ``PROVIDER:aud`` condition key; the ``aud`` claim itself is ``PROVIDER:oaud``
  [IUG:reference_policies_iam-condition-keys, "Available keys for AWS web identity federation"];
- ``sub`` must be present (``SubjectFromWebIdentityToken``, ``PROVIDER:sub``).

Errors are AWS's (codes from the STS model; messages as AWS sends them where public
threads quote them):

- InvalidIdentityToken (400): "No OpenIDConnect provider found in your account for
  https://..." (aws-actions/configure-aws-credentials#721, namespacelabs/foundation#801);
  "Incorrect token audience" (awslabs/amazon-eks-irsa-cfn#18); "Missing a required claim:
  aud" (aws/aws-sdk-ruby#2698); "Couldn't retrieve verification key from your identity
  provider,  please reference AssumeRoleWithWebIdentity documentation for requirements"
  (awslabs/aws-sdk-rust#827; the double space is AWS's); a bad signature or malformed token
  gets the model's own description (no public quote found: UNVERIFIED), and so do
  ``nbf``/``iat`` in the future (UNVERIFIED wording).
- ExpiredTokenException (400): "Token expired: current date/time 1731098245 must be before
  the expiration date/time 1731095240" (aws/aws-sdk-java-v2#5709; an older quote,
  awslabs/aws-orbit-workbench#707, lacks the second space).
- IDPCommunicationError (400): the identity provider cannot be reached (the model's text).
  Real STS has also been seen answering InvalidIdentityToken "Couldn't retrieve
  verification key..." during an IdP outage (aws-sdk-rust#827); this backend keeps the two
  apart: unreachable is IDPCommunicationError (botocore retries it), reachable but without
  a usable key is InvalidIdentityToken.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import jwt

from sts_backend.errors import SenderError

__all__ = ["ALGORITHMS", "CLOCK_SKEW", "TokenHeader", "WebIdentity", "expired", "idp_unreachable",
           "invalid_token", "key_unavailable", "no_provider", "peek", "verify"]

ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
CLOCK_SKEW = 60  # seconds an IdP's clock may run ahead (nbf, iat); exp gets none
SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity"  # [IUG:id_credentials_temp_control-access_monitor]

_NOT_VALIDATED = ("The web identity token that was passed could not be validated by AWS. Get a new identity token "
                  "from the identity provider and then retry the request.")
_KEY_UNAVAILABLE = ("Couldn't retrieve verification key from your identity provider,  please reference "
                    "AssumeRoleWithWebIdentity documentation for requirements")
_UNREACHABLE = ("The request could not be fulfilled because the identity provider (IDP) that was asked to verify "
                "the incoming identity token could not be reached.")


def invalid_token(message: str = _NOT_VALIDATED) -> SenderError:
    return SenderError("InvalidIdentityToken", message, 400)


def no_provider(issuer: str) -> SenderError:
    return invalid_token(f"No OpenIDConnect provider found in your account for {issuer}")


def key_unavailable() -> SenderError:
    return invalid_token(_KEY_UNAVAILABLE)


def idp_unreachable() -> SenderError:
    return SenderError("IDPCommunicationError", _UNREACHABLE, 400)


def expired(now: int, exp: int) -> SenderError:
    return SenderError("ExpiredTokenException",
                       f"Token expired: current date/time {now} must be before the expiration date/time {exp}", 400)


@dataclass(frozen=True, slots=True)
class TokenHeader:
    """What an unverified token claims: its issuer and the key that signed it."""

    issuer: str
    kid: str | None
    alg: str


@dataclass(frozen=True, slots=True)
class WebIdentity:
    """A verified token: what the result and the trust policy's condition keys need."""

    issuer: str                 # the iss claim (with its scheme)
    subject: str
    audience: str               # the client id that matched (azp when aud has several values)
    aud: tuple[str, ...]        # the aud claim
    amr: tuple[str, ...]
    source_identity: str | None
    azp: str | None = None      # the authorized party, when the token names one

    def condition_keys(self, provider: str) -> dict[str, Any]:
        """``PROVIDER:sub``/``:aud``/``:oaud``/``:amr`` for ``provider`` (the URL without its scheme)."""
        keys: dict[str, Any] = {f"{provider}:sub": self.subject, f"{provider}:aud": self.azp or self.audience,
                                f"{provider}:oaud": list(self.aud)}
        if self.amr:
            keys[f"{provider}:amr"] = list(self.amr)
        return keys


def peek(token: str) -> TokenHeader:
    """The issuer, ``kid`` and ``alg`` a token claims, unverified (to find its provider and key).

    Raises:
        SenderError: InvalidIdentityToken for anything that is not a signed JWT with a
            string ``iss`` and an allowed algorithm.
    """
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        raise invalid_token() from None
    issuer, kid, alg = claims.get("iss"), header.get("kid"), header.get("alg")
    if not isinstance(issuer, str) or not issuer:
        raise invalid_token("Missing a required claim: iss")
    if alg not in ALGORITHMS or (kid is not None and not isinstance(kid, str)):
        raise invalid_token()
    return TokenHeader(issuer, kid, alg)


def verify(token: str, header: TokenHeader, jwk: dict, client_ids: tuple[str, ...], now: dt.datetime) -> WebIdentity:
    """Check ``token``'s signature with ``jwk`` and its claims at wall time ``now``.

    Args:
        token: the compact JWT.
        header: ``peek(token)``.
        jwk: the JSON Web Key ``header.kid`` named, from the provider's JWKS.
        client_ids: the provider's client ids (the audiences it accepts).
        now: the wall clock's time.

    Raises:
        SenderError: InvalidIdentityToken or ExpiredTokenException (module docstring).
    """
    if jwk.get("alg") not in (None, header.alg) or jwk.get("use") not in (None, "sig"):
        raise key_unavailable()
    try:
        key = jwt.PyJWK(jwk, algorithm=header.alg)
        claims = jwt.decode(token, key.key, algorithms=[header.alg],
                            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                     "verify_aud": False, "verify_iss": False, "verify_sub": False,
                                     "verify_jti": False, "require": []})
    except (jwt.PyJWTError, ValueError, TypeError):
        raise invalid_token() from None
    if claims.get("iss") != header.issuer:
        raise invalid_token()
    _check_times(claims, now)
    audience, aud = _audience(claims, client_ids)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise invalid_token("Missing a required claim: sub")
    source, azp = claims.get(SOURCE_IDENTITY_CLAIM), claims.get("azp")
    return WebIdentity(header.issuer, subject, audience, aud, _strings(claims.get("amr")),
                       source if isinstance(source, str) else None, azp if isinstance(azp, str) else None)


def _number(claims: dict, name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid_token()
    return value


def _check_times(claims: dict, now: dt.datetime) -> None:
    at = int(now.timestamp())
    exp = _number(claims, "exp")
    if exp is None:
        raise invalid_token("Missing a required claim: exp")
    if at >= exp:
        raise expired(at, int(exp))
    for name in ("nbf", "iat"):
        value = _number(claims, name)
        if value is not None and value > at + CLOCK_SKEW:
            raise invalid_token()


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _audience(claims: dict, client_ids: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """(the audience that matched a client id, the aud claim's values)."""
    aud = _strings(claims.get("aud"))
    if not aud:
        raise invalid_token("Missing a required claim: aud")
    if len(aud) == 1:
        audience = aud[0]
    else:
        azp = claims.get("azp")
        if not isinstance(azp, str):
            raise invalid_token("Incorrect token audience")
        audience = azp
    if audience not in client_ids:
        raise invalid_token("Incorrect token audience")
    return audience, aud

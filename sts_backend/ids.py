"""Identifiers the backend mints: key ids, secrets, unique ids, ARNs.

Formats follow sts-iam.md §6:

- access key ids are 20 uppercase characters, ``AKIA`` (long-term) or ``ASIA``
  (temporary) + 16 of ``[A-Z2-7]`` — uppercase alphanumerics, so routers that
  match ``[A-Z0-9]{20}`` (moto's ``access_key_regex``) accept them;
- secret access keys are 40 characters of ``[A-Za-z0-9/+]``, like AWS's examples;
- unique ids are a 4-letter prefix (``AIDA`` user, ``AROA`` role, ``AGPA`` group,
  ``ANPA`` managed policy, ``ANVA`` policy version) + 17 of ``[A-Z2-7]``;
- ARNs: IAM entities carry their path (``arn:aws:iam::ACCT:user/PATH/NAME``); the
  assumed-role session ARN does not (``arn:aws:sts::ACCT:assumed-role/ROLE/SESSION``).

Everything random comes from ``secrets``.
"""

from __future__ import annotations

import base64
import secrets

_UPPER32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

UNIQUE_ID_PREFIXES = {
    "user": "AIDA",
    "role": "AROA",
    "group": "AGPA",
    "policy": "ANPA",
    "policy-version": "ANVA",
}


def _random_chars(alphabet: str, count: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(count))


def new_account_id() -> str:
    """A random 12-digit account id (no leading zero, so it survives int round-trips)."""
    return str(10**11 + secrets.randbelow(9 * 10**11))


def new_access_key_id(temporary: bool = False) -> str:
    """``AKIA`` (or ``ASIA`` when ``temporary``) + 16 of ``[A-Z2-7]``: 20 chars."""
    # base32 of 10 random bytes is exactly 16 chars of [A-Z2-7]; one call, not 16
    # (this is on the AssumeRole hot path).
    return ("ASIA" if temporary else "AKIA") + base64.b32encode(secrets.token_bytes(10)).decode()


def new_secret_access_key() -> str:
    """40 characters of ``[A-Za-z0-9/+]`` (240 bits): base64 of 30 random bytes."""
    return base64.b64encode(secrets.token_bytes(30)).decode()


def new_unique_id(kind: str) -> str:
    """A unique id for ``kind`` (user, role, group, policy, policy-version): prefix + 17."""
    return UNIQUE_ID_PREFIXES[kind] + _random_chars(_UPPER32, 17)


def normalize_path(path: str | None) -> str:
    """``None``/empty → ``/``; otherwise the path as given (validated upstream)."""
    return path or "/"


def _iam_arn(account_id: str, kind: str, path: str | None, name: str) -> str:
    return f"arn:aws:iam::{account_id}:{kind}{normalize_path(path)}{name}"


def user_arn(account_id: str, name: str, path: str | None = "/") -> str:
    """``arn:aws:iam::ACCT:user/PATH/NAME``."""
    return _iam_arn(account_id, "user", path, name)


def role_arn(account_id: str, name: str, path: str | None = "/") -> str:
    """``arn:aws:iam::ACCT:role/PATH/NAME``."""
    return _iam_arn(account_id, "role", path, name)


def group_arn(account_id: str, name: str, path: str | None = "/") -> str:
    """``arn:aws:iam::ACCT:group/PATH/NAME``."""
    return _iam_arn(account_id, "group", path, name)


def policy_arn(account_id: str, name: str, path: str | None = "/") -> str:
    """``arn:aws:iam::ACCT:policy/PATH/NAME`` (customer managed policy)."""
    return _iam_arn(account_id, "policy", path, name)


def mfa_arn(account_id: str, name: str, path: str | None = "/") -> str:
    """``arn:aws:iam::ACCT:mfa/PATH/NAME``: a virtual MFA device's serial number."""
    return _iam_arn(account_id, "mfa", path, name)


def root_arn(account_id: str) -> str:
    """``arn:aws:iam::ACCT:root``."""
    return f"arn:aws:iam::{account_id}:root"


def assumed_role_arn(account_id: str, role_name: str, session_name: str) -> str:
    """``arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`` (no role path, per AWS)."""
    return f"arn:aws:sts::{account_id}:assumed-role/{role_name}/{session_name}"


def federated_user_arn(account_id: str, name: str) -> str:
    """``arn:aws:sts::ACCT:federated-user/NAME``."""
    return f"arn:aws:sts::{account_id}:federated-user/{name}"

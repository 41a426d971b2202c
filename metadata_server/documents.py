"""The exact bytes of IMDS bodies (reference/imds.md §5).

Pure functions from values to bytes. IMDS JSON is not ``json.dumps(indent=2)``:
it is two-space indented with ``" : "`` between key and value, no trailing
newline, served as ``text/plain``. Listings are one entry per line with a
trailing ``/`` on sub-directories and no final line feed. Timestamps are
``YYYY-MM-DDTHH:MM:SSZ``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import platform
from collections.abc import Iterable

from metadata_server.credentials import RoleCredentials
from wire.clock import iso_z

__all__ = [
    "credentials_document",
    "error_document",
    "identity_document",
    "imds_json",
    "instance_profile_id",
    "listing",
    "profile_info_document",
    "xhtml_error",
]


def imds_json(pairs: Iterable[tuple[str, object]]) -> bytes:
    """``{`` / ``  "K" : V,`` lines / ``}``, in the given order, no final newline."""
    lines = ",\n".join(f"  {json.dumps(k)} : {json.dumps(v)}" for k, v in pairs)
    return ("{\n" + lines + "\n}").encode("utf-8")


def listing(entries: Iterable[str]) -> bytes:
    """A directory listing: entries joined by ``\\n``, no final line feed."""
    return "\n".join(entries).encode("utf-8")


def credentials_document(creds: RoleCredentials, *, extended: bool = False) -> bytes:
    """The body of ``iam/security-credentials[-extended]/ROLE``.

    ``extended`` adds ``AccountId`` (the caller checks it is known).
    """
    pairs: list[tuple[str, object]] = [
        ("Code", "Success"),
        ("LastUpdated", iso_z(creds.last_updated)),
        ("Type", "AWS-HMAC"),
        ("AccessKeyId", creds.access_key_id),
        ("SecretAccessKey", creds.secret_access_key),
        ("Token", creds.token),
        ("Expiration", iso_z(creds.expiration)),
    ]
    if extended:
        pairs.append(("AccountId", creds.account_id))
    return imds_json(pairs)


def instance_profile_id(arn: str) -> str:
    """A stable ``AIPA...`` id (21 characters) for an instance-profile ARN."""
    digest = base64.b32encode(hashlib.sha256(arn.encode()).digest()).decode()
    return "AIPA" + digest[:17]


def profile_info_document(creds: RoleCredentials, account_id: str | None) -> bytes:
    """The body of ``iam/info``: the instance profile is named after the role.

    (Clients such as the ``ec2-metadata`` package take the profile name from the
    ARN and ask for ``security-credentials/<that name>``.) An unknown account
    shows as ``000000000000`` in the ARN.
    """
    arn = f"arn:aws:iam::{account_id or '000000000000'}:instance-profile/{creds.role_name}"
    return imds_json(
        [
            ("Code", "Success"),
            ("LastUpdated", iso_z(creds.last_updated)),
            ("InstanceProfileArn", arn),
            ("InstanceProfileId", instance_profile_id(arn)),
        ]
    )


def _architecture() -> str:
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return "arm64"
    if machine in ("i386", "i686", "x86"):
        return "i386"
    return "x86_64"


def identity_document(
    *,
    account_id: str | None,
    region: str,
    availability_zone: str,
    instance_id: str,
    pending_time: _dt.datetime,
) -> bytes:
    """``/latest/dynamic/instance-identity/document`` in the real field order.

    Fields rolecall cannot know (image, type, private IP) carry fixed
    placeholder values; the document is unsigned (no ``pkcs7``/``signature``).
    """
    return imds_json(
        [
            ("accountId", account_id),
            ("architecture", _architecture()),
            ("availabilityZone", availability_zone),
            ("billingProducts", None),
            ("devpayProductCodes", None),
            ("marketplaceProductCodes", None),
            ("imageId", "ami-00000000000000000"),
            ("instanceId", instance_id),
            ("instanceType", "rolecall.host"),
            ("kernelId", None),
            ("pendingTime", iso_z(pending_time)),
            ("privateIp", "127.0.0.1"),
            ("ramdiskId", None),
            ("region", region),
            ("version", "2017-09-30"),
        ]
    )


def error_document(code: str, message: str) -> bytes:
    """An IMDS-style ``{"Code", "Message"}`` body (the 503 of the credential paths)."""
    return imds_json([("Code", code), ("Message", message)])


_XHTML = """<?xml version="1.0" encoding="iso-8859-1"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
         "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>{title}</title>
 </head>
 <body>
  <h1>{title}</h1>
 </body>
</html>
"""


def xhtml_error(status: int, reason: str) -> bytes:
    """IMDS's XHTML error page, e.g. ``404 - Not Found``."""
    return _XHTML.replace("{title}", f"{status} - {reason}").encode("ascii")

"""The audit trail: one JSON line per API call in ``<data dir>/audit.log`` (mode 0600).

Each line holds the time, request id, principal ARN, access key id, service and
action, the request parameters minus anything secret, the outcome (``ok`` or
``error``), the AWS error code and the source address. Secrets never reach the
file: MFA codes, secret keys, passwords, web-identity and SAML assertions and any
``X-Amz-*`` query authentication (signature, session token) are dropped by name,
whatever their position in a list (``Foo.member.1.TokenCode``). The file is
line-buffered, so every call is on disk (in the page cache) once it is answered.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wire.clock import UTC

__all__ = ["AuditLog", "AuditRecord", "NullAudit", "redact"]

_SECRET_NAMES = frozenset(
    name.lower() for name in (
        "TokenCode", "AuthenticationCode1", "AuthenticationCode2", "SecretAccessKey",
        "SessionToken", "WebIdentityToken", "SAMLAssertion", "Password", "NewPassword",
        "OldPassword", "PrivateKey", "Base32StringSeed", "QRCodePNG", "ClientSecret",
    )
)
_MAX_VALUE_CHARS = 4096


def redact(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without secret-bearing entries; long values cut to 4,096 characters."""
    clean: dict[str, Any] = {}
    for name, value in params.items():
        last = name.rsplit(".", 1)[-1].lower()
        if last in _SECRET_NAMES or name.lower().startswith("x-amz-"):
            continue
        if isinstance(value, str) and len(value) > _MAX_VALUE_CHARS:
            value = value[:_MAX_VALUE_CHARS] + "...(truncated)"
        clean[name] = value
    return clean


@dataclass(slots=True)
class AuditRecord:
    """One API call, as the audit log writes it."""

    time: dt.datetime
    request_id: str
    service: str | None = None
    action: str | None = None
    principal_arn: str | None = None
    access_key_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = "ok"
    error_code: str | None = None
    source: str | None = None
    event: str | None = None  # something beyond the call itself, e.g. "mfa_lockout"
    mfa_serial: str | None = None  # the device an MFA event concerns

    def to_json(self) -> str:
        doc = {
            "time": self.time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request_id": self.request_id, "service": self.service, "action": self.action,
            "principal_arn": self.principal_arn, "access_key_id": self.access_key_id,
            "params": redact(self.params), "outcome": self.outcome,
            "error_code": self.error_code, "source": self.source,
        }
        if self.event:
            doc["event"], doc["mfa_serial"] = self.event, self.mfa_serial
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class AuditLog:
    """Appends ``AuditRecord`` lines to a 0600 file; safe to call from several threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "a", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: AuditRecord) -> None:
        """Append one line (flushed at the newline)."""
        line = record.to_json() + "\n"
        with self._lock:
            self._file.write(line)

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            self._file.close()


class NullAudit:
    """An audit sink that keeps nothing (unit tests, benchmarks of the pure handler)."""

    def write(self, record: AuditRecord) -> None:
        """Discard ``record``."""

    def close(self) -> None:
        """Nothing to close."""

"""The backend's one exception hierarchy; each maps to an AWS error at the edge.

    BackendError                     (code, message, http_status, fault)
    ├── SenderError                  4xx, <Type>Sender</Type>
    │   ├── ValidationError          400  model constraints, DurationSeconds rules
    │   ├── AccessDenied             403  authorization, MFA failures
    │   │   └── MfaLockout           403  the code that locked its device (audited as an event)
    │   ├── InvalidClientTokenId     403  unknown/invalid key or session token
    │   ├── ExpiredToken             403  session token past its expiry
    │   └── ... (NoSuchEntity, EntityAlreadyExists, LimitExceeded, ...)
    └── ReceiverError                5xx, <Type>Receiver</Type>

Raise ``SenderError(code, message, status)`` for codes without a class of their own.
``wire.sigv4``'s errors (its own root, ``SigV4Error``) become these in ``auth``:
the one ``InvalidClientTokenId`` class is this one.
Messages are what the client sees: never put a secret, token or MFA code in one.
"""

from __future__ import annotations


class BackendError(Exception):
    """Base: an AWS error response waiting to be rendered."""

    fault = "Sender"

    def __init__(self, code: str, message: str, http_status: int) -> None:
        if type(self) is BackendError:
            raise TypeError("instantiate SenderError or ReceiverError, not BackendError")
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, {self.http_status})"


class SenderError(BackendError):
    fault = "Sender"

    def __init__(self, code: str, message: str, http_status: int = 400) -> None:
        super().__init__(code, message, http_status)


class ReceiverError(BackendError):
    fault = "Receiver"

    def __init__(self, code: str = "InternalFailure", message: str = "An internal error occurred.",
                 http_status: int = 500) -> None:
        super().__init__(code, message, http_status)


class ValidationError(SenderError):
    def __init__(self, message: str) -> None:
        super().__init__("ValidationError", message, 400)


class AccessDenied(SenderError):
    def __init__(self, message: str) -> None:
        super().__init__("AccessDenied", message, 403)


class InvalidClientTokenId(SenderError):
    def __init__(self, message: str = "The security token included in the request is invalid.") -> None:
        super().__init__("InvalidClientTokenId", message, 403)


class ExpiredToken(SenderError):
    def __init__(self, message: str = "The security token included in the request is expired") -> None:
        super().__init__("ExpiredToken", message, 403)


class NoSuchEntity(SenderError):
    def __init__(self, message: str) -> None:
        super().__init__("NoSuchEntity", message, 404)


class EntityAlreadyExists(SenderError):
    def __init__(self, message: str) -> None:
        super().__init__("EntityAlreadyExists", message, 409)


class LimitExceeded(SenderError):
    def __init__(self, message: str) -> None:
        super().__init__("LimitExceeded", message, 409)


class DeleteConflict(SenderError):
    def __init__(self, message: str) -> None:
        super().__init__("DeleteConflict", message, 409)


class MalformedPolicyDocument(SenderError):
    def __init__(self, message: str) -> None:
        super().__init__("MalformedPolicyDocument", message, 400)


class MfaLockout(AccessDenied):
    """The failed code that locked its MFA device; the edge audits ``event = "mfa_lockout"``.

    Attributes:
        serial: the device's serial number.
    """

    event = "mfa_lockout"

    def __init__(self, message: str, serial: str) -> None:
        super().__init__(message)
        self.serial = serial

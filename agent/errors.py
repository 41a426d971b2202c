"""The agent's one exception hierarchy.

::

    AgentError                    anything the agent refuses or fails at
     ├── ConfigError              the TOML file is unusable: "FILE: [section] key: reason"
     ├── SourceError              the agent's own identity cannot be read
     │    │                       (missing file, empty secret, unset variable,
     │    │                       a profile that cannot be used)
     │    └── KeyStoreError       the OS keyring failed, timed out, or holds
     │                            something that is not rolecall's JSON
     ├── MfaError                 no MFA code could be had: no terminal and no
     │                            prompt driver, cancelled, a driver failed
     ├── IamError                 IAM answered with an AWS error document, or
     │                            gave no usable answer (key rotation, enrolment)
     └── StsFailure               an STS call failed; ``retryable`` says whether
          │                       trying again later can help
          ├── StsError            STS answered with an AWS error document: keeps
          │                       its code, message, HTTP status and request id
          └── StsUnavailable      no usable answer: connection refused, timeout,
                                  malformed or oversized response (retryable)

Foreign exceptions (httpx, XML, OS errors) are translated at the edge where
they happen, with ``raise X from exc``. No message here ever holds a secret:
callers pass key names, paths and AWS's own messages, never values of secrets.
"""

from __future__ import annotations

import re

__all__ = [
    "AgentError",
    "ConfigError",
    "IamError",
    "KeyStoreError",
    "MfaError",
    "RETRYABLE_CODES",
    "THROTTLING_CODES",
    "SourceError",
    "StsError",
    "StsFailure",
    "StsUnavailable",
    "one_line",
]

# AWS error codes that mean "try again later" (botocore's throttling and
# transient lists, as far as STS can send them; sts-iam.md §3). The throttling
# ones say the caller is over the backend's rate, not that it is broken.
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "RequestThrottled", "TooManyRequestsException", "RequestLimitExceeded",
    "SlowDown", "PriorRequestNotComplete",
})
RETRYABLE_CODES = THROTTLING_CODES | frozenset({
    "IDPCommunicationError", "InternalFailure", "InternalError", "ServiceUnavailable", "RequestTimeout",
    "RequestTimeoutException",
})

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MAX_MESSAGE = 1024


def one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    """``text`` with control characters folded to spaces, cut to ``limit`` characters.

    Keeps a remote party's message from breaking a log line into two.
    """
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The configuration file is unusable.

    ``str()`` is one line: ``FILE: KEY: REASON`` (``FILE: REASON`` when no key
    applies), e.g. ``/etc/rolecall/agent.toml: [role] duration_seconds: must be
    an integer from 900 to 43200``.

    Attributes:
        path: the configuration file.
        key: ``[section] key``, ``[section]``, or ``""``.
        reason: what is wrong; never the value of a secret.
    """

    def __init__(self, path: str, key: str, reason: str) -> None:
        self.path, self.key, self.reason = str(path), key, one_line(reason)
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + self.reason)


class SourceError(AgentError):
    """The agent's own credential source is unusable (file, variable, token)."""


class KeyStoreError(SourceError):
    """The OS keyring failed, timed out, or holds an entry that is not rolecall's."""


class MfaError(AgentError):
    """No MFA code could be had (no way to ask, cancelled, a prompt driver failed)."""


class IamError(AgentError):
    """An IAM call failed.

    ``str()``: ``CreateAccessKey: AccessDenied (HTTP 403): ...``, or a reason
    when no AWS error document came.

    Attributes:
        action: the IAM action.
        code: AWS's ``<Code>``, or None without an error document.
        http_status: the response's status, or None without a response.
    """

    def __init__(self, action: str, reason: str, code: str | None = None, http_status: int | None = None) -> None:
        self.action, self.code, self.http_status = action, code, http_status
        head = f"{action}: {one_line(code, 128)} (HTTP {http_status})" if code else f"{action}"
        super().__init__(f"{head}: {one_line(reason)}" if reason else head)


class StsFailure(AgentError):
    """An STS call that did not produce credentials; never instantiated itself.

    Attributes:
        action: the STS action (``AssumeRole``...).
        retryable: True when the same call may succeed later unchanged.
        attempts: how many attempts the client made before giving up.
    """

    retryable = False

    def __init__(self, action: str, message: str) -> None:
        if type(self) is StsFailure:
            raise TypeError("tried to directly instantiate StsFailure")
        super().__init__(message)
        self.action = action
        self.attempts = 1


class StsError(StsFailure):
    """STS answered with an AWS error document.

    ``str()``: ``AssumeRole: AccessDenied (HTTP 403): User: ... [request id ...]``.

    Attributes:
        code: AWS's ``<Code>`` (``AccessDenied``, ``ValidationError``...).
        message: AWS's ``<Message>``, folded to one line.
        http_status: the response's HTTP status.
        request_id: AWS's request id (header or XML), or ``""``.
        retryable: True for throttling codes, ``IDPCommunicationError`` and 5xx.
    """

    def __init__(self, action: str, code: str, message: str, http_status: int, request_id: str = "") -> None:
        self.code = one_line(code, 128)
        self.message = one_line(message)
        self.http_status = http_status
        self.request_id = one_line(request_id, 128)
        text = f"{action}: {self.code} (HTTP {http_status})"
        if self.message:
            text += f": {self.message}"
        if self.request_id:
            text += f" [request id {self.request_id}]"
        super().__init__(action, text)
        self.retryable = self.code in RETRYABLE_CODES or http_status >= 500 or http_status == 429


class StsUnavailable(StsFailure):
    """No usable answer from STS: network error, timeout, malformed response.

    Attributes:
        http_status: the response's status when there was a response, else None.
        retryable: True, except for a 4xx (not 429) response without an
            error document (a wrong ``endpoint_url`` does not heal by retrying).
    """

    def __init__(self, action: str, reason: str, http_status: int | None = None) -> None:
        super().__init__(action, f"{action}: {one_line(reason)}")
        self.http_status = http_status
        self.retryable = http_status is None or not 400 <= http_status < 500 or http_status == 429

"""A small signed IAM Query client: what the demo seeding, key rotation and MFA enrolment call.

Every call is ``POST /`` with ``Action=...&Version=2010-05-08`` form-encoded,
signed with ``wire.sigv4`` for service ``iam`` in us-east-1 (IAM is global),
to ``endpoint_url`` or AWS's ``https://iam.amazonaws.com``. An AWS error
document becomes ``IamError`` with its code and status; no answer, or an
unreadable one, becomes ``IamError`` without a code. Proxies from the
environment are used for remote endpoints only, never for a loopback one.
"""

from __future__ import annotations

import httpx

from agent.errors import IamError
from agent.sts_client import is_loopback_url
from wire.clock import WallClock
from wire.query import QueryError, encode_form, parse_error, parse_response
from wire.sigv4 import Credentials, SigV4Auth

__all__ = ["IAM_ENDPOINT", "IAM_REGION", "IamClient", "members"]

IAM_ENDPOINT = "https://iam.amazonaws.com"
IAM_REGION = "us-east-1"
IAM_VERSION = "2010-05-08"
_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


def members(result: dict, name: str) -> list[dict]:
    """A list member of a parsed IAM result (an empty list arrives as ``""``)."""
    value = result.get(name)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class IamClient:
    """Signed IAM calls with one set of credentials; use as ``async with IamClient(...) as iam``.

    Args:
        endpoint_url: the IAM endpoint, or None for AWS's.
        credentials: what the calls are signed with.
        clock: dates the signatures.
        transport: an httpx transport (tests); real HTTP by default.
        timeout: seconds per call.
        verify: TLS verification (True, False, or a CA bundle path).
    """

    def __init__(self, endpoint_url: str | None, credentials: Credentials, clock: WallClock, *,
                 transport: httpx.AsyncBaseTransport | None = None, timeout: float = 10.0,
                 verify: bool | str = True) -> None:
        self.endpoint = endpoint_url or IAM_ENDPOINT
        self._auth = SigV4Auth(credentials, IAM_REGION, "iam", clock)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout, verify=verify, follow_redirects=False,
                                       trust_env=not is_loopback_url(self.endpoint),
                                       headers={"User-Agent": "rolecall"})

    async def __aenter__(self) -> IamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    async def call(self, action: str, **params: str) -> dict:
        """One IAM action; its parsed ``<ActionResult>``.

        Raises:
            IamError: an AWS error (with ``code``), or no usable answer.
        """
        body = encode_form({"Action": action, "Version": IAM_VERSION, **params})
        try:
            response = await self._http.post(self.endpoint, content=body, headers={"Content-Type": _CONTENT_TYPE},
                                             auth=self._auth)
        except httpx.HTTPError as exc:
            raise IamError(action, f"{type(exc).__name__} talking to {self.endpoint}") from None
        try:
            if response.status_code != 200:
                code, message, _ = parse_error(response.content)
                raise IamError(action, message, code, response.status_code)
            return parse_response(response.content, action)
        except QueryError as exc:
            raise IamError(action, f"unreadable answer (HTTP {response.status_code}): {exc}",
                           http_status=response.status_code) from None

"""IMDSv2 session tokens, sealed so that holding them costs no memory.

Theory of operation
-------------------
A token is ``base64url(expiry || nonce || mac)``, 40 bytes, so 56 characters
ending in ``==`` like a real IMDS token:

- ``expiry``: 8 bytes, the IEEE-754 double of the monotonic instant at which it
  stops being valid (issue time + TTL);
- ``nonce``: 16 random bytes, so no two tokens are alike;
- ``mac``: the first 16 bytes of HMAC-SHA256 over ``expiry || nonce`` under a
  32-byte key drawn from the OS CSPRNG when the ``TokenSealer`` is created.

With per-caller roles the MAC also covers the identity of the caller that asked
(``binding``: its uid and cgroup id, never sent), so a token works only on
connections of the same caller.

Nothing is stored per token: the server can hand out any number of them, and a
restart (a new key) invalidates them all, as a replaced instance would. Forging
one means forging a 128-bit MAC. Verification recomputes the MAC and compares it
with ``hmac.compare_digest``; the length and alphabet checks before it reveal
nothing about the key.

Expiry runs on a *monotonic* clock, injected: ``trio.current_time`` in the
server (so trio's ``MockClock`` drives it in tests), ``time.monotonic`` or any
float clock elsewhere. A token is valid while ``now < expiry``, to the clock's
resolution, and tokens from another clock domain (another process) never
verify because the key differs. The wall clock never matters here: an NTP
step cannot extend or cut a token's life.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
import struct
from collections.abc import Callable

__all__ = ["MAX_TTL", "MIN_TTL", "TOKEN_LENGTH", "TokenSealer", "parse_ttl"]

MIN_TTL = 1
MAX_TTL = 21600
TOKEN_LENGTH = 56  # characters
_EXPIRY = struct.Struct(">d")
_NONCE_BYTES = 16
_MAC_BYTES = 16
_RAW_BYTES = _EXPIRY.size + _NONCE_BYTES + _MAC_BYTES


def parse_ttl(values: list[str]) -> int | None:
    """The TTL a token PUT asked for, or None when it must be refused with 400.

    Exactly one ``X-aws-ec2-metadata-token-ttl-seconds`` header, ASCII digits
    only, 1-21600.
    """
    if len(values) != 1:
        return None
    text = values[0].strip()
    if not text or len(text) > 8 or not (text.isascii() and text.isdigit()):
        return None
    ttl = int(text)
    return ttl if MIN_TTL <= ttl <= MAX_TTL else None


class TokenSealer:
    """Issues and checks IMDSv2 tokens against an injected monotonic clock.

    Args:
        monotonic: seconds on a clock that never goes back.
        key: the 32-byte MAC key; random by default (tests may fix it).
    """

    __slots__ = ("_monotonic", "_key", "_hmac")

    def __init__(self, monotonic: Callable[[], float], key: bytes | None = None) -> None:
        if key is not None and len(key) < 32:
            raise ValueError("the token key must be at least 32 bytes")
        self._monotonic = monotonic
        self._key = os.urandom(32) if key is None else bytes(key)
        self._hmac = hmac.new(self._key, digestmod=hashlib.sha256)  # keyed once, copied per use

    def __repr__(self) -> str:
        return "TokenSealer(<key hidden>)"

    def _mac(self, payload: bytes) -> bytes:
        mac = self._hmac.copy()
        mac.update(payload)
        return mac.digest()[:_MAC_BYTES]

    def issue(self, ttl: int, binding: bytes = b"") -> str:
        """A new token valid for ``ttl`` seconds from now, for callers with ``binding``.

        ``binding`` (the caller identity that asked, ``caller_binding``) is MACed
        with the token, not carried in it: the token verifies only where
        ``remaining`` is given the same binding, so a token obtained by one user
        is refused on another user's connection.

        Raises:
            ValueError: ``ttl`` outside 1-21600.
        """
        if type(ttl) is not int or not MIN_TTL <= ttl <= MAX_TTL:
            raise ValueError("ttl must be an integer from 1 to 21600")
        payload = _EXPIRY.pack(self._monotonic() + ttl) + os.urandom(_NONCE_BYTES)
        return base64.urlsafe_b64encode(payload + self._mac(payload + binding)).decode("ascii")

    def remaining(self, token: str, binding: bytes = b"") -> float | None:
        """Seconds this token has left (> 0), or None if it is not valid now.

        None for anything malformed, forged, from another process, issued for
        another ``binding``, or expired.
        """
        if len(token) != TOKEN_LENGTH or not token.isascii():
            return None
        try:
            raw = base64.b64decode(token, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _RAW_BYTES:
            return None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload + binding)):
            return None
        (expiry,) = _EXPIRY.unpack_from(payload)
        left = expiry - self._monotonic()
        return left if left > 0 else None

    @staticmethod
    def header_seconds(remaining: float) -> str:
        """The remaining-TTL header value: whole seconds, rounded up (a valid token never shows 0)."""
        return str(math.ceil(remaining))

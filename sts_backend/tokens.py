"""Sealed session tokens: a ``Session`` under AES-GCM, verified without a database read.

Theory of operation. A session token is the only place a temporary credential's
state lives: the backend stores no row per session. ``seal`` serialises the
``Session`` (compact JSON with short keys, zlib-compressed when that helps, e.g.
for long session policies) and encrypts it with AES-256-GCM under the store's
current token key. The clear header names the key and the ASIA access key id;
the header is the associated data, so a token cannot be moved to another key id
or re-labelled with another access key without failing authentication.

    token = base64( VERSION | key_id:u32 | len:u8 | access_key_id | nonce:12 | ciphertext+tag )

``unseal`` accepts any key the store still holds, so a rotated-out key keeps
verifying the tokens it sealed until they expire. Every failure — bad base64,
unknown version or key, wrong access key id, tampered bytes — is the same
``InvalidClientTokenId``: a client learns nothing about why.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import os
import struct
import zlib
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sts_backend.errors import InvalidClientTokenId
from sts_backend.records import Session

__all__ = ["seal", "unseal", "new_token_key", "peek_access_key_id", "MAX_TOKEN_CHARS"]

VERSION = 0x52  # "R": the first base64 character of every token reads "U"
MAX_TOKEN_CHARS = 8192
_HEADER = struct.Struct(">BIB")
_NONCE = 12
_RAW, _ZLIB = b"j", b"z"
_MAX_PLAINTEXT = 64 * 1024
_COMPRESS_FROM = 640  # bytes of JSON; a plain session is ~350, so only policies and tags pay for zlib
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_KINDS = {
    "GetSessionToken": "S", "AssumeRole": "R", "GetFederationToken": "F",
    "AssumeRoleWithWebIdentity": "W", "AssumeRoleWithSAML": "M",
}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}
_aead_cache: dict[bytes, AESGCM] = {}


def new_token_key() -> bytes:
    """A fresh 256-bit AES-GCM key for sealing session tokens."""
    return AESGCM.generate_key(bit_length=256)


def seal(session: Session, key_id: int, key: bytes) -> str:
    """Encrypt ``session`` into an opaque session token.

    Args:
        session: what the token carries (times keep microseconds).
        key_id: the store's id of ``key`` (written in the clear header).
        key: a 32-byte AES key.

    Returns:
        The token: standard base64, typically 500–900 characters.
    """
    akid = session.access_key_id.encode("ascii")
    header = _HEADER.pack(VERSION, key_id, len(akid)) + akid
    nonce = os.urandom(_NONCE)
    plaintext = _encode(session)
    sealed = _aead(key).encrypt(nonce, plaintext, header)
    return base64.b64encode(header + nonce + sealed).decode("ascii")


def peek_access_key_id(token: str) -> str | None:
    """The access key id written in a token's clear header (unauthenticated), or None."""
    try:
        return _split(token)[2]
    except InvalidClientTokenId:
        return None


def unseal(token: str, keys: Mapping[int, bytes], access_key_id: str | None = None) -> Session:
    """Decrypt and authenticate a session token.

    Args:
        token: the ``X-Amz-Security-Token`` value, untrusted.
        keys: every token key the store holds, by key id.
        access_key_id: when given, the token must belong to this ASIA key id
            (compared in constant time).

    Returns:
        The ``Session`` the token was sealed with. Expiry is not checked here.

    Raises:
        InvalidClientTokenId: malformed, unknown key, wrong access key or tampered.
    """
    header, key_id, akid, nonce, sealed = _split(token)
    if access_key_id is not None and not hmac.compare_digest(akid.encode(), access_key_id.encode()):
        raise InvalidClientTokenId()
    key = keys.get(key_id)
    if key is None:
        raise InvalidClientTokenId()
    try:
        plaintext = _aead(key).decrypt(nonce, sealed, header)
        return _decode(plaintext, akid)
    except (InvalidTag, ValueError, KeyError, TypeError, zlib.error):
        raise InvalidClientTokenId() from None


def _split(token: str) -> tuple[bytes, int, str, bytes, bytes]:
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidClientTokenId()
    try:
        raw = base64.b64decode(token.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidClientTokenId() from None
    if len(raw) < _HEADER.size:
        raise InvalidClientTokenId()
    version, key_id, akid_len = _HEADER.unpack_from(raw)
    body_at = _HEADER.size + akid_len
    if version != VERSION or len(raw) < body_at + _NONCE + 16:
        raise InvalidClientTokenId()
    try:
        akid = raw[_HEADER.size:body_at].decode("ascii")
    except UnicodeDecodeError:
        raise InvalidClientTokenId() from None
    return raw[:body_at], key_id, akid, raw[body_at:body_at + _NONCE], raw[body_at + _NONCE:]


def _aead(key: bytes) -> AESGCM:
    aead = _aead_cache.get(key)
    if aead is None:
        if len(_aead_cache) > 64:
            _aead_cache.clear()
        aead = _aead_cache[key] = AESGCM(key)
    return aead


def _micros(when: dt.datetime | None) -> int | None:
    if when is None:
        return None
    delta = when - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _when(micros: int | None) -> dt.datetime | None:
    return None if micros is None else _EPOCH + dt.timedelta(microseconds=micros)


def _encode(s: Session) -> bytes:
    doc = {
        "k": _KINDS[s.kind], "s": s.secret_access_key, "a": s.account_id, "p": s.principal_arn,
        "u": s.user_id, "su": s.source_user_name, "sk": s.source_access_key_id,
        "rn": s.role_name, "ri": s.role_id, "sn": s.session_name, "si": s.source_identity,
        "m": int(s.mfa_authenticated), "mt": _micros(s.mfa_auth_time), "i": _micros(s.issued_at),
        "e": _micros(s.expires_at), "c": int(s.chained), "sp": s.session_policy,
        "pa": list(s.policy_arns), "t": [list(t) for t in s.tags], "tt": list(s.transitive_tag_keys),
        "ms": s.mfa_serial, "rp": s.role_path,
    }
    text = json.dumps({k: v for k, v in doc.items() if v not in (None, [])},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > _COMPRESS_FROM:
        packed = zlib.compress(text, 6)
        if len(packed) < len(text):
            return _ZLIB + packed
    return _RAW + text


def _decode(plaintext: bytes, akid: str) -> Session:
    flag, body = plaintext[:1], plaintext[1:]
    if flag == _ZLIB:
        inflater = zlib.decompressobj()
        body = inflater.decompress(body, _MAX_PLAINTEXT)
        if inflater.unconsumed_tail:
            raise ValueError("session too large")
    elif flag != _RAW:
        raise ValueError("unknown encoding")
    d = json.loads(body)
    return Session(
        kind=_KIND_NAMES[d["k"]], access_key_id=akid, secret_access_key=d["s"], account_id=d["a"],
        principal_arn=d["p"], user_id=d["u"], source_user_name=d.get("su"),
        source_access_key_id=d["sk"], role_name=d.get("rn"), role_id=d.get("ri"),
        session_name=d.get("sn"), source_identity=d.get("si"), mfa_authenticated=bool(d["m"]),
        mfa_auth_time=_when(d.get("mt")), issued_at=_when(d["i"]), expires_at=_when(d["e"]),
        chained=bool(d["c"]), session_policy=d.get("sp"), policy_arns=tuple(d.get("pa", ())),
        tags=tuple((k, v) for k, v in d.get("t", ())), transitive_tag_keys=tuple(d.get("tt", ())),
        mfa_serial=d.get("ms"), role_path=d.get("rp"),
    )

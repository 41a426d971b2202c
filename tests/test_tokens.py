"""Sealed session tokens (sts_backend/tokens.py): round trip, tamper, rotation."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import pytest

from sts_backend.errors import InvalidClientTokenId
from sts_backend.records import Session
from sts_backend.tokens import new_token_key, peek_access_key_id, seal, unseal

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)


def make_session(**changes) -> Session:
    base = Session(
        kind="AssumeRole", access_key_id="ASIAEXAMPLEEXAMPLE01", secret_access_key="s" * 40,
        account_id="123456789012", principal_arn="arn:aws:sts::123456789012:assumed-role/app/web-1",
        user_id="AROAEXAMPLEEXAMPLE012:web-1", source_user_name="alice",
        source_access_key_id="AKIAEXAMPLEEXAMPLE01", role_name="app", role_id="AROAEXAMPLEEXAMPLE012",
        session_name="web-1", source_identity="alice@example", mfa_authenticated=True,
        mfa_auth_time=T0 - dt.timedelta(minutes=5), issued_at=T0, expires_at=T0 + dt.timedelta(hours=1),
        chained=False, session_policy=None, policy_arns=("arn:aws:iam::aws:policy/ReadOnlyAccess",),
        tags=(("team", "blue"), ("env", "prod")),
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def keys():
    return {1: new_token_key(), 2: new_token_key()}


def test_round_trip_keeps_every_field(keys):
    session = make_session()
    token = seal(session, 1, keys[1])
    assert unseal(token, keys) == session
    assert unseal(token, keys, access_key_id=session.access_key_id) == session
    assert 300 < len(token) < 1200
    base64.b64decode(token, validate=True)


@pytest.mark.parametrize("kind", ["GetSessionToken", "GetFederationToken", "AssumeRoleWithWebIdentity"])
def test_round_trip_minimal_sessions(keys, kind):
    session = make_session(kind=kind, role_name=None, role_id=None, session_name=None, source_identity=None,
                           mfa_authenticated=False, mfa_auth_time=None, policy_arns=(), tags=(),
                           source_user_name="")
    assert unseal(seal(session, 2, keys[2]), keys) == session


def test_long_policy_is_compressed_and_survives(keys):
    policy = '{"Version":"2012-10-17","Statement":[' + ",".join(
        '{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bucket-%d/*"}' % i for i in range(25)
    ) + "]}"
    assert len(policy) > 2000
    session = make_session(session_policy=policy)
    token = seal(session, 1, keys[1])
    assert len(token) < len(policy)
    assert unseal(token, keys).session_policy == policy


def test_each_seal_uses_a_fresh_nonce(keys):
    session = make_session()
    assert seal(session, 1, keys[1]) != seal(session, 1, keys[1])


def test_every_flipped_byte_is_refused(keys):
    raw = bytearray(base64.b64decode(seal(make_session(), 1, keys[1])))
    for i in range(len(raw)):
        tampered = bytearray(raw)
        tampered[i] ^= 0x01
        with pytest.raises(InvalidClientTokenId):
            unseal(base64.b64encode(bytes(tampered)).decode(), keys)


@pytest.mark.parametrize("garbage", ["", "not base64!!", "AAAA", "Zm9v", "x" * 9000, "é" * 12])
def test_garbage_is_refused(keys, garbage):
    with pytest.raises(InvalidClientTokenId):
        unseal(garbage, keys)


def test_truncated_token_is_refused(keys):
    token = seal(make_session(), 1, keys[1])
    raw = base64.b64decode(token)
    with pytest.raises(InvalidClientTokenId):
        unseal(base64.b64encode(raw[:-1]).decode(), keys)


def test_wrong_access_key_id_is_refused(keys):
    token = seal(make_session(), 1, keys[1])
    with pytest.raises(InvalidClientTokenId):
        unseal(token, keys, access_key_id="ASIAEXAMPLEEXAMPLE02")


def test_relabelled_header_is_refused(keys):
    """Swapping the clear access key id breaks the associated data."""
    token = seal(make_session(), 1, keys[1])
    raw = base64.b64decode(token).replace(b"ASIAEXAMPLEEXAMPLE01", b"ASIAEXAMPLEEXAMPLE02")
    forged = base64.b64encode(raw).decode()
    assert peek_access_key_id(forged) == "ASIAEXAMPLEEXAMPLE02"
    with pytest.raises(InvalidClientTokenId):
        unseal(forged, keys)


def test_rotation_old_key_keeps_verifying_unknown_key_refused(keys):
    old = seal(make_session(), 1, keys[1])
    new = seal(make_session(), 2, keys[2])
    assert unseal(old, keys) == unseal(new, keys)
    with pytest.raises(InvalidClientTokenId):
        unseal(old, {2: keys[2]})
    with pytest.raises(InvalidClientTokenId):
        unseal(new, {2: keys[1]})  # same id, another key


def test_repr_and_token_leak_no_secret(keys):
    session = make_session()
    token = seal(session, 1, keys[1])
    assert "s" * 40 not in repr(session)
    assert "s" * 40 not in token and "c3Nzc3Nz" not in token
    assert peek_access_key_id(token) == session.access_key_id

"""What a caller with stolen keys can try against the backend: guessing MFA codes, flooding STS.

Through the whole app with no sockets (``tests.test_sts_ops.Kit``), on a
``FixedClock`` the tests move. The throttle's own clock is injected too.
"""

from __future__ import annotations

import json
import os

import pytest

from sts_backend import mfa, sts
from sts_backend.app import Backend
from sts_backend.store import Store
from sts_backend.throttle import KeyThrottle
from tests.test_sts_ops import Kit, expect, trust

WRONG = "000000"


def _wrong(kit: Kit, seed: str) -> str:
    """A code that is wrong at every step the backend accepts now."""
    step = mfa.timecode(kit.clock.now())
    good = {mfa.code_at(seed, s) for s in range(step - 1, step + 2)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in good)


@pytest.fixture
def kit(tmp_path):
    k = Kit(str(tmp_path / "data"))
    yield k
    k.close()


def _audit(kit: Kit) -> list[dict]:
    return [json.loads(line) for line in open(os.path.join(kit.data_dir, "audit.log"))]


def test_five_wrong_codes_lock_the_device_and_even_the_right_code_is_refused(kit):
    alice = kit.user("alice")
    serial, seed = kit.mfa_device("alice")
    wrong = _wrong(kit, seed)
    for _ in range(4):
        assert expect("AccessDenied", alice.sts, "GetSessionToken", SerialNumber=serial,
                      TokenCode=wrong).message == sts.BAD_MFA_CODE
    fifth = expect("AccessDenied", alice.sts, "GetSessionToken", SerialNumber=serial, TokenCode=wrong)
    assert fifth.status == 403
    lockouts = [r for r in _audit(kit) if r.get("event") == "mfa_lockout"]
    assert len(lockouts) == 1 and lockouts[0]["mfa_serial"] == serial and lockouts[0]["action"] == "GetSessionToken"
    # locked: the right code is refused without being looked at (and so not used up)
    right = kit.code(seed, 0)
    assert expect("AccessDenied", alice.sts, "GetSessionToken", SerialNumber=serial,
                  TokenCode=right).message == sts.MFA_LOCKED
    assert expect("AccessDenied", alice.sts, "AssumeRole", RoleArn=kit.role("r", trust("arn:aws:iam::123456789012:user/alice")),
                  RoleSessionName="s1", SerialNumber=serial, TokenCode=right).message == sts.MFA_LOCKED
    kit.clock.advance(mfa.MFA_LOCKOUT_SECONDS)
    assert "Credentials" in alice.sts("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, 0))


def test_the_lockout_doubles_until_a_good_code_and_survives_a_restart(kit, tmp_path):
    alice = kit.user("alice")
    serial, seed = kit.mfa_device("alice")

    def lock():
        wrong = _wrong(kit, seed)
        for _ in range(mfa.MFA_FAILURES_BEFORE_LOCKOUT):
            expect("AccessDenied", alice.sts, "GetSessionToken", SerialNumber=serial, TokenCode=wrong)

    lock()
    kit.clock.advance(mfa.MFA_LOCKOUT_SECONDS)
    lock()  # the second lockout lasts twice as long
    kit.clock.advance(mfa.MFA_LOCKOUT_SECONDS + 30)
    # a restart: a new store and backend on the same data dir still know the lockout
    kit.store.close()
    kit.store = Store.open(kit.data_dir, kit.clock)
    kit.backend = Backend(kit.store, kit.clock, kit.audit)
    assert expect("AccessDenied", alice.sts, "GetSessionToken", SerialNumber=serial,
                  TokenCode=kit.code(seed, 0)).message == sts.MFA_LOCKED
    kit.clock.advance(mfa.MFA_LOCKOUT_SECONDS)
    assert "Credentials" in alice.sts("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, 0))
    assert kit.store.mfa_failures(serial) is None  # a good code forgets the history


def test_failures_outside_the_window_do_not_add_up(kit):
    alice = kit.user("alice")
    serial, seed = kit.mfa_device("alice")
    for _ in range(3 * mfa.MFA_FAILURES_BEFORE_LOCKOUT):
        expect("AccessDenied", alice.sts, "GetSessionToken", SerialNumber=serial, TokenCode=_wrong(kit, seed))
        kit.clock.advance(mfa.MFA_FAILURE_WINDOW_SECONDS / (mfa.MFA_FAILURES_BEFORE_LOCKOUT - 1) + 1)
    assert not [r for r in _audit(kit) if r.get("event") == "mfa_lockout"]
    assert "Credentials" in alice.sts("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, 0))


def test_lockout_numbers_are_quotas(kit):
    kit.store.set_quota("MfaFailuresBeforeLockout", 2)
    kit.store.set_quota("MfaLockoutSeconds", 60)
    alice = kit.user("alice")
    serial, seed = kit.mfa_device("alice")
    for _ in range(2):
        expect("AccessDenied", alice.sts, "GetSessionToken", SerialNumber=serial, TokenCode=_wrong(kit, seed))
    assert expect("AccessDenied", alice.sts, "GetSessionToken", SerialNumber=serial,
                  TokenCode=kit.code(seed, 0)).message == sts.MFA_LOCKED
    kit.clock.advance(60)
    assert "Credentials" in alice.sts("GetSessionToken", SerialNumber=serial, TokenCode=kit.code(seed, 0))


def test_lockout_policy_table():
    import datetime as dt

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    state, locked = None, False
    for i in range(5):
        state, locked = mfa.after_failure(state, t0 + dt.timedelta(seconds=i), limit=5, window=300, lockout=300)
    assert locked and mfa.locked(state, t0 + dt.timedelta(seconds=303)) and not mfa.locked(state, t0 + dt.timedelta(seconds=305))
    for lockouts, seconds in ((1, 600), (2, 1200), (20, mfa.MAX_LOCKOUT_SECONDS)):
        previous = mfa.FailureState(4, t0.timestamp(), 0.0, lockouts)
        after, locked = mfa.after_failure(previous, t0, limit=5, window=300, lockout=300)
        assert locked and after.locked_until - t0.timestamp() == seconds and after.lockouts == lockouts + 1


# ---- throttling -----------------------------------------------------------------------------------


class FakeStore:
    def __init__(self, rate: int, burst: int) -> None:
        self.quotas = {"StsRequestsPerSecondPerKey": rate, "StsBurstPerKey": burst}

    def quota(self, name: str) -> int:
        return self.quotas[name]


def test_token_bucket_burst_refill_and_off():
    now = [0.0]
    throttle = KeyThrottle(clock=lambda: now[0])
    store = FakeStore(50, 100)
    assert sum(throttle.allow("AKIA1", store) for _ in range(150)) == 100  # the burst
    assert throttle.allow("AKIA2", store)  # another key has its own bucket
    now[0] += 0.1  # five tokens back
    assert sum(throttle.allow("AKIA1", store) for _ in range(10)) == 5
    store.quotas["StsRequestsPerSecondPerKey"] = 0
    now[0] += 5  # the limits are read again
    assert all(throttle.allow("AKIA1", store) for _ in range(1000))


def test_forgotten_keys_start_with_a_full_bucket_and_memory_stays_bounded():
    now = [0.0]
    throttle = KeyThrottle(clock=lambda: now[0], max_keys=3)
    store = FakeStore(1, 2)
    for key in ("A", "B", "C", "D"):
        assert throttle.allow(key, store)
    assert len(throttle._buckets) == 3


def test_a_flood_of_sts_calls_is_answered_throttling_400(kit):
    kit.store.set_quota("StsRequestsPerSecondPerKey", 1)
    kit.store.set_quota("StsBurstPerKey", 3)
    kit.backend.throttle = KeyThrottle(clock=lambda: 0.0)
    alice = kit.user("alice")
    for _ in range(3):
        alice.sts("GetCallerIdentity")
    refused = expect("Throttling", alice.sts, "GetCallerIdentity")
    assert refused.status == 400 and refused.message == "Rate exceeded"
    assert kit.admin.sts("GetCallerIdentity")  # another key is not held back
    kit.admin.iam("ListUsers")  # IAM is not throttled


def test_botocore_sees_a_retryable_throttling_error(kit):
    """The SDKs back off from ``Throttling``: botocore classifies it as a throttling error."""
    import botocore.session
    from botocore.retries.standard import RetryContext, ThrottledRetryableChecker

    kit.store.set_quota("StsRequestsPerSecondPerKey", 1)
    kit.store.set_quota("StsBurstPerKey", 1)
    kit.backend.throttle = KeyThrottle(clock=lambda: 0.0)
    alice = kit.user("alice")
    alice.sts("GetCallerIdentity")
    response = alice.raw("sts", "GetCallerIdentity")
    parser = botocore.session.get_session().get_component("response_parser_factory").create_parser("query")
    model = botocore.session.get_session().get_service_model("sts").operation_model("GetCallerIdentity")
    parsed = parser.parse({"status_code": response.status_code, "headers": dict(response.headers),
                           "body": response.content}, model.output_shape)
    context = RetryContext(attempt_number=1, operation_model=model, parsed_response=parsed,
                           http_response=type("R", (), {"status_code": response.status_code})())
    assert parsed["Error"]["Code"] == "Throttling" and ThrottledRetryableChecker().is_retryable(context)

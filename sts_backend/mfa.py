"""Virtual MFA: RFC 6238 TOTP checks, seeds, the otpauth URI and its QR code.

Theory of operation
-------------------
Codes are RFC 6238 TOTP: HMAC-SHA-1, 30-second steps, 6 digits (sts-iam.md §8;
the AWS otpauth URI carries no algorithm/period/digits, so authenticator apps use
these defaults). A *timecode* is ``floor(unix_time / 30)``.

Single use: every device keeps ``last_timecode``, the highest step ever accepted.
A code is good only for a step newer than that, so a code (and any older one) is
accepted at most once. The functions here are pure: they *find* the step a code
belongs to; the caller then records it with ``Store.consume_totp`` (an atomic
compare-and-set), which is what makes "at most once" hold across processes.

Windows (in steps of 30 s, relative to the server's current step ``n``):

- sign-in (``verify_code``): steps ``n-1 .. n+1`` — RFC 6238 §5.2 recommends at
  most one step of network delay/drift;
- enable (``verify_enable_codes``): two consecutive codes for steps ``t, t+1`` with
  ``t`` in ``n-2 .. n+1``. AWS enables a device even when the codes were "submitted
  too late" (EnableMFADevice API doc), so codes typed over the last minute or so
  still count; ``t+1`` becomes ``last_timecode``. Enabling with the previous and
  the current code therefore leaves the *next* step's code usable at once;
- resync (``verify_resync_codes``): the same test with ``t`` in ``n-10 .. n+10``
  (±5 minutes), for a device whose clock has wandered. The device's offset is not
  stored (``MfaDevice`` has no drift field), so sign-in stays at ±1 step.

Every code comparison is constant-time (``hmac.compare_digest``). Nothing here logs,
and no seed or code appears in an exception message.
"""

from __future__ import annotations

import datetime as dt
import hmac
import io
import urllib.parse
from dataclasses import dataclass

import pyotp
import segno

STEP_SECONDS = 30
DIGITS = 6
SEED_LENGTH = 64  # base32 characters (320 bits), like moto's and AWS's observed seeds
SIGN_IN_DRIFT = 1
ENABLE_WINDOW = (-2, 1)
RESYNC_WINDOW = (-10, 10)


def timecode(now: dt.datetime) -> int:
    """The TOTP step of ``now`` (an aware datetime): ``floor(unix / 30)``."""
    return int(now.timestamp()) // STEP_SECONDS


def code_at(seed: str, step: int) -> str:
    """The 6-digit code of ``seed`` for TOTP step ``step``."""
    return pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def _well_formed(code: str) -> bool:
    return isinstance(code, str) and len(code) == DIGITS and code.isascii() and code.isdigit()


def _matches(seed: str, code: str, step: int) -> bool:
    return hmac.compare_digest(code_at(seed, step).encode(), code.encode())


def verify_code(seed: str, code: str, now: dt.datetime, last_timecode: int) -> int | None:
    """Find the step ``code`` belongs to, within ±1 step of ``now``.

    Args:
        seed: the device's base32 seed.
        code: the 6-digit code the user typed.
        now: the server's current time (aware).
        last_timecode: the highest step this device already accepted.

    Returns:
        The matched step if it is newer than ``last_timecode``, else None (wrong
        code, too old or too new, or already used). Record the step with
        ``Store.consume_totp`` before trusting it.
    """
    if not _well_formed(code):
        return None
    current = timecode(now)
    for step in range(current - SIGN_IN_DRIFT, current + SIGN_IN_DRIFT + 1):
        if step > last_timecode and _matches(seed, code, step):
            return step
    return None


def _consecutive(seed: str, code1: str, code2: str, now: dt.datetime,
                 last_timecode: int, window: tuple[int, int]) -> int | None:
    if not (_well_formed(code1) and _well_formed(code2)):
        return None
    current = timecode(now)
    for step in range(current + window[0], current + window[1] + 1):
        if step > last_timecode and _matches(seed, code1, step) and _matches(seed, code2, step + 1):
            return step + 1
    return None


def verify_enable_codes(seed: str, code1: str, code2: str, now: dt.datetime,
                        last_timecode: int = 0) -> int | None:
    """Check EnableMFADevice's two consecutive codes (steps ``t``, ``t+1``).

    Returns:
        ``t+1`` — the new ``last_timecode`` — or None when the codes are not two
        consecutive codes of this seed with ``t`` in ``now-2 .. now+1`` steps.
    """
    return _consecutive(seed, code1, code2, now, last_timecode, ENABLE_WINDOW)


def verify_resync_codes(seed: str, code1: str, code2: str, now: dt.datetime,
                        last_timecode: int) -> int | None:
    """Check ResyncMFADevice's two consecutive codes, ``t`` within ±10 steps of now.

    Returns:
        ``t+1`` (the new ``last_timecode``; always newer than the old one) or None.
    """
    return _consecutive(seed, code1, code2, now, last_timecode, RESYNC_WINDOW)


def new_seed() -> str:
    """A fresh 64-character base32 seed from ``secrets`` (via pyotp)."""
    return pyotp.random_base32(SEED_LENGTH)


def otpauth_uri(device_name: str, account_name: str, seed: str) -> str:
    """``otpauth://totp/$virtualMFADeviceName@$AccountName?secret=$Base32String``.

    The form is the one the IAM model documents for ``QRCodePNG``; ``account_name``
    is the user name when known, else the account id. Label parts are
    percent-encoded (IAM names never need it in practice).
    """
    label = f"{urllib.parse.quote(device_name, safe='')}@{urllib.parse.quote(account_name, safe='')}"
    return f"otpauth://totp/{label}?secret={seed}"


def qr_png(uri: str, scale: int = 5) -> bytes:
    """A PNG image of a QR code holding ``uri`` (error correction M, 4-module border)."""
    buffer = io.BytesIO()
    segno.make(uri, error="m", micro=False).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


# ---- failed codes and lockouts --------------------------------------------------------------
#
# Rule: a device counts its failed codes (a wrong code, or a replayed one) durably in the
# store. MFA_FAILURES_BEFORE_LOCKOUT failures within MFA_FAILURE_WINDOW seconds of the
# first of them lock the device for MFA_LOCKOUT_SECONDS, doubled for each lockout since
# the device last accepted a code (capped at MAX_LOCKOUT_SECONDS). While locked, no code
# is even checked: the right one is refused like a wrong one, so the lock cannot be used
# as an oracle. A good code clears the count and the lockout history. The numbers are
# quotas (``rolecall backend set-quota``); these are their defaults.

MFA_FAILURES_BEFORE_LOCKOUT = 5
MFA_FAILURE_WINDOW_SECONDS = 300
MFA_LOCKOUT_SECONDS = 300
MAX_LOCKOUT_SECONDS = 24 * 3600


@dataclass(frozen=True)
class FailureState:
    """A device's failed codes: how many since ``first_failure``, and its lockouts (unix seconds)."""

    failures: int
    first_failure: float
    locked_until: float
    lockouts: int


def locked(state: FailureState | None, now: dt.datetime) -> bool:
    """Whether the device refuses codes at ``now``."""
    return state is not None and now.timestamp() < state.locked_until


def after_failure(state: FailureState | None, now: dt.datetime, *, limit: int, window: int,
                  lockout: int) -> tuple[FailureState, bool]:
    """The state after one more failed code at ``now``, and whether it starts a lockout.

    Args:
        state: the device's state before, or None (no failures recorded).
        now: when the code failed.
        limit: failures within ``window`` that lock the device.
        window: seconds from the first failure in which they count.
        lockout: seconds of the first lockout (doubled for each further one).
    """
    t = now.timestamp()
    if state is None or t - state.first_failure >= window:
        failures, first = 1, t
    else:
        failures, first = state.failures + 1, state.first_failure
    lockouts = state.lockouts if state is not None else 0
    if failures < limit:
        return FailureState(failures, first, state.locked_until if state else 0.0, lockouts), False
    seconds = min(lockout * 2 ** min(lockouts, 32), MAX_LOCKOUT_SECONDS)
    return FailureState(0, t, t + seconds, lockouts + 1), True

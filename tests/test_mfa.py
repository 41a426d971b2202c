"""TOTP checks, seeds, the otpauth URI and the QR code (sts_backend.mfa)."""

from __future__ import annotations

import datetime as dt
import json
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
import segno

from sts_backend import mfa
from tests.conftest import need_tool

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "totp-rfc6238.json"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
OTHER_SEED = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
NOW = dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=dt.timezone.utc)
STEP = mfa.timecode(NOW)


def code(step_offset: int, seed: str = SEED) -> str:
    return mfa.code_at(seed, STEP + step_offset)


# ---- RFC 6238 vectors --------------------------------------------------------------------

def _vectors() -> dict:
    if not VECTORS.is_file():
        pytest.skip(f"{VECTORS} not present (the shared/ folder beside the repo)")
    return json.loads(VECTORS.read_text())


def test_rfc6238_sha1_vectors():
    vectors = _vectors()
    assert vectors["step_seconds"] == mfa.STEP_SECONDS
    for case in vectors["cases"]:
        when = dt.datetime.fromtimestamp(case["unix_time"], dt.timezone.utc)
        assert mfa.code_at(vectors["secret_base32"], mfa.timecode(when)) == case["totp6"]


def test_rfc6238_vectors_verify():
    vectors = _vectors()
    for case in vectors["cases"]:
        when = dt.datetime.fromtimestamp(case["unix_time"], dt.timezone.utc)
        assert mfa.verify_code(vectors["secret_base32"], case["totp6"], when, 0) == mfa.timecode(when)


# ---- sign-in codes -----------------------------------------------------------------------

def test_current_code_accepted_and_returns_step():
    assert mfa.verify_code(SEED, code(0), NOW, 0) == STEP


@pytest.mark.parametrize("offset", [-1, 1])
def test_one_step_of_drift_accepted(offset):
    assert mfa.verify_code(SEED, code(offset), NOW, 0) == STEP + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_two_steps_of_drift_refused(offset):
    assert mfa.verify_code(SEED, code(offset), NOW, 0) is None


def test_wrong_code_refused():
    wrong = f"{(int(code(0)) + 1) % 1_000_000:06d}"
    assert mfa.verify_code(SEED, wrong, NOW, 0) is None


def test_replayed_code_refused():
    step = mfa.verify_code(SEED, code(0), NOW, 0)
    assert mfa.verify_code(SEED, code(0), NOW, step) is None


def test_older_code_after_newer_refused():
    assert mfa.verify_code(SEED, code(-1), NOW, STEP) is None


def test_another_devices_code_refused():
    assert code(0, OTHER_SEED) != code(0)
    assert mfa.verify_code(SEED, code(0, OTHER_SEED), NOW, 0) is None


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "12345a", "١٢٣٤٥٦", " 12345"])
def test_malformed_codes_refused(bad):
    assert mfa.verify_code(SEED, bad, NOW, 0) is None


# ---- enable ------------------------------------------------------------------------------

def test_enable_with_previous_and_current_code():
    last = mfa.verify_enable_codes(SEED, code(-1), code(0), NOW)
    assert last == STEP


def test_enable_then_next_steps_code_usable_at_once():
    last = mfa.verify_enable_codes(SEED, code(-1), code(0), NOW)
    assert mfa.verify_code(SEED, code(1), NOW, last) == STEP + 1
    assert mfa.verify_code(SEED, code(0), NOW, last) is None


@pytest.mark.parametrize("first", [-2, -1, 0, 1])
def test_enable_window(first):
    assert mfa.verify_enable_codes(SEED, code(first), code(first + 1), NOW) == STEP + first + 1


@pytest.mark.parametrize("first", [-4, -3, 2, 3])
def test_enable_outside_window_refused(first):
    assert mfa.verify_enable_codes(SEED, code(first), code(first + 1), NOW) is None


def test_enable_non_consecutive_codes_refused():
    assert mfa.verify_enable_codes(SEED, code(-1), code(1), NOW) is None
    assert mfa.verify_enable_codes(SEED, code(0), code(-1), NOW) is None
    assert mfa.verify_enable_codes(SEED, code(0), code(0), NOW) is None


def test_enable_refuses_used_steps():
    assert mfa.verify_enable_codes(SEED, code(-1), code(0), NOW, last_timecode=STEP - 1) is None


# ---- resync ------------------------------------------------------------------------------

@pytest.mark.parametrize("first", [-10, -5, 0, 5, 10])
def test_resync_window(first):
    assert mfa.verify_resync_codes(SEED, code(first), code(first + 1), NOW, 0) == STEP + first + 1


@pytest.mark.parametrize("first", [-12, -11, 11, 12])
def test_resync_outside_window_refused(first):
    assert mfa.verify_resync_codes(SEED, code(first), code(first + 1), NOW, 0) is None


def test_resync_must_be_newer_than_last_use():
    assert mfa.verify_resync_codes(SEED, code(-3), code(-2), NOW, STEP) is None
    assert mfa.verify_resync_codes(SEED, code(1), code(2), NOW, STEP) == STEP + 2


# ---- seeds, URI, QR ----------------------------------------------------------------------

def test_new_seed_is_64_base32_chars_and_random():
    seeds = {mfa.new_seed() for _ in range(20)}
    assert len(seeds) == 20
    for seed in seeds:
        assert len(seed) == 64 and set(seed) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        mfa.code_at(seed, STEP)  # usable by pyotp


def test_otpauth_uri_form():
    assert mfa.otpauth_uri("alice-phone", "123456789012", SEED) == \
        f"otpauth://totp/alice-phone@123456789012?secret={SEED}"


def _png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        data = png[at + 8:at + 8 + length]
        crc = struct.unpack(">I", png[at + 8 + length:at + 12 + length])[0]
        assert crc == zlib.crc32(kind + data)
        chunks.append((kind, data))
        at += 12 + length
    return chunks


def test_qr_png_is_a_valid_png_of_the_uri_matrix():
    uri = mfa.otpauth_uri("dev", "123456789012", SEED)
    png = mfa.qr_png(uri, scale=5)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks = _png_chunks(png)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height = struct.unpack(">II", chunks[0][1][:8])
    modules = segno.make(uri, error="m", micro=False).symbol_size(scale=1, border=4)
    assert (width, height) == (modules[0] * 5, modules[1] * 5)
    idat = b"".join(data for kind, data in chunks if kind == b"IDAT")
    assert zlib.decompress(idat)  # the image data inflates


def test_qr_png_decodes_to_the_uri_with_zbarimg(tmp_path):
    zbarimg = need_tool("zbarimg")  # Debian package zbar-tools
    uri = mfa.otpauth_uri("dev", "123456789012", SEED)
    image = tmp_path / "qr.png"
    image.write_bytes(mfa.qr_png(uri))
    out = subprocess.run([zbarimg, "--quiet", "--raw", str(image)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == uri

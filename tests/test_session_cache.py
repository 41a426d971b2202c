"""The session cache: entries, files and modes, malformed entries, locks, timestamps (wire.session_cache)."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from wire.session_cache import CacheEntry, CacheError, SessionCache, default_cache_dir, format_z, parse_z

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[1]
# Fake values: distinctive enough that a leak into a repr is unmistakable.
SECRET = "sEcReT/Example+Key=zz0001"
TOKEN = "ToKeN/session+value==0001"
OTHER_UID = 65534  # nobody


def entry(**changes) -> CacheEntry:
    fields = dict(kind="profile", profile="dev", profiles=("dev", "base"), access_key_id="ASIAEXAMPLE0001",
                  secret_access_key=SECRET, session_token=TOKEN, expiration=T0 + dt.timedelta(hours=1),
                  created=T0, mfa_serial="arn:aws:iam::123456789012:mfa/alice", account_id="123456789012",
                  role_arn="arn:aws:sts::123456789012:assumed-role/dev/s")
    fields.update(changes)
    return CacheEntry(**fields)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def cache_dir(aws_sandbox) -> Path:
    return aws_sandbox / ".cache" / "rolecall"


@pytest.fixture
def cache(cache_dir) -> SessionCache:
    return SessionCache(str(cache_dir))


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")


# ---- the directory -----------------------------------------------------------------------

def test_default_cache_dir():
    assert default_cache_dir({"XDG_CACHE_HOME": "/x/cache", "HOME": "/home/u"}) == "/x/cache/rolecall"
    assert default_cache_dir({"HOME": "/home/u"}) == "/home/u/.cache/rolecall"
    assert default_cache_dir({"XDG_CACHE_HOME": "", "HOME": "/home/u"}) == "/home/u/.cache/rolecall"


def test_default_directory_follows_the_environment(aws_sandbox):
    assert SessionCache().directory == str(aws_sandbox / ".cache" / "rolecall")


def test_put_creates_the_directory_0700_and_the_file_0600(cache, cache_dir):
    old = os.umask(0)  # the modes must not depend on the caller's umask
    try:
        cache.put("k", entry())
    finally:
        os.umask(old)
    assert mode(cache_dir) == 0o700
    assert mode(cache_dir / "k.json") == 0o600
    assert stat.S_ISREG(os.lstat(cache_dir / "k.json").st_mode)


def test_existing_wide_directory_is_narrowed(cache, cache_dir):
    cache_dir.mkdir(parents=True)
    os.chmod(cache_dir, 0o755)
    cache.put("k", entry())
    assert mode(cache_dir) == 0o700
    os.chmod(cache_dir, 0o777)
    fd = cache.try_lock("k")
    SessionCache.unlock(fd)
    assert mode(cache_dir) == 0o700


def test_nothing_is_created_by_reading(cache, cache_dir):
    assert cache.get("k") is None
    assert list(cache.items()) == []
    assert cache.clear() == 0 and cache.clear("dev") == 0
    assert cache.delete("k") is False
    assert not cache_dir.exists()


@pytest.mark.parametrize("op", ["put", "try_lock"])
def test_symlinked_directory_is_refused(cache, cache_dir, tmp_path, op):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    cache_dir.parent.mkdir(parents=True)
    cache_dir.symlink_to(real)
    with pytest.raises(CacheError) as info:
        cache.put("k", entry()) if op == "put" else cache.try_lock("k")
    assert info.value.errno == errno.ENOTDIR
    assert str(cache_dir) in str(info.value) and "\n" not in str(info.value)
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("op", ["put", "try_lock"])
def test_directory_that_is_a_file_is_refused(cache, cache_dir, op):
    cache_dir.parent.mkdir(parents=True)
    cache_dir.write_text("not a directory")
    with pytest.raises(CacheError):
        cache.put("k", entry()) if op == "put" else cache.try_lock("k")
    assert cache_dir.read_text() == "not a directory"


@pytest.mark.parametrize("op", ["put", "try_lock"])
def test_directory_of_another_user_is_refused(cache, cache_dir, op):
    need_root()
    cache_dir.mkdir(parents=True, mode=0o700)
    os.chown(cache_dir, OTHER_UID, OTHER_UID)
    with pytest.raises(CacheError) as info:
        cache.put("k", entry()) if op == "put" else cache.try_lock("k")
    assert info.value.errno == errno.EPERM
    assert str(cache_dir) in str(info.value) and "\n" not in str(info.value)
    assert list(cache_dir.iterdir()) == []
    assert mode(cache_dir) == 0o700 and os.lstat(cache_dir).st_uid == OTHER_UID


def test_entries_in_a_directory_of_another_user_are_not_served(cache, cache_dir):
    need_root()
    cache.put("k", entry())
    os.chown(cache_dir / "k.json", OTHER_UID, OTHER_UID)
    os.chown(cache_dir, OTHER_UID, OTHER_UID)
    try:
        got = cache.get("k")
    except CacheError:
        got = None
    assert got is None


@pytest.mark.parametrize("key", ["", "../x", "a/b", ".x", ".", "..", "x\0y"])
def test_bad_keys_raise_value_error(cache, cache_dir, key):
    for call in (lambda: cache.get(key), lambda: cache.put(key, entry()), lambda: cache.delete(key),
                 lambda: cache.try_lock(key)):
        with pytest.raises(ValueError):
            call()
    assert not (cache_dir.parent / "x.json").exists()


# ---- entries -----------------------------------------------------------------------------

def test_round_trip(cache):
    e = entry()
    cache.put("k", e)
    got = cache.get("k")
    assert got == e
    assert got.expiration.tzinfo is not None and got.expiration.utcoffset() == dt.timedelta(0)
    assert isinstance(got.profiles, tuple)


def test_round_trip_without_optional_fields(cache, cache_dir):
    e = entry(kind="mfa-session", profiles=("dev",), mfa_serial=None, account_id=None, role_arn=None)
    cache.put("k", e)
    assert cache.get("k") == e
    doc = json.loads((cache_dir / "k.json").read_text())
    assert set(doc) == {"Kind", "Profile", "Profiles", "Created", "Credentials"}


def test_file_layout(cache, cache_dir):
    cache.put("k", entry())
    doc = json.loads((cache_dir / "k.json").read_text())
    assert doc == {"Kind": "profile", "Profile": "dev", "Profiles": ["dev", "base"], "Created": "2026-01-01T00:00:00Z",
                   "MfaSerial": "arn:aws:iam::123456789012:mfa/alice", "AccountId": "123456789012",
                   "RoleArn": "arn:aws:sts::123456789012:assumed-role/dev/s",
                   "Credentials": {"AccessKeyId": "ASIAEXAMPLE0001", "SecretAccessKey": SECRET,
                                   "SessionToken": TOKEN, "Expiration": "2026-01-01T01:00:00Z"}}


def test_timestamps_are_kept_to_the_second(cache):
    plus2 = dt.timezone(dt.timedelta(hours=2))
    e = entry(created=dt.datetime(2026, 1, 1, 2, 0, 5, 999_999, tzinfo=plus2),
              expiration=dt.datetime(2026, 1, 1, 1, 0, 0, 500_000, tzinfo=UTC))
    cache.put("k", e)
    got = cache.get("k")
    assert got.created == dt.datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert got.expiration == dt.datetime(2026, 1, 1, 1, 0, 0, tzinfo=UTC)
    assert got.created.tzinfo == UTC and got.expiration.tzinfo == UTC


def test_remaining():
    e = entry()
    assert e.remaining(T0) == 3600.0
    assert e.remaining(T0 + dt.timedelta(hours=2)) == -3600.0


def test_overwrite_is_an_atomic_replace(cache, cache_dir):
    cache.put("k", entry(access_key_id="ASIAOLD000000001"))
    with open(cache_dir / "k.json", "rb") as old:
        cache.put("k", entry(access_key_id="ASIANEW000000001"))
        # the old file was replaced, not rewritten in place: a reader holding it still sees it whole
        assert json.loads(old.read())["Credentials"]["AccessKeyId"] == "ASIAOLD000000001"
    assert cache.get("k").access_key_id == "ASIANEW000000001"
    assert sorted(os.listdir(cache_dir)) == ["k.json"]


def test_failed_put_leaves_no_temp_file_and_keeps_the_old_entry(cache, cache_dir):
    cache.put("k", entry())
    with pytest.raises((AttributeError, TypeError)):
        cache.put("k", entry(expiration=None))  # cannot be written
    assert sorted(os.listdir(cache_dir)) == ["k.json"]
    assert cache.get("k") == entry()


def test_put_replaces_a_symlink_instead_of_writing_through_it(cache, cache_dir, tmp_path):
    target = tmp_path / "victim"
    target.write_text("untouched")
    cache_dir.mkdir(parents=True, mode=0o700)
    (cache_dir / "k.json").symlink_to(target)
    cache.put("k", entry())
    assert target.read_text() == "untouched"
    assert not os.path.islink(cache_dir / "k.json") and mode(cache_dir / "k.json") == 0o600
    assert cache.get("k") == entry()


def test_get_does_not_follow_a_symlinked_entry(cache, cache_dir, tmp_path):
    cache.put("real", entry())
    (cache_dir / "link.json").symlink_to(cache_dir / "real.json")
    assert cache.get("real") == entry()
    assert cache.get("link") is None
    assert [k for k, _ in cache.items()] == ["real"]


def test_items_in_name_order_skipping_what_is_not_an_entry(cache, cache_dir):
    for key in ("b", "a", "c"):
        cache.put(key, entry(profile=key))
    (cache_dir / "broken.json").write_text("{")
    (cache_dir / ".hidden.json").write_text(json.dumps(entry().to_json()))
    (cache_dir / "notes.txt").write_text("x")
    fd = cache.try_lock("a")
    try:
        assert [(k, e.profile) for k, e in cache.items()] == [("a", "a"), ("b", "b"), ("c", "c")]
    finally:
        SessionCache.unlock(fd)


def test_delete(cache, cache_dir):
    cache.put("k", entry())
    cache.put("other", entry())
    assert cache.delete("k") is True
    assert cache.get("k") is None and cache.delete("k") is False
    assert cache.get("other") == entry()


def test_clear_all_including_unreadable_leftovers(cache, cache_dir):
    cache.put("a", entry())
    cache.put("b", entry(profile="other", profiles=("other",)))
    (cache_dir / "broken.json").write_text("not json")
    (cache_dir / "keep.txt").write_text("x")
    assert cache.clear() == 3
    assert sorted(os.listdir(cache_dir)) == ["keep.txt"]
    assert cache.clear() == 0


def test_clear_by_chain_membership(cache, cache_dir):
    cache.put("dev", entry(profile="dev", profiles=("dev", "base")))
    cache.put("prod", entry(profile="prod", profiles=("prod", "base")))
    cache.put("solo", entry(profile="solo", profiles=("solo",)))
    cache.put("session", entry(kind="mfa-session", profile="base", profiles=()))
    (cache_dir / "broken.json").write_text("{")
    assert cache.clear("dev") == 1
    assert [k for k, _ in cache.items()] == ["prod", "session", "solo"]
    assert cache.clear("base") == 2  # in prod's chain, and the session's own profile
    assert [k for k, _ in cache.items()] == ["solo"]
    assert cache.clear("nobody") == 0
    assert (cache_dir / "broken.json").exists()  # only clear() of everything removes what it cannot read


def test_clear_all_survives_a_stray_dot_file(cache, cache_dir):
    cache.put("a", entry())
    (cache_dir / ".stray.json").write_text("{}")
    assert cache.clear() >= 1
    assert cache.get("a") is None


def _valid_doc() -> dict:
    return entry().to_json()


def _without(path: tuple[str, ...]) -> dict:
    doc = _valid_doc()
    inner = doc
    for name in path[:-1]:
        inner = inner[name]
    del inner[path[-1]]
    return doc


def _with(path: tuple[str, ...], value) -> dict:
    doc = _valid_doc()
    inner = doc
    for name in path[:-1]:
        inner = inner[name]
    inner[path[-1]] = value
    return doc


MALFORMED = {
    "empty": b"",
    "not json": b"{not json",
    "truncated": json.dumps(_valid_doc()).encode()[:-10],
    "not utf-8": b'{"Kind": "\xff\xfe"}',
    "a list": b"[1, 2]",
    "a string": b'"x"',
    "null": b"null",
    "no credentials": json.dumps(_without(("Credentials",))).encode(),
    "credentials not an object": json.dumps(_with(("Credentials",), ["x"])).encode(),
    "no secret": json.dumps(_without(("Credentials", "SecretAccessKey"))).encode(),
    "empty token": json.dumps(_with(("Credentials", "SessionToken"), "")).encode(),
    "numeric key id": json.dumps(_with(("Credentials", "AccessKeyId"), 12)).encode(),
    "bad expiration": json.dumps(_with(("Credentials", "Expiration"), "tomorrow")).encode(),
    "numeric expiration": json.dumps(_with(("Credentials", "Expiration"), 1767225600)).encode(),
    "no created": json.dumps(_without(("Created",))).encode(),
    "bad created": json.dumps(_with(("Created",), None)).encode(),
    "no profiles": json.dumps(_without(("Profiles",))).encode(),
    "profiles null": json.dumps(_with(("Profiles",), None)).encode(),
    "no kind": json.dumps(_without(("Kind",))).encode(),
    "oversized": json.dumps(_valid_doc()).encode() + b" " * (64 * 1024),
}


@pytest.mark.parametrize("content", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_entries_are_absent_and_overwritten(cache, cache_dir, content):
    cache_dir.mkdir(parents=True, mode=0o700)
    (cache_dir / "k.json").write_bytes(content)
    assert cache.get("k") is None
    assert list(cache.items()) == []
    cache.put("k", entry())
    assert cache.get("k") == entry()


def test_deeply_nested_entry_is_absent(cache, cache_dir):
    cache_dir.mkdir(parents=True, mode=0o700)
    (cache_dir / "k.json").write_bytes(b"[" * 60_000)
    assert cache.get("k") is None


def test_entry_of_exactly_the_size_limit_is_read(cache, cache_dir):
    text = json.dumps(_valid_doc()).encode()
    cache_dir.mkdir(parents=True, mode=0o700)
    (cache_dir / "k.json").write_bytes(text + b" " * (64 * 1024 - len(text)))
    assert cache.get("k") == entry()
    (cache_dir / "k.json").write_bytes(text + b" " * (64 * 1024 - len(text) + 1))
    assert cache.get("k") is None


def test_entry_that_is_a_directory_is_absent(cache, cache_dir):
    (cache_dir / "k.json").mkdir(parents=True)
    assert cache.get("k") is None
    assert list(cache.items()) == []


def test_stray_optional_fields_of_the_wrong_type_are_dropped(cache, cache_dir):
    doc = _valid_doc()
    doc.update({"MfaSerial": 5, "AccountId": ["x"], "RoleArn": None})
    cache_dir.mkdir(parents=True, mode=0o700)
    (cache_dir / "k.json").write_text(json.dumps(doc))
    assert cache.get("k") == entry(mfa_serial=None, account_id=None, role_arn=None)


# ---- process output and repr -------------------------------------------------------------

def test_process_output():
    e = entry(expiration=dt.datetime(2026, 1, 1, 1, 2, 3, 456_789, tzinfo=UTC))
    out = e.process_output()
    assert out == {"Version": 1, "AccessKeyId": "ASIAEXAMPLE0001", "SecretAccessKey": SECRET, "SessionToken": TOKEN,
                   "Expiration": "2026-01-01T01:02:03Z", "AccountId": "123456789012"}
    assert type(out["Version"]) is int
    assert json.loads(json.dumps(out)) == out


def test_process_output_without_account_id():
    out = entry(account_id=None).process_output()
    assert "AccountId" not in out
    assert set(out) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}


def test_repr_hides_the_secret_and_the_token(cache):
    e = entry()
    for text in (repr(e), str(e), repr([e]), repr(cache)):
        assert SECRET not in text and TOKEN not in text
    assert "ASIAEXAMPLE0001" in repr(e) and "dev" in repr(e)


# ---- locks -------------------------------------------------------------------------------

def test_lock_excludes_a_second_taker_until_unlocked(cache, cache_dir):
    fd = cache.try_lock("k")
    assert isinstance(fd, int) and fd >= 0
    assert mode(cache_dir) == 0o700 and mode(cache_dir / "k.lock") == 0o600
    # a second open file description, even in this process, is refused
    assert cache.try_lock("k") is None
    assert SessionCache(str(cache_dir)).try_lock("k") is None
    other = cache.try_lock("other")  # locks are per key
    assert other is not None
    SessionCache.unlock(fd)
    again = cache.try_lock("k")
    assert again is not None
    SessionCache.unlock(again)
    SessionCache.unlock(other)


def test_refused_try_lock_leaks_no_descriptor(cache):
    fd = cache.try_lock("k")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        assert cache.try_lock("k") is None
    assert len(os.listdir("/proc/self/fd")) == before
    SessionCache.unlock(fd)


def test_lock_does_not_block_the_entry(cache):
    fd = cache.try_lock("k")
    try:
        cache.put("k", entry())
        assert cache.get("k") == entry()
    finally:
        SessionCache.unlock(fd)


def test_symlinked_lock_file_is_not_followed(cache, cache_dir, tmp_path):
    cache_dir.mkdir(parents=True, mode=0o700)
    target = tmp_path / "victim"
    (cache_dir / "k.lock").symlink_to(target)
    with pytest.raises(OSError):
        cache.try_lock("k")
    assert not target.exists()


_HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from wire.session_cache import SessionCache
fd = SessionCache(sys.argv[2]).try_lock(sys.argv[3])
print("locked" if fd is not None else "busy", flush=True)
time.sleep(60)
"""


def test_lock_held_by_another_process_is_released_when_it_dies(cache, cache_dir):
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(REPO), str(cache_dir), "k"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        assert cache.try_lock("k") is None
        child.kill()
        child.wait(timeout=10)
        fd = cache.try_lock("k")
        assert fd is not None
        SessionCache.unlock(fd)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        child.stdout.close()


def test_lock_is_not_inherited_by_child_processes(cache):
    fd = cache.try_lock("k")
    # close_fds=False: only O_CLOEXEC keeps the lock's descriptor out of the child
    child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                             close_fds=False, stdout=subprocess.PIPE)
    try:
        # the child has exec'd (until then it shares every descriptor, whatever O_CLOEXEC says)
        assert child.stdout.readline() == b"up\n"
        os.close(fd)  # our last reference: the lock goes unless the child holds a copy
        again = cache.try_lock("k")
        assert again is not None
        SessionCache.unlock(again)
    finally:
        child.kill()
        child.wait(timeout=10)


# ---- timestamps --------------------------------------------------------------------------

def test_format_z():
    assert format_z(T0) == "2026-01-01T00:00:00Z"
    assert format_z(dt.datetime(2026, 1, 1, 2, 3, 4, 999_999, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == \
        "2026-01-01T00:03:04Z"


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-01T00:00:00Z", T0),
    ("2026-01-01T00:00:00.5Z", T0 + dt.timedelta(microseconds=500_000)),
    ("2026-01-01T00:00:00.123456Z", T0 + dt.timedelta(microseconds=123_456)),
    ("2026-01-01T00:00:00+00:00", T0),
    ("2026-01-01T02:00:00+02:00", T0),
    ("2025-12-31T19:00:00-05:00", T0),
    ("2026-01-01T00:00:00", T0),
])
def test_parse_z(text, expected):
    got = parse_z(text)
    assert got == expected
    assert got.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("text", ["", "tomorrow", "2026-13-01T00:00:00Z", "2026-01-01T25:00:00Z"])
def test_parse_z_refuses_what_is_not_a_timestamp(text):
    with pytest.raises(ValueError):
        parse_z(text)


@pytest.mark.parametrize("when", [T0, T0 + dt.timedelta(days=400, seconds=7, microseconds=999_999),
                                  dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-7)))])
def test_parse_z_format_z_round_trip(when):
    text = format_z(when)
    assert parse_z(text) == when.replace(microsecond=0)
    assert format_z(parse_z(text)) == text

"""The key store (agent.keystore): long-term keys in a keyring, the index beside it, timeouts, errors."""

from __future__ import annotations

import datetime as dt
import json
import stat
import threading
from pathlib import Path

import keyring
import keyring.backend
import keyring.core
import pytest
import trio
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail
from keyring.errors import KeyringLocked, PasswordDeleteError

from agent.errors import KeyStoreError
from agent.keyring_file import EncryptedFileKeyring, keyring_path
from agent.keystore import DEFAULT_TIMEOUT, SERVICE, KeyStore, check_keys, default_backend, parse_keyring_name
from tests.conftest import EPOCH
from tests.clocks import FixedClock
from wire.key_index import index_path
from wire.sigv4 import Credentials

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


class MemoryKeyring(KeyringBackend):
    """A keyring in a dict, recording every call.

    keyring registers every concrete ``KeyringBackend`` subclass for its own backend
    detection; this one keeps the base class's ``priority`` (which raises), so it is
    never viable and never chosen by a ``keyring.get_keyring()`` elsewhere in the run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}
        self.calls: list[tuple[str, str, str]] = []

    def get_password(self, service, username):
        self.calls.append(("get", service, username))
        return self.items.get((service, username))

    def set_password(self, service, username, password):
        self.calls.append(("set", service, username))
        self.items[(service, username)] = password

    def delete_password(self, service, username):
        self.calls.append(("delete", service, username))
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(f"no {service}/{username}")


class DBusErrorResponse(Exception):
    """A stand-in for a Secret Service (jeepney) error."""


class FailingKeyring(MemoryKeyring):
    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def get_password(self, service, username):
        raise self.exc

    def set_password(self, service, username, password):
        raise self.exc

    def delete_password(self, service, username):
        raise self.exc


class BlockingKeyring(MemoryKeyring):
    """Every call waits for ``release`` (an unlock prompt nobody answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def _block(self):
        self.entered.set()
        self.release.wait(30)

    def get_password(self, service, username):
        self._block()
        return None

    def set_password(self, service, username, password):
        self._block()

    def delete_password(self, service, username):
        self._block()


@pytest.fixture
def data_home(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def environ(data_home) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(data_home), "HOME": "/nonexistent"}


@pytest.fixture
def ring() -> MemoryKeyring:
    return MemoryKeyring()


@pytest.fixture
def store(ring, environ) -> KeyStore:
    return KeyStore(ring, environ=environ, clock=FixedClock(EPOCH))


@pytest.fixture
def keyring_state(monkeypatch):
    """keyring.core's global backend is put back whatever a test does with it."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.core._keyring_backend)
    monkeypatch.setattr(keyring.backend, "_limit", keyring.backend._limit)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, repr(text)
    return text


def test_test_backends_are_never_viable():
    for cls in (MemoryKeyring, FailingKeyring, BlockingKeyring):
        assert not cls.viable


# ---- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("dev", ("rolecall", "dev")),
    ("corp/alice", ("corp", "alice")),
    ("corp/team/alice", ("corp", "team/alice")),
    ("/alice", ("rolecall", "/alice")),
    ("corp/", ("rolecall", "corp/")),
])
def test_parse_keyring_name(name, expected):
    assert parse_keyring_name(name) == expected
    assert SERVICE == "rolecall"


# ---- put / get ------------------------------------------------------------------------------------

async def test_put_get_round_trip(store, ring):
    await store.put("dev", KEY_ID, SECRET)
    assert list(ring.items) == [("rolecall", "dev")]
    assert json.loads(ring.items[("rolecall", "dev")]) == {"AccessKeyId": KEY_ID, "SecretAccessKey": SECRET}
    creds = await store.get("dev")
    assert creds == Credentials(KEY_ID, SECRET, None)
    assert SECRET not in repr(creds) and SECRET not in repr(store)


async def test_service_slash_name_is_another_service(store, ring):
    await store.put("corp/alice", KEY_ID, SECRET)
    assert list(ring.items) == [("corp", "alice")]
    assert (await store.get("corp/alice")).secret_access_key == SECRET
    assert await store.get("alice") is None  # rolecall/alice is another entry
    assert ring.calls[-1] == ("get", "rolecall", "alice")


async def test_get_missing_is_none(store, ring):
    assert await store.get("nobody") is None
    assert ring.calls == [("get", "rolecall", "nobody")]


async def test_session_token_in_the_entry_is_kept(store, ring):
    ring.items[("rolecall", "dev")] = json.dumps({"AccessKeyId": KEY_ID, "SecretAccessKey": SECRET,
                                                  "SessionToken": "token"})
    assert await store.get("dev") == Credentials(KEY_ID, SECRET, "token")


@pytest.mark.parametrize("entry", [
    "hunter2-plain-password",
    "",
    "null",
    '"a json string"',
    '["AKIAIOSFODNN7EXAMPLE", "hunter2-in-a-list"]',
    '{"AccessKeyId": "AKIAIOSFODNN7EXAMPLE"}',
    '{"SecretAccessKey": "hunter2-alone"}',
    '{"AccessKeyId": "not a key id!", "SecretAccessKey": "hunter2-bad-id"}',
    '{"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "hunter2 with spaces"}',
    '{"AccessKeyId": 12345, "SecretAccessKey": "hunter2-number-id"}',
    '{"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": ["hunter2-in-list"]}',
])
async def test_foreign_entry_is_refused_without_echo(store, ring, entry):
    ring.items[("corp", "web")] = entry
    with pytest.raises(KeyStoreError) as info:
        await store.get("corp/web")
    message = one_line(info.value)
    assert "corp/web" in message and "not rolecall's" in message
    assert "hunter2" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("key_id, secret", [
    ("AK", SECRET),  # too short
    ("AKIA IOSFODNN7EXAMPLE", SECRET),
    ("AKIA-IOSFODNN7EXAMPLE", SECRET),
    ("A" * 129, SECRET),
    (KEY_ID, ""),
    (KEY_ID, "hunter2 with a space"),
    (KEY_ID, "hunter2\twith-a-tab"),
    (KEY_ID, "hunter2-é"),
    (KEY_ID, "h" * 1025),
])
async def test_malformed_keys_refused_before_any_keyring_call(store, ring, data_home, key_id, secret):
    with pytest.raises(KeyStoreError) as info:
        await store.put("dev", key_id, secret)
    message = one_line(info.value)
    if secret:
        assert secret not in message
    assert ring.calls == []
    assert not Path(index_path({"XDG_DATA_HOME": str(data_home)})).exists()
    with pytest.raises(KeyStoreError):
        check_keys(key_id, secret)


def test_check_keys_accepts_real_shapes():
    check_keys(KEY_ID, SECRET)
    check_keys("ASIA_0123456789", "~!@#$%^&*()_+{}|:<>?")
    check_keys("abc", "x")


# ---- the index ------------------------------------------------------------------------------------

async def test_put_records_the_index(store, data_home):
    await store.put("dev", KEY_ID, SECRET)
    await store.put("corp/alice", "AKIAALICE0000000", "alice-secret/xyz")
    path = data_home / "rolecall" / "keys.json"
    assert str(path) == index_path({"XDG_DATA_HOME": str(data_home)})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert SECRET not in text and "alice-secret" not in text and "SecretAccessKey" not in text
    expected = {"corp/alice": {"AccessKeyId": "AKIAALICE0000000", "Added": "2026-01-01T00:00:00Z"},
                "dev": {"AccessKeyId": KEY_ID, "Added": "2026-01-01T00:00:00Z"}}
    assert json.loads(text) == {"profiles": expected}
    assert store.names() == expected


async def test_put_again_replaces_keys_and_index_entry(ring, environ):
    clock = FixedClock(EPOCH)
    store = KeyStore(ring, environ=environ, clock=clock)
    await store.put("dev", KEY_ID, SECRET)
    clock.advance(3600)
    await store.put("dev", "AKIANEWKEY000000", "new-secret")
    assert store.names() == {"dev": {"AccessKeyId": "AKIANEWKEY000000", "Added": "2026-01-01T01:00:00Z"}}
    assert (await store.get("dev")).access_key_id == "AKIANEWKEY000000"


async def test_index_defaults_to_the_environment_and_the_system_clock(ring):
    store = KeyStore(ring)
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    await store.put("dev", KEY_ID, SECRET)
    after = dt.datetime.now(dt.timezone.utc)
    assert Path(index_path()).is_file() and index_path().startswith(str(Path.home()))  # the sandbox
    added = dt.datetime.strptime(store.names()["dev"]["Added"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert before <= added <= after


def test_names_without_an_index_is_empty(store):
    assert store.names() == {}


async def test_delete(store, ring):
    await store.put("dev", KEY_ID, SECRET)
    await store.put("prod", KEY_ID, SECRET)
    assert await store.delete("dev") is True
    assert ("rolecall", "dev") not in ring.items
    assert set(store.names()) == {"prod"}
    assert await store.get("dev") is None
    assert await store.delete("dev") is False
    assert set(store.names()) == {"prod"}


async def test_delete_nothing_stored_returns_false_and_clears_a_stale_index_entry(store, ring):
    await store.put("dev", KEY_ID, SECRET)
    del ring.items[("rolecall", "dev")]  # removed behind rolecall's back
    assert await store.delete("dev") is False
    assert store.names() == {}
    assert await store.delete("never") is False


# ---- failures and timeouts ---------------------------------------------------------------------------

async def test_blocked_keyring_times_out_and_the_loop_stays_responsive():
    """Real time: a worker thread that never returns costs the timeout, not more, and the loop runs on."""
    ring = BlockingKeyring()
    store = KeyStore(ring, timeout=0.3)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await trio.sleep(0.02)
            ticks += 1

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            start = trio.current_time()
            with pytest.raises(KeyStoreError) as info:
                await store.get("dev")
            elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    finally:
        ring.release.set()
    assert ring.entered.is_set()
    assert 0.3 <= elapsed < 0.8
    assert ticks >= 5  # ~15 expected; the loop was never blocked
    message = one_line(info.value)
    assert "within 0.3 s" in message and "rolecall/dev" in message


async def test_blocked_put_times_out_without_indexing(autojump_clock, environ):
    ring = BlockingKeyring()
    store = KeyStore(ring, timeout=DEFAULT_TIMEOUT, environ=environ)
    try:
        start = trio.current_time()
        with pytest.raises(KeyStoreError) as info:
            await store.put("dev", KEY_ID, SECRET)
        assert trio.current_time() - start == pytest.approx(DEFAULT_TIMEOUT)
    finally:
        ring.release.set()
    message = one_line(info.value)
    assert f"within {DEFAULT_TIMEOUT:g} s" in message and "storing rolecall/dev" in message
    assert SECRET not in message
    assert store.names() == {}


@pytest.mark.parametrize("exc, name", [
    (DBusErrorResponse("org.freedesktop.DBus.Error.NoReply: Did not receive a reply\nRemote traceback..."),
     "DBusErrorResponse"),
    (KeyringLocked("Failed to unlock the collection!"), "KeyringLocked"),
    (RuntimeError(), "RuntimeError"),
    (OSError(13, "Permission denied"), "PermissionError"),
])
async def test_backend_exceptions_become_one_line_keystore_errors(environ, exc, name):
    store = KeyStore(FailingKeyring(exc), environ=environ)
    for what, call in (("storing corp/web", lambda: store.put("corp/web", KEY_ID, SECRET)),
                       ("reading corp/web", lambda: store.get("corp/web")),
                       ("removing corp/web", lambda: store.delete("corp/web"))):
        with pytest.raises(KeyStoreError) as info:
            await call()
        message = one_line(info.value)
        assert message.startswith(f"the keyring failed while {what}: {name}")
        assert SECRET not in message and KEY_ID not in message
        assert info.value.__cause__ is None
    assert store.names() == {}  # a failed put records nothing


async def test_dbus_error_keeps_only_its_first_line(environ):
    store = KeyStore(FailingKeyring(DBusErrorResponse("first line\nsecond line")), environ=environ)
    with pytest.raises(KeyStoreError) as info:
        await store.get("dev")
    assert str(info.value) == "the keyring failed while reading rolecall/dev: DBusErrorResponse: first line"


# ---- the default backend --------------------------------------------------------------------------------

def test_default_backend_without_a_usable_keyring_is_the_encrypted_file(monkeypatch, keyring_state):
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    keyring.core.set_keyring(fail.Keyring())
    backend = default_backend()
    assert type(backend) is EncryptedFileKeyring
    assert backend.path == keyring_path()


def test_default_backend_with_an_empty_chainer_is_the_encrypted_file(monkeypatch, keyring_state):
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [])
    keyring.core.set_keyring(chainer.ChainerBackend())
    assert type(default_backend()) is EncryptedFileKeyring


def test_default_backend_is_the_configured_one(keyring_state):
    configured = MemoryKeyring()
    keyring.core.set_keyring(configured)
    assert default_backend() is configured


def test_default_backend_follows_python_keyring_backend(monkeypatch, keyring_state):
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)  # keyring detects afresh
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    from keyring.backends import null

    assert type(default_backend()) is null.Keyring


async def test_keystore_chooses_its_backend_once_in_a_worker_thread(monkeypatch, environ):
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE", "correct horse battery staple")
    chosen_in: list[threading.Thread] = []

    def get_keyring():
        chosen_in.append(threading.current_thread())
        return fail.Keyring()

    monkeypatch.setattr(keyring, "get_keyring", get_keyring)
    store = KeyStore(environ=environ)
    await store.put("dev", KEY_ID, SECRET)
    assert await store.get("dev") == Credentials(KEY_ID, SECRET)
    assert len(chosen_in) == 1 and chosen_in[0] is not threading.main_thread()
    assert "EncryptedFileKeyring" in repr(store)
    assert Path(keyring_path()).is_file()  # the sandbox's $XDG_DATA_HOME/rolecall/keyring.json


async def test_choosing_the_backend_is_under_the_timeout(monkeypatch, autojump_clock):
    release = threading.Event()

    def get_keyring():  # Secret Service detection waiting on a D-Bus that never answers
        release.wait(30)
        return fail.Keyring()

    monkeypatch.setattr(keyring, "get_keyring", get_keyring)
    try:
        with pytest.raises(KeyStoreError, match="did not answer within 5 s"):
            await KeyStore(timeout=5).get("dev")
    finally:
        release.set()


# ---- with the real encrypted file ------------------------------------------------------------------------

async def test_with_the_encrypted_file_keyring(monkeypatch, tmp_path, environ):
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE", "correct horse battery staple")
    path = tmp_path / "ring" / "keyring.json"
    store = KeyStore(EncryptedFileKeyring(str(path)), environ=environ, clock=FixedClock(EPOCH))
    await store.put("dev", KEY_ID, SECRET)
    await store.put("corp/alice", "AKIAALICE0000000", "alice-secret/xyz")
    again = KeyStore(EncryptedFileKeyring(str(path)), environ=environ)
    assert await again.get("dev") == Credentials(KEY_ID, SECRET)
    assert (await again.get("corp/alice")).secret_access_key == "alice-secret/xyz"
    assert set(json.loads(path.read_text())["items"]) == {"rolecall\x00dev", "corp\x00alice"}
    for file in (path, Path(index_path(environ))):
        raw = file.read_text()
        assert SECRET not in raw and "alice-secret" not in raw
    assert await again.delete("dev") is True
    assert await again.delete("dev") is False
    assert await store.get("dev") is None
    assert set(again.names()) == {"corp/alice"}

"""The encrypted-file keyring backend (agent.keyring_file): keyring's own contract, the file, the key."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import keyring
import keyring.backend
import keyring.core
import pytest
from keyring.errors import KeyringError, KeyringLocked, PasswordDeleteError
from keyring.testing.backend import BackendBasicTests

from agent.keyring_file import EncryptedFileKeyring, keyring_path
from tests.pty_support import on_a_pty

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "correct horse battery staple"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
BLOB = json.dumps({"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": SECRET})


@pytest.fixture
def passphrase(monkeypatch):
    monkeypatch.delenv("ROLECALL_KEYRING_PASSPHRASE_FILE", raising=False)
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE", PASSPHRASE)
    return PASSPHRASE


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "data" / "rolecall" / "keyring.json"


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, repr(text)
    return text


def _child(code: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    """Run ``python -c code`` in a new session: no controlling terminal, whatever ran pytest."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, input=stdin, capture_output=True,
                          text=True, timeout=20, start_new_session=True)


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLECALL_KEYRING_PASSPHRASE")}
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT)
    return env


# ---- keyring's own contract suite ------------------------------------------------------------

class TestKeyringContract(BackendBasicTests):
    """``keyring.testing.backend.BackendBasicTests`` run against ``EncryptedFileKeyring``.

    The mixin builds its keyring in its own autouse fixture ``_init_properties``,
    calling ``init_keyring()`` with no arguments, so ``init_keyring`` cannot ask for
    pytest's ``tmp_path`` itself. That fixture is overridden here (same name, same body
    as keyring's) only to request ``tmp_path`` and ``monkeypatch`` first: the keyring
    file then lives in this test's temp folder, and the passphrase is set before the
    keyring is built and until after the mixin's cleanup has run. Every contract test
    applies; none is deselected.
    """

    @pytest.fixture(autouse=True)
    def _init_properties(self, request, tmp_path, monkeypatch):
        monkeypatch.delenv("ROLECALL_KEYRING_PASSPHRASE_FILE", raising=False)
        monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE", PASSPHRASE)
        self.keyring_file = tmp_path / "contract" / "keyring.json"
        # keyring's own body of _init_properties:
        self.keyring = self.init_keyring()
        self.credentials_created = set()
        request.addfinalizer(self.cleanup)

    def init_keyring(self):
        return EncryptedFileKeyring(str(self.keyring_file))

    def test_contract_used_the_file(self):
        """The suite above really exercises the file in tmp_path (not some default location)."""
        self.set_password("svc", "user", "pw")
        assert self.keyring_file.is_file()
        assert EncryptedFileKeyring(str(self.keyring_file)).get_password("svc", "user") == "pw"


# ---- the file ----------------------------------------------------------------------------------

def test_file_0600_and_new_directory_0700(passphrase, path):
    assert not path.parent.exists()
    EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # the file stays 0600 after a rewrite (atomic replace of a fresh temp file)
    EncryptedFileKeyring(str(path)).set_password("rolecall", "prod", BLOB)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the lock beside it too, and no temp file is left behind
    assert stat.S_IMODE(Path(str(path) + ".lock").stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["keyring.json", "keyring.json.lock"]


def test_default_path_follows_xdg_data_home(tmp_path):
    assert keyring_path({"XDG_DATA_HOME": str(tmp_path), "HOME": "/nowhere"}) == \
        str(tmp_path / "rolecall" / "keyring.json")
    assert keyring_path({"HOME": str(tmp_path)}) == str(tmp_path / ".local" / "share" / "rolecall" / "keyring.json")
    assert EncryptedFileKeyring().path == keyring_path()
    assert keyring_path().startswith(os.environ["XDG_DATA_HOME"])  # the per-test sandbox


def test_no_plaintext_in_the_file(passphrase, path):
    ring = EncryptedFileKeyring(str(path))
    ring.set_password("rolecall", "dev", BLOB)
    ring.set_password("svc", "alice", "plain-password-123")
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    for needle in (SECRET, BLOB, "plain-password-123", "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey",
                   "alice:plain-password-123", "alice\x00plain-password-123", PASSPHRASE):
        assert needle.encode() not in raw
        assert base64.b64encode(needle.encode()).decode() not in text
    doc = json.loads(text)
    assert doc["version"] == 1
    assert set(doc["items"]) == {"rolecall\x00dev", "svc\x00alice"}  # names are in clear, values are not
    assert doc["kdf"]["n"] >= 2**14


def test_survives_a_new_instance(passphrase, path):
    EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)
    EncryptedFileKeyring(str(path)).set_password("rolecall", "prod", "other")
    fresh = EncryptedFileKeyring(str(path))
    assert fresh.get_password("rolecall", "dev") == BLOB
    assert fresh.get_password("rolecall", "prod") == "other"
    assert fresh.get_password("rolecall", "nobody") is None


def test_file_removed_and_recreated_stays_readable(passphrase, path):
    ring = EncryptedFileKeyring(str(path))
    ring.set_password("rolecall", "dev", BLOB)
    path.unlink()  # the user starts over (or another process re-created the file)
    ring.set_password("rolecall", "prod", "new-value")
    assert EncryptedFileKeyring(str(path)).get_password("rolecall", "prod") == "new-value"


def test_missing_file_reads_as_empty_without_a_passphrase(monkeypatch, path):
    monkeypatch.delenv("ROLECALL_KEYRING_PASSPHRASE", raising=False)
    monkeypatch.delenv("ROLECALL_KEYRING_PASSPHRASE_FILE", raising=False)
    assert EncryptedFileKeyring(str(path)).get_password("rolecall", "dev") is None
    assert not path.exists()


def test_wrong_passphrase_is_keyring_locked(monkeypatch, passphrase, path):
    EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)
    before = path.read_bytes()
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE", "not the passphrase")
    with pytest.raises(KeyringLocked) as info:
        EncryptedFileKeyring(str(path)).get_password("rolecall", "dev")
    message = one_line(info.value)
    assert "wrong passphrase" in message and str(path) in message
    for secret in (SECRET, PASSPHRASE, "not the passphrase"):
        assert secret not in message
    # a write under the wrong passphrase is refused too, and leaves the file as it was
    with pytest.raises(KeyringLocked):
        EncryptedFileKeyring(str(path)).set_password("rolecall", "prod", BLOB)
    assert path.read_bytes() == before


def test_passphrase_file(monkeypatch, tmp_path, path):
    monkeypatch.delenv("ROLECALL_KEYRING_PASSPHRASE", raising=False)
    secret_file = tmp_path / "passphrase"
    secret_file.write_text(PASSPHRASE + "\n")
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE_FILE", str(secret_file))
    EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)
    # the same key as the variable gives (the trailing newline is not part of the passphrase)
    monkeypatch.delenv("ROLECALL_KEYRING_PASSPHRASE_FILE")
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE", PASSPHRASE)
    assert EncryptedFileKeyring(str(path)).get_password("rolecall", "dev") == BLOB


def test_passphrase_variable_wins_over_the_file(monkeypatch, tmp_path, path):
    secret_file = tmp_path / "passphrase"
    secret_file.write_text("the file's passphrase\n")
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE_FILE", str(secret_file))
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE", PASSPHRASE)
    EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)
    monkeypatch.delenv("ROLECALL_KEYRING_PASSPHRASE")
    with pytest.raises(KeyringLocked, match="wrong passphrase"):
        EncryptedFileKeyring(str(path)).get_password("rolecall", "dev")


def test_unreadable_passphrase_file_is_a_clear_error(monkeypatch, tmp_path, path):
    monkeypatch.delenv("ROLECALL_KEYRING_PASSPHRASE", raising=False)
    missing = tmp_path / "no-such-passphrase"
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE_FILE", str(missing))
    with pytest.raises(KeyringLocked) as info:
        EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)
    message = one_line(info.value)
    assert "ROLECALL_KEYRING_PASSPHRASE_FILE" in message and str(missing) in message
    assert "No such file" in message
    assert not path.exists()
    # a directory in its place: also KeyringLocked naming the variable, not a raw OSError
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE_FILE", str(tmp_path))
    with pytest.raises(KeyringLocked, match="ROLECALL_KEYRING_PASSPHRASE_FILE"):
        EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)


def test_empty_passphrase_file_is_refused(monkeypatch, tmp_path, path):
    monkeypatch.delenv("ROLECALL_KEYRING_PASSPHRASE", raising=False)
    empty = tmp_path / "passphrase"
    empty.write_text("\n")
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE_FILE", str(empty))
    with pytest.raises(KeyringLocked):
        EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)


def test_no_passphrase_and_no_terminal_is_keyring_locked(tmp_path, path):
    """Run where there is surely no controlling terminal (a new session); stdin is never read."""
    code = f"""
import sys
from agent.tty import has_terminal
from agent.keyring_file import EncryptedFileKeyring
assert not has_terminal(), "the child has a controlling terminal"
try:
    EncryptedFileKeyring({str(path)!r}).set_password("rolecall", "dev", "value")
except Exception as exc:
    print(type(exc).__module__ + "." + type(exc).__name__)
    print(str(exc))
else:
    print("stored")
"""
    done = _child(code, _child_env(), stdin=PASSPHRASE + "\n" + PASSPHRASE + "\n")
    assert done.returncode == 0, done.stderr
    kind, message, *rest = done.stdout.splitlines()
    assert kind == "keyring.errors.KeyringLocked"
    assert rest == []  # one line
    assert "set ROLECALL_KEYRING_PASSPHRASE" in message
    assert not path.exists()


_STORE_AND_READ = """
from agent.keyring_file import EncryptedFileKeyring
ring = EncryptedFileKeyring({path!r})
try:
    {call}
except Exception as exc:
    print(type(exc).__name__, exc)
"""
_FIRST = b"Passphrase for rolecall's encrypted keyring: "
_AGAIN = b"Once more, to confirm: "


def test_passphrase_from_the_terminal_asked_twice_for_a_new_file(path):
    store = _STORE_AND_READ.format(path=str(path), call='ring.set_password("rolecall", "dev", "v1"); print("stored")')
    done, shown = on_a_pty(store, _child_env(), [(_FIRST, b"pty passphrase\n"), (_AGAIN, b"pty passphrase\n")])
    assert (done.returncode, done.stdout) == (0, "stored\n"), done.stderr
    assert b"pty passphrase" not in shown  # typed without echo
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_passphrase_from_the_terminal_asked_once_for_an_existing_file(monkeypatch, path):
    monkeypatch.setenv("ROLECALL_KEYRING_PASSPHRASE", "pty passphrase")
    EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", "v1")
    read = _STORE_AND_READ.format(path=str(path), call='print(ring.get_password("rolecall", "dev"))')
    done, shown = on_a_pty(read, _child_env(), [(_FIRST, b"pty passphrase\n")])  # the child has no passphrase variable
    assert (done.returncode, done.stdout) == (0, "v1\n"), done.stderr
    assert _AGAIN not in shown and b"pty passphrase" not in shown


@pytest.mark.parametrize("first, again, refusal", [
    (b"one passphrase\n", b"another one\n", "the two passphrases differ"),
    (b"\n", b"\n", "an empty passphrase"),
])
def test_terminal_passphrase_refused(path, first, again, refusal):
    store = _STORE_AND_READ.format(path=str(path), call='ring.set_password("rolecall", "dev", "v1"); print("stored")')
    done, _ = on_a_pty(store, _child_env(), [(_FIRST, first), (_AGAIN, again)])
    assert done.stdout == f"KeyringLocked {refusal}\n", done.stderr
    assert not path.exists()


# ---- entries bound to their names; damage --------------------------------------------------------

def test_entry_moved_to_another_name_fails_to_decrypt(passphrase, path):
    ring = EncryptedFileKeyring(str(path))
    ring.set_password("rolecall", "dev", BLOB)
    ring.set_password("rolecall", "prod", "prod-value")
    doc = json.loads(path.read_text())
    doc["items"]["rolecall\x00prod"] = doc["items"]["rolecall\x00dev"]  # dev's ciphertext under prod
    doc["items"]["other\x00dev"] = doc["items"]["rolecall\x00dev"]  # and under another service
    path.write_text(json.dumps(doc))
    fresh = EncryptedFileKeyring(str(path))
    assert fresh.get_password("rolecall", "dev") == BLOB  # the original still reads
    for service, username in (("rolecall", "prod"), ("other", "dev")):
        with pytest.raises(KeyringError) as info:
            fresh.get_password(service, username)
        message = one_line(info.value)
        assert f"{service}/{username}" in message and "damaged" in message
        assert SECRET not in message


def _flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("damage", [
    pytest.param(lambda item: item.update(data=_flip(item["data"])), id="flipped-bit"),
    pytest.param(lambda item: item.update(nonce=_flip(item["nonce"])), id="other-nonce"),
    pytest.param(lambda item: item.update(data="not base64!"), id="not-base64"),
    pytest.param(lambda item: item.pop("nonce"), id="no-nonce"),
    pytest.param(lambda item: item.update(data=item["data"][:8]), id="truncated"),
])
def test_damaged_entry_is_a_clear_keyring_error(passphrase, path, damage):
    EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)
    doc = json.loads(path.read_text())
    damage(doc["items"]["rolecall\x00dev"])
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyringError) as info:
        EncryptedFileKeyring(str(path)).get_password("rolecall", "dev")
    assert type(info.value) is KeyringError
    message = one_line(info.value)
    assert "rolecall/dev" in message and "damaged" in message and SECRET not in message


def test_damaged_entry_not_an_object(passphrase, path):
    EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)
    doc = json.loads(path.read_text())
    doc["items"]["rolecall\x00dev"] = "garbage"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyringError, match="damaged"):
        EncryptedFileKeyring(str(path)).get_password("rolecall", "dev")


@pytest.mark.parametrize("value", [None, 5], ids=["null", "number"])
def test_damaged_entry_with_non_string_fields(passphrase, path, value):
    EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)
    doc = json.loads(path.read_text())
    doc["items"]["rolecall\x00dev"]["data"] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyringError, match="damaged"):
        EncryptedFileKeyring(str(path)).get_password("rolecall", "dev")


@pytest.mark.parametrize("damage", [
    pytest.param(lambda kdf: kdf.pop("n"), id="no-n"),
    pytest.param(lambda kdf: kdf.update(n=1000), id="n-not-power-of-2"),
    pytest.param(lambda kdf: kdf.update(salt="!!"), id="salt-not-base64"),
])
def test_damaged_kdf_header_is_a_keyring_error(passphrase, path, damage):
    EncryptedFileKeyring(str(path)).set_password("rolecall", "dev", BLOB)
    doc = json.loads(path.read_text())
    damage(doc["kdf"])
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyringError):
        EncryptedFileKeyring(str(path)).get_password("rolecall", "dev")


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"version": 2, "items": {}}', b'{"version": 1}',
                                     b"\xff\xfe"])
def test_not_a_keyring_file(passphrase, path, content):
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    ring = EncryptedFileKeyring(str(path))
    for call in (lambda: ring.get_password("rolecall", "dev"), lambda: ring.set_password("rolecall", "dev", BLOB)):
        with pytest.raises(KeyringError) as info:
            call()
        assert one_line(info.value) == f"{path} is not a rolecall keyring file"
    assert path.read_bytes() == content  # never overwritten


def test_delete(passphrase, path):
    ring = EncryptedFileKeyring(str(path))
    with pytest.raises(PasswordDeleteError):  # no file yet
        ring.delete_password("rolecall", "dev")
    ring.set_password("rolecall", "dev", BLOB)
    ring.set_password("rolecall", "prod", "keep")
    with pytest.raises(PasswordDeleteError) as info:
        ring.delete_password("rolecall", "nobody")
    assert "rolecall/nobody" in one_line(info.value)
    ring.delete_password("rolecall", "dev")
    fresh = EncryptedFileKeyring(str(path))
    assert fresh.get_password("rolecall", "dev") is None
    assert fresh.get_password("rolecall", "prod") == "keep"
    with pytest.raises(PasswordDeleteError):
        fresh.delete_password("rolecall", "dev")


# ---- concurrent writers -----------------------------------------------------------------------------

_WRITER = """
import sys
from agent.keyring_file import EncryptedFileKeyring
ring = EncryptedFileKeyring(sys.argv[1])
for i in range(int(sys.argv[3])):
    ring.set_password("rolecall", f"{sys.argv[2]}-{i}", f"value-{sys.argv[2]}-{i}")
"""


def test_concurrent_writers_lose_no_entry(passphrase, path):
    """Threads and processes write at once (each thread's call opens its own lock descriptor, so
    the threads exclude each other through flock just as the processes do)."""
    per_writer, threads_n = 10, 3
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), f"proc{n}", str(per_writer)],
                              cwd=ROOT, env=_child_env(ROLECALL_KEYRING_PASSPHRASE=PASSPHRASE),
                              stdin=subprocess.DEVNULL, start_new_session=True)
             for n in range(2)]
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    ring = EncryptedFileKeyring(str(path))  # one key derivation for all the threads

    def write(tag: str) -> None:
        try:
            barrier.wait()
            for i in range(per_writer):
                ring.set_password("rolecall", f"{tag}-{i}", f"value-{tag}-{i}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=write, args=(f"thread{n}",)) for n in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(20)
    for proc in procs:
        assert proc.wait(20) == 0
    assert errors == []
    tags = [f"thread{n}" for n in range(threads_n)] + ["proc0", "proc1"]
    doc = json.loads(path.read_text())
    expected = {f"rolecall\x00{tag}-{i}" for tag in tags for i in range(per_writer)}
    assert set(doc["items"]) == expected
    fresh = EncryptedFileKeyring(str(path))
    for tag in tags:
        for i in range(per_writer):
            assert fresh.get_password("rolecall", f"{tag}-{i}") == f"value-{tag}-{i}"


# ---- keyring's normal configuration ------------------------------------------------------------------

@pytest.fixture
def keyring_state(monkeypatch):
    """Whatever keyring.core's global backend (and the chainer's limit) were, they are put back."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.core._keyring_backend)
    monkeypatch.setattr(keyring.backend, "_limit", keyring.backend._limit)


def test_python_keyring_backend_selects_it(monkeypatch, passphrase, keyring_state):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "agent.keyring_file.EncryptedFileKeyring")
    loaded = keyring.core.load_env()
    assert type(loaded) is EncryptedFileKeyring
    assert loaded.path == keyring_path()  # the sandbox's $XDG_DATA_HOME
    # and as keyring's own selection, through its top-level API
    keyring.core.init_backend()
    assert type(keyring.get_keyring()) is EncryptedFileKeyring
    keyring.set_password("rolecall", "dev", BLOB)
    assert keyring.get_password("rolecall", "dev") == BLOB
    assert EncryptedFileKeyring().get_password("rolecall", "dev") == BLOB
    assert Path(keyring_path()).is_file()
    keyring.delete_password("rolecall", "dev")
    assert keyring.get_password("rolecall", "dev") is None


def test_keyringrc_default_keyring_selects_it(monkeypatch, keyring_state):
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "python_keyring" / "keyringrc.cfg"
    config.parent.mkdir(parents=True)
    config.write_text("[backend]\ndefault-keyring = agent.keyring_file.EncryptedFileKeyring\n")
    assert keyring.core.load_env() is None
    assert type(keyring.core.load_config()) is EncryptedFileKeyring


def test_priority_below_os_keyrings():
    assert 0 < EncryptedFileKeyring.priority < 1
    assert EncryptedFileKeyring.viable

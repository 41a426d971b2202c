"""An encrypted-file ``keyring`` backend for machines without an OS keyring.

Chosen through keyring's normal configuration
(``PYTHON_KEYRING_BACKEND=agent.keyring_file.EncryptedFileKeyring``, or
``default-keyring`` in ``keyringrc.cfg``), and by rolecall's key store on its
own when keyring finds no usable backend at all (a headless machine: no Secret
Service, no KWallet).

Why not ``keyrings.cryptfile``: it brings a second crypto library
(pycryptodome) beside ``cryptography`` and a compiled Argon2 binding, and it
asks for its password with ``getpass``, which falls back to reading stdin
when there is no terminal; inside ``credential_process`` stdin is the SDK's.
This backend is ~150 lines on ``cryptography``, which rolecall already needs.

The file is ``$XDG_DATA_HOME/rolecall/keyring.json`` (else
``~/.local/share/rolecall/keyring.json``), mode 0600::

    {"version": 1, "kdf": {"salt": B64, "n": 32768, "r": 8, "p": 1},
     "check": {"nonce": B64, "data": B64},
     "items": {"SERVICE\\u0000USERNAME": {"nonce": B64, "data": B64}}}

The key is scrypt(passphrase, salt), derived once per process. Every value is
AES-256-GCM with a fresh 96-bit nonce and ``SERVICE\\0USERNAME`` as associated
data, so an entry cannot be moved to another name; ``check`` encrypts a
constant, so a wrong passphrase is told apart from a damaged file. The
passphrase comes from ``ROLECALL_KEYRING_PASSPHRASE``, else the file named by
``ROLECALL_KEYRING_PASSPHRASE_FILE``, else the terminal (``/dev/tty``, no echo;
asked twice when the file is new). Writes hold an exclusive ``flock`` on the
file's lock and replace the file atomically.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os

from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, KeyringLocked, PasswordDeleteError

from agent.tty import NoTerminal, ask
from wire.private_files import private_dir, write_private

__all__ = ["EncryptedFileKeyring", "keyring_path"]

_SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_CHECK = b"rolecall keyring v1"
_MAX_FILE = 1 << 22


def keyring_path(environ=None) -> str:
    """``$XDG_DATA_HOME/rolecall/keyring.json``, else ``~/.local/share/rolecall/keyring.json``."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share"),
                        "rolecall", "keyring.json")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text.encode("ascii"), validate=True)


class EncryptedFileKeyring(KeyringBackend):
    """AES-GCM entries in one 0600 JSON file, keyed by scrypt of a passphrase (see the module)."""

    priority = 0.5  # below every OS keyring: used when configured, or when nothing else is there

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        self.path = path or keyring_path()
        self._key: bytes | None = None
        self._kdf: dict | None = None  # the header the cached key was derived for

    # --- the file -----------------------------------------------------------------------------

    def _load(self) -> dict | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read(_MAX_FILE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyringError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            doc = json.loads(data)
            if doc.get("version") != 1 or not isinstance(doc.get("items"), dict):
                raise ValueError
            return doc
        except (ValueError, AttributeError):
            raise KeyringError(f"{self.path} is not a rolecall keyring file") from None

    def _save(self, doc: dict) -> None:
        private_dir(os.path.dirname(self.path))
        write_private(self.path, json.dumps(doc).encode(), durable=True)

    def _locked(self):
        """An exclusive lock beside the file for one read-modify-write (in a directory of ours alone)."""
        private_dir(os.path.dirname(self.path))
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    # --- the key ------------------------------------------------------------------------------

    @staticmethod
    def _passphrase(new: bool) -> str:
        if os.environ.get("ROLECALL_KEYRING_PASSPHRASE"):
            return os.environ["ROLECALL_KEYRING_PASSPHRASE"]
        path = os.environ.get("ROLECALL_KEYRING_PASSPHRASE_FILE")
        if path:
            try:
                with open(path, encoding="utf-8") as f:
                    passphrase = f.read(4096).rstrip("\r\n")
            except OSError as exc:
                raise KeyringLocked(f"cannot read ROLECALL_KEYRING_PASSPHRASE_FILE {path}: "
                                    f"{exc.strerror or exc}") from None
            if not passphrase:
                raise KeyringLocked(f"ROLECALL_KEYRING_PASSPHRASE_FILE {path} is empty")
            return passphrase
        try:
            first = ask("Passphrase for rolecall's encrypted keyring: ", echo=False)
            if new and ask("Once more, to confirm: ", echo=False) != first:
                raise KeyringLocked("the two passphrases differ")
        except (NoTerminal, EOFError):
            raise KeyringLocked("the encrypted keyring needs a passphrase: set ROLECALL_KEYRING_PASSPHRASE "
                                "(or ROLECALL_KEYRING_PASSPHRASE_FILE), or run in a terminal") from None
        if not first:
            raise KeyringLocked("an empty passphrase")
        return first

    def _cipher(self, doc: dict):
        """The AES-GCM cipher for ``doc``, deriving (and checking) the key once per header.

        A file removed since the key was derived gets that key's header back; a
        file re-created by someone else (another salt) has its key derived anew.
        """
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if self._key is not None and doc.get("kdf") is None:
            doc["kdf"], doc["check"] = dict(self._kdf), self._check(AESGCM(self._key))
        elif self._key is not None and doc["kdf"] != self._kdf:
            self._key = None
        if self._key is None:
            new = "kdf" not in doc
            if new:
                doc["kdf"] = {"salt": _b64(os.urandom(16)), **_SCRYPT}
            key = self._derive(doc["kdf"], self._passphrase(new).encode("utf-8"))
            if new:
                doc["check"] = self._check(AESGCM(key))
            else:
                try:
                    AESGCM(key).decrypt(_unb64(doc["check"]["nonce"]), _unb64(doc["check"]["data"]), None)
                except (InvalidTag, KeyError, TypeError, ValueError):
                    raise KeyringLocked(f"wrong passphrase for {self.path}") from None
            self._key, self._kdf = key, dict(doc["kdf"])
        return AESGCM(self._key), InvalidTag

    def _derive(self, kdf: object, passphrase: bytes) -> bytes:
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        try:
            return Scrypt(salt=_unb64(kdf["salt"]), length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(passphrase)
        except (KeyError, TypeError, ValueError):
            raise KeyringError(f"{self.path}: the key derivation header is damaged") from None

    @staticmethod
    def _check(cipher) -> dict:
        nonce = os.urandom(12)
        return {"nonce": _b64(nonce), "data": _b64(cipher.encrypt(nonce, _CHECK, None))}

    # --- the KeyringBackend interface ---------------------------------------------------------

    def get_password(self, service: str, username: str) -> str | None:
        doc = self._load()
        name = f"{service}\0{username}"
        if doc is None or name not in doc["items"]:
            return None
        cipher, invalid = self._cipher(doc)
        item = doc["items"][name]
        try:
            return cipher.decrypt(_unb64(item["nonce"]), _unb64(item["data"]), name.encode()).decode("utf-8")
        except (invalid, KeyError, ValueError, TypeError, AttributeError):
            raise KeyringError(f"{self.path}: the entry for {service}/{username} is damaged") from None

    def set_password(self, service: str, username: str, password: str) -> None:
        lock = self._locked()
        try:
            doc = self._load() or {"version": 1, "items": {}}
            cipher, _ = self._cipher(doc)
            name, nonce = f"{service}\0{username}", os.urandom(12)
            doc["items"][name] = {"nonce": _b64(nonce),
                                  "data": _b64(cipher.encrypt(nonce, password.encode("utf-8"), name.encode()))}
            self._save(doc)
        finally:
            os.close(lock)

    def delete_password(self, service: str, username: str) -> None:
        lock = self._locked()
        try:
            doc = self._load()
            name = f"{service}\0{username}"
            if doc is None or name not in doc["items"]:
                raise PasswordDeleteError(f"no entry for {service}/{username}")
            del doc["items"][name]
            self._save(doc)
        finally:
            os.close(lock)

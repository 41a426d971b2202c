"""Long-term keys in the OS keyring, one JSON blob per profile, never on the event loop.

Layout (design.md, "Where things live"): service ``rolecall``, username the
profile name (or the name of ``[source] keyring``; ``SERVICE/NAME`` names
another service), secret ``{"AccessKeyId": ..., "SecretAccessKey": ...}``.
The profiles stored are also listed in rolecall's index file
(``wire.key_index``; no secret there), because a keyring cannot list.

Every keyring call (choosing the backend included: Secret Service talks D-Bus)
runs in a worker thread under ``trio.fail_after(timeout)`` (60 s, or
``$ROLECALL_KEYRING_TIMEOUT``), so an unlock dialog nobody answers, or a keyring
daemon that hangs, costs at most that and a ``KeyStoreError``; the loop never
blocks. The backend is keyring's
own choice (``PYTHON_KEYRING_BACKEND``, ``keyringrc.cfg``, or the best one
available), except that where keyring finds none at all (a headless machine)
rolecall's ``EncryptedFileKeyring`` is used.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import trio

from agent.config_types import ACCESS_KEY_ID, SECRET_KEY
from agent.errors import KeyStoreError
from wire.clock import iso_z
from wire.key_index import index_lock, read_index, write_index
from wire.sigv4 import Credentials

__all__ = ["DEFAULT_TIMEOUT", "KeyStore", "SERVICE", "check_keys", "default_backend", "parse_keyring_name"]

SERVICE = "rolecall"
DEFAULT_TIMEOUT = 60.0  # seconds: room for a person to answer an unlock dialog, no more


def parse_keyring_name(name: str) -> tuple[str, str]:
    """``NAME`` -> ``("rolecall", NAME)``; ``SERVICE/NAME`` -> ``(SERVICE, NAME)``."""
    service, sep, username = name.partition("/")
    return (service, username) if sep and service and username else (SERVICE, name)


def default_backend():
    """keyring's configured or best backend; rolecall's encrypted file when keyring has none."""
    import keyring
    from keyring.backends import chainer, fail

    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring) or (isinstance(backend, chainer.ChainerBackend) and not backend.backends):
        from agent.keyring_file import EncryptedFileKeyring

        backend = EncryptedFileKeyring()
    return backend


def check_keys(access_key_id: str, secret_access_key: str) -> None:
    """Refuse what cannot be an access key pair (never echoing the secret).

    Raises:
        KeyStoreError: a malformed key id or secret.
    """
    if not ACCESS_KEY_ID.fullmatch(access_key_id):
        raise KeyStoreError("the access key id must be 3-128 letters, digits or underscores (AKIA...)")
    if not SECRET_KEY.fullmatch(secret_access_key):
        raise KeyStoreError("the secret access key must be printable ASCII without spaces")


class KeyStore:
    """Long-term keys per profile (see the module).

    Args:
        backend: a ``keyring.backend.KeyringBackend``; default ``default_backend()``,
            chosen in the worker thread on first use.
        timeout: seconds each keyring call may take; default ``$ROLECALL_KEYRING_TIMEOUT``,
            else ``DEFAULT_TIMEOUT``.
        environ: where the index file lives (``$XDG_DATA_HOME``, ``$HOME``).
        clock: dates index entries; default the system clock.
    """

    def __init__(self, backend=None, *, timeout: float | None = None,
                 environ: Mapping[str, str] | None = None, clock=None) -> None:
        self._backend, self._environ, self._clock = backend, environ, clock
        self.timeout = timeout if timeout is not None else _timeout_from(os.environ if environ is None else environ)

    def __repr__(self) -> str:
        return f"KeyStore({self._backend!r})"

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        def work():
            if self._backend is None:
                self._backend = default_backend()
            return fn(self._backend, *args)

        try:
            with trio.fail_after(self.timeout):
                return await trio.to_thread.run_sync(work, abandon_on_cancel=True)
        except trio.TooSlowError:
            raise KeyStoreError(f"the keyring did not answer within {self.timeout:g} s while {what} "
                               "(locked, and nobody answered its unlock prompt?)") from None
        except KeyStoreError:
            raise
        except Exception as exc:  # keyring's errors and the backends' own (D-Bus...): one line, no secret
            raise KeyStoreError(f"the keyring failed while {what}: {_reason(exc)}") from None

    async def get(self, name: str) -> Credentials | None:
        """The long-term keys stored under ``name``, or None.

        Raises:
            KeyStoreError: the keyring failed, timed out, or holds something unreadable.
        """
        service, username = parse_keyring_name(name)
        blob = await self._call(f"reading {service}/{username}",
                                lambda b: b.get_password(service, username))
        if blob is None:
            return None
        try:
            doc = json.loads(blob)
            creds = Credentials(doc["AccessKeyId"], doc["SecretAccessKey"], doc.get("SessionToken") or None)
            check_keys(creds.access_key_id, creds.secret_access_key)
        except (ValueError, KeyError, TypeError, AttributeError, KeyStoreError):
            raise KeyStoreError(f"the keyring entry {service}/{username} is not rolecall's "
                               '{"AccessKeyId", "SecretAccessKey"} JSON') from None
        return creds

    async def put(self, name: str, access_key_id: str, secret_access_key: str) -> None:
        """Store keys under ``name`` and record ``name`` in the index.

        Raises:
            KeyStoreError: malformed keys, or the keyring failed.
        """
        check_keys(access_key_id, secret_access_key)
        service, username = parse_keyring_name(name)
        blob = json.dumps({"AccessKeyId": access_key_id, "SecretAccessKey": secret_access_key})
        await self._call(f"storing {service}/{username}", lambda b: b.set_password(service, username, blob))
        now = self._clock.now() if self._clock else _dt.datetime.now(_dt.timezone.utc)
        self._update_index(lambda index: index.__setitem__(name, {"AccessKeyId": access_key_id,
                                                                  "Added": iso_z(now)}))

    async def delete(self, name: str) -> bool:
        """Remove ``name``'s keys and its index entry; False when the keyring held none.

        Raises:
            KeyStoreError: the keyring failed.
        """
        from keyring.errors import PasswordDeleteError

        service, username = parse_keyring_name(name)

        def remove(b) -> bool:
            try:
                b.delete_password(service, username)
            except PasswordDeleteError:
                return False
            return True

        existed = await self._call(f"removing {service}/{username}", remove)
        self._update_index(lambda index: index.pop(name, None))
        return existed

    def _update_index(self, change: Callable[[dict], object]) -> None:
        """Read, change and write the index under its lock (two ``keys add`` at once lose nothing).

        Raises:
            KeyStoreError: the index cannot be written (the keyring itself was changed).
        """
        try:
            with index_lock(self._environ):
                index = read_index(self._environ)
                change(index)
                write_index(index, self._environ)
        except OSError as exc:
            raise KeyStoreError(f"the keyring was changed, but rolecall's index of it cannot be written: "
                                f"{exc.strerror or exc}") from None

    def names(self) -> dict[str, dict[str, str]]:
        """The index: profile -> ``{"AccessKeyId", "Added"}`` (no keyring call)."""
        return read_index(self._environ)


def _timeout_from(environ: Mapping[str, str]) -> float:
    try:
        value = float(environ.get("ROLECALL_KEYRING_TIMEOUT", ""))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if 0 < value <= 3600 else DEFAULT_TIMEOUT


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

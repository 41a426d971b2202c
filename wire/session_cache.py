"""The session cache: short-lived credentials in 0600 JSON files, shared by every rolecall process.

Theory of operation
-------------------
One directory, ``$XDG_CACHE_HOME/rolecall`` (else ``~/.cache/rolecall``), mode
0700, owned by us and not a symlink; anything else is refused, so nothing is
ever written through a link or into a directory another user controls. Each
entry is one file ``KEY.json`` (mode 0600) holding::

    {"Kind": "profile" | "mfa-session", "Profile": ..., "Profiles": [...],
     "MfaSerial": ..., "Created": "...Z", "AccountId": ...,
     "Credentials": {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}}

written atomically (a temp file in the same directory, then ``os.replace``),
so a reader sees the old entry or the new one. Long-term keys never go here;
they stay in the keyring. Entries are read with ``O_NOFOLLOW``; an unreadable or
malformed one counts as absent (and is overwritten by the next ``put``).

``lock(KEY)`` is an exclusive ``flock`` on ``KEY.lock`` beside the entry: the
processes that would make the same entry (five ``credential_process`` calls
on a cold cache) run one at a time, and each re-reads the cache once it holds
the lock, so only the first prompts for MFA and calls STS. The lock is
released when the holder exits, however it exits.

Stdlib only, and cheap to import: ``rolecall credential-process`` reads this on
its warm path before anything heavy is imported.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import stat
from collections import namedtuple
from collections.abc import Iterator, Mapping

from wire.private_files import write_private

__all__ = ["CacheEntry", "CacheError", "MIN_REMAINING", "SessionCache", "default_cache_dir", "parse_z", "format_z",
           "reusable"]

# Seconds a cached session must still have to be handed out again: botocore's advisory refresh
# window, so an SDK given it does not turn round and refresh at once.
MIN_REMAINING = 15 * 60
_UTC = _dt.timezone.utc
_MAX_ENTRY = 64 * 1024
_FIELDS = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")


class CacheError(OSError):
    """The cache directory or a lock cannot be used safely (one line, names the path)."""


def format_z(when: _dt.datetime) -> str:
    """``2026-01-01T00:00:00Z``."""
    return when.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_z(text: str) -> _dt.datetime:
    """An aware UTC datetime from ``YYYY-MM-DDTHH:MM:SSZ`` (fractions and offsets tolerated).

    Raises:
        ValueError: not such a timestamp.
    """
    value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)


def default_cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_CACHE_HOME/rolecall``, else ``~/.cache/rolecall``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rolecall")


def reusable(entry: CacheEntry | None, now: _dt.datetime) -> bool:
    """Whether ``entry`` (None: a miss) has at least ``MIN_REMAINING`` left at ``now``."""
    return entry is not None and entry.remaining(now) >= MIN_REMAINING


# A named tuple, not a dataclass: this module is on the warm path of `rolecall credential-process`
# (see wire.aws_config for the cost). The secret and the token are kept out of its repr.
class CacheEntry(namedtuple("CacheEntry", "kind profile profiles access_key_id secret_access_key session_token "
                                          "expiration created mfa_serial account_id role_arn",
                            defaults=(None, None, None))):
    """One cached session; the secret and the token never appear in ``repr``.

    Args:
        kind: ``profile`` (what a profile resolves to), ``mfa-session`` or ``session``.
        profile: the profile it was made for.
        profiles: the profiles of its chain.
        access_key_id: ``ASIA...``.
        secret_access_key: hidden from ``repr``.
        session_token: hidden from ``repr``.
        expiration: aware UTC.
        created: aware UTC.
        mfa_serial: for MFA sessions (and profiles made with MFA).
        account_id: when known.
        role_arn: the assumed role, when one was.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return (f"CacheEntry(kind={self.kind!r}, profile={self.profile!r}, access_key_id={self.access_key_id!r}, "
                f"expiration={format_z(self.expiration)!r})")

    def remaining(self, now: _dt.datetime) -> float:
        """Seconds until expiry at ``now``; negative once expired."""
        return (self.expiration - now).total_seconds()

    def process_output(self) -> dict:
        """The ``credential_process`` document (Version 1, integer; ``...Z`` expiry)."""
        out = {"Version": 1, "AccessKeyId": self.access_key_id, "SecretAccessKey": self.secret_access_key,
               "SessionToken": self.session_token, "Expiration": format_z(self.expiration)}
        if self.account_id:
            out["AccountId"] = self.account_id
        return out

    def to_json(self) -> dict:
        doc = {"Kind": self.kind, "Profile": self.profile, "Profiles": list(self.profiles),
               "Created": format_z(self.created),
               "Credentials": {"AccessKeyId": self.access_key_id, "SecretAccessKey": self.secret_access_key,
                               "SessionToken": self.session_token, "Expiration": format_z(self.expiration)}}
        for name, value in (("MfaSerial", self.mfa_serial), ("AccountId", self.account_id),
                            ("RoleArn", self.role_arn)):
            if value:
                doc[name] = value
        return doc

    @classmethod
    def from_json(cls, doc: object) -> CacheEntry:
        """Raises ValueError, KeyError or TypeError on anything ``to_json`` does not write."""
        creds = doc["Credentials"]
        if not all(isinstance(creds.get(name), str) and creds[name] for name in _FIELDS):
            raise ValueError("incomplete credentials")
        optional = {name: doc.get(key) if isinstance(doc.get(key), str) else None
                    for name, key in (("mfa_serial", "MfaSerial"), ("account_id", "AccountId"),
                                      ("role_arn", "RoleArn"))}
        return cls(str(doc["Kind"]), str(doc["Profile"]), tuple(str(p) for p in doc["Profiles"]),
                   creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"],
                   parse_z(creds["Expiration"]), parse_z(doc["Created"]), **optional)


class SessionCache:
    """The cache directory (see the module's description).

    Args:
        directory: default ``default_cache_dir()``.
    """

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or default_cache_dir()

    def __repr__(self) -> str:
        return f"SessionCache({self.directory!r})"

    def _path(self, key: str, suffix: str = ".json") -> str:
        if not key or "/" in key or key.startswith(".") or "\0" in key:
            raise ValueError(f"bad cache key {key!r}")
        return os.path.join(self.directory, key + suffix)

    def _checked_dir(self, create: bool) -> bool:
        """True when the directory exists and is safe; creates it (0700) when asked."""
        try:
            info = os.lstat(self.directory)
        except FileNotFoundError:
            if not create:
                return False
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            info = os.lstat(self.directory)
        if not stat.S_ISDIR(info.st_mode):
            raise CacheError(errno.ENOTDIR, f"{self.directory} is not a directory (a symlink?): remove it")
        if info.st_uid != os.geteuid():
            raise CacheError(errno.EPERM, f"{self.directory} belongs to another user: remove it")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.directory, 0o700)
        return True

    # --- entries --------------------------------------------------------------------------

    def _ours(self) -> bool:
        """The directory is a real directory of ours (never read credentials another user could plant)."""
        try:
            info = os.lstat(self.directory)
        except OSError:
            return False
        return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()

    def get(self, key: str) -> CacheEntry | None:
        """The entry under ``key``, or None when absent, unreadable, or not ours."""
        path = self._path(key)
        if not self._ours():
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_uid != os.geteuid():
                return None
            data = os.read(fd, _MAX_ENTRY + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            return CacheEntry.from_json(json.loads(data)) if len(data) <= _MAX_ENTRY else None
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None

    def put(self, key: str, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key`` (0600, atomic).

        Raises:
            CacheError, OSError: the directory is unsafe or the file cannot be written.
        """
        self._checked_dir(create=True)
        target = self._path(key)
        write_private(target, json.dumps(entry.to_json()).encode())

    def delete(self, key: str) -> bool:
        """Remove one entry; True when it existed."""
        try:
            os.unlink(self._path(key))
            return True
        except FileNotFoundError:
            return False

    def items(self) -> Iterator[tuple[str, CacheEntry]]:
        """Every readable entry, as ``(key, entry)``, in name order."""
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                entry = self.get(name[:-5])
                if entry is not None:
                    yield name[:-5], entry

    def clear(self, profile: str | None = None) -> int:
        """Remove every entry (or those whose chain includes ``profile``); how many were removed."""
        removed = 0
        for key, entry in list(self.items()):
            if profile is None or profile in entry.profiles or entry.profile == profile:
                removed += self.delete(key)
        if profile is None:  # unreadable leftovers too
            try:
                names = os.listdir(self.directory)
            except OSError:
                names = []
            for name in names:
                if name.endswith(".json") and not name.startswith("."):
                    removed += self.delete(name[:-5])
        return removed

    # --- locks ----------------------------------------------------------------------------

    def try_lock(self, key: str) -> int | None:
        """Take ``KEY.lock`` without waiting: its fd (hold it; ``unlock`` or exit releases), or None when held.

        Raises:
            CacheError, OSError: the directory is unsafe.
        """
        self._checked_dir(create=True)
        fd = os.open(self._path(key, ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        """Release a lock ``try_lock`` took."""
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

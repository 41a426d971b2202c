"""rolecall's index of the profiles whose long-term keys are in the keyring.

A keyring cannot list what it holds, so ``rolecall keys add`` also records the
profile here: ``$XDG_DATA_HOME/rolecall/keys.json`` (else
``~/.local/share/rolecall/keys.json``), mode 0600, written atomically::

    {"profiles": {"NAME": {"AccessKeyId": "AKIA...", "Added": "...Z"}}}

No secret is ever written here. The profile plan (``wire.aws_config``) reads
it to know which profiles have keys of their own, and so does the warm path of
``rolecall credential-process``: stdlib only, cheap to import.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from wire.private_files import private_dir, write_private

__all__ = ["index_lock", "index_path", "read_index", "write_index"]


def index_path(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_DATA_HOME/rolecall/keys.json``, else ``~/.local/share/rolecall/keys.json``."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or os.path.expanduser("~")
    base = environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return os.path.join(base, "rolecall", "keys.json")


def read_index(environ: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Profile -> ``{"AccessKeyId", "Added"}``; empty when the file is missing or unreadable."""
    try:
        with open(index_path(environ), "rb") as f:
            doc = json.loads(f.read(1 << 20))
        profiles = doc["profiles"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(profiles, dict):
        return {}
    return {name: entry for name, entry in profiles.items() if isinstance(name, str) and isinstance(entry, dict)}


@contextmanager
def index_lock(environ: Mapping[str, str] | None = None) -> Iterator[None]:
    """An exclusive ``flock`` beside the index, for one read-modify-write."""
    import fcntl

    path = index_path(environ)
    private_dir(os.path.dirname(path))
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_index(profiles: Mapping[str, Mapping[str, str]], environ: Mapping[str, str] | None = None) -> None:
    """Replace the index (0600, atomically; the directory is created 0700).

    Raises:
        OSError: it cannot be written (``UnsafeDirectory``: the directory is another user's or writable by others).
    """
    path = index_path(environ)
    private_dir(os.path.dirname(path))
    write_private(path, json.dumps({"profiles": dict(sorted(profiles.items()))}, indent=2).encode(), durable=True)

"""Private files and the directories that hold them: every 0600 file rolecall writes goes through here.

``write_private(path, data)`` writes a new file created with
``O_CREAT|O_EXCL`` (``tempfile.mkstemp``: mode 0600, never an existing file,
never through a symlink) beside the target, then renames it over the target
(``rename`` replaces a symlink, it never follows one). A reader sees the old
content or the new, never half of either, and a failed write leaves no temp
file behind. ``durable=True`` syncs the data to disk before the rename, for
files whose loss would lose something (the encrypted keyring, the key index,
secrets), not for caches.

``private_dir(path)`` is the check every data, state and runtime directory
gets before anything secret is written into it: a real directory (not a
symlink), owned by the running user, writable by nobody else. One a hostile
local user pre-created (or made 0777) is refused with one line, instead of
letting them swap a file for a symlink to their own.

Stdlib only, cheap to import (``tempfile`` is imported by the writers alone:
the warm path of ``credential-process`` only reads).
"""

from __future__ import annotations

import os
import stat

__all__ = ["UnsafeDirectory", "private_dir", "write_private"]


class UnsafeDirectory(OSError):
    """A directory rolecall will not keep secrets in; ``str()`` is one line naming it and the fix."""


def private_dir(path: str | os.PathLike, *, create: bool = True, mode: int = 0o700) -> str:
    """``path`` as a directory fit for secrets (created ``mode`` when missing and ``create``).

    Returns:
        The path, as a string.

    Raises:
        UnsafeDirectory: a symlink or not a directory, owned by another user, or
            writable by group or others.
        OSError: it cannot be created.
    """
    path = os.fspath(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not create:
            raise
        os.makedirs(path, mode=mode, exist_ok=True)
        info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory (a symlink?): remove it, or choose another")
    if info.st_uid != os.geteuid():
        raise UnsafeDirectory(f"{path} belongs to uid {info.st_uid}, not to this user ({os.geteuid()}): someone "
                              "else could change what is in it; remove it, or choose another")
    if stat.S_IMODE(info.st_mode) & 0o022:
        raise UnsafeDirectory(f"{path} is writable by others (mode {stat.S_IMODE(info.st_mode):o}): "
                              f"run `chmod go-w {path}`, or choose another")
    return path


def write_private(path: str | os.PathLike, data: bytes, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data``, mode 0600, atomically.

    Raises:
        OSError: the directory is missing or not writable, the disk is full...
    """
    import tempfile

    directory = os.path.dirname(os.fspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

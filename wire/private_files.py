"""Private files written whole or not at all: a 0600 temp file beside the target, then ``os.replace``.

A reader sees the old content or the new, never half of either, and a failed
write leaves no temp file behind. ``durable=True`` syncs the data to disk before
the rename, for files whose loss would lose something (the encrypted keyring,
the key index), not for caches. Stdlib only, cheap to import (``tempfile`` is
imported by the writers alone: the warm path of ``credential-process`` only reads).
"""

from __future__ import annotations

import os

__all__ = ["write_private"]


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

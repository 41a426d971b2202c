"""``rolecall keys rotate``: a new access key in the keyring, the old one deleted, as aws-vault does it.

1. CreateAccessKey (no UserName: the caller's own user), signed with the old key;
2. the new key replaces the old in the keyring (and the index); the cached
   sessions of every chain that starts at the profile are cleared;
3. DeleteAccessKey of the old key, signed with the new one. IAM is eventually
   consistent, so a new key may be refused for a few seconds
   (``InvalidClientTokenId``): the call is retried every ``RETRY_DELAY``
   seconds for up to ``RETRY_FOR`` seconds.

If storing the new key fails, the new key is deleted again (with the old key)
and the old key stays in use. The secrets never reach a message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from agent.errors import IamError, SourceError
from agent.iam_client import IamClient
from agent.keystore import KeyStore
from wire.clock import WallClock
from wire.session_cache import SessionCache
from wire.sigv4 import Credentials

__all__ = ["RETRY_DELAY", "RETRY_FOR", "Rotated", "rotate_keys"]

RETRY_DELAY = 2.0
RETRY_FOR = 20.0
_NOT_YET_VISIBLE = frozenset({"InvalidClientTokenId", "AccessDenied", "SignatureDoesNotMatch"})


@dataclass(frozen=True)
class Rotated:
    """What ``rotate_keys`` did: the old and new access key ids, and how many sessions it cleared."""

    old_access_key_id: str
    new_access_key_id: str
    sessions_cleared: int


async def rotate_keys(profile: str, keystore: KeyStore, cache: SessionCache, clock: WallClock, *,
                      iam_endpoint: str | None = None, verify: bool | str = True, transport=None,
                      sleep: Callable[[float], Awaitable[object]] = trio.sleep) -> Rotated:
    """Rotate the keyring keys of ``profile`` (see the module).

    Args:
        profile: whose keys (the keyring entry's name).
        keystore: the keyring.
        cache: the session cache (its sessions of ``profile`` are cleared).
        clock: dates the signatures.
        iam_endpoint: the IAM endpoint, or None for AWS's.
        verify: TLS verification (a CA bundle path, or True).
        transport: an httpx transport (tests).
        sleep: awaited between retries of DeleteAccessKey.

    Raises:
        SourceError: the profile's keys are not in rolecall's keyring.
        KeyStoreError: the keyring failed.
        IamError: IAM refused, or the old key could not be deleted in time.
    """
    old = await keystore.get(profile)
    if old is None:
        raise SourceError(f"profile {profile!r} has no keys in the keyring: rotate manages only keys that "
                          "`rolecall keys add` stored")
    async with IamClient(iam_endpoint, old, clock, transport=transport, verify=verify) as iam:
        created = (await iam.call("CreateAccessKey"))["AccessKey"]
        new_id, new_secret = created["AccessKeyId"], created["SecretAccessKey"]
        try:
            await keystore.put(profile, new_id, new_secret)
        except BaseException:
            with trio.CancelScope(shield=True):
                await iam.call("DeleteAccessKey", AccessKeyId=new_id)
            raise
    cleared = cache.clear(profile)
    new = Credentials(new_id, new_secret)
    async with IamClient(iam_endpoint, new, clock, transport=transport, verify=verify) as iam:
        waited = 0.0
        while True:
            try:
                await iam.call("DeleteAccessKey", AccessKeyId=old.access_key_id)
                break
            except IamError as exc:
                if exc.code not in _NOT_YET_VISIBLE or waited >= RETRY_FOR:
                    raise IamError("DeleteAccessKey", f"the new key {new_id} is stored, but the old key "
                                   f"{old.access_key_id} could not be deleted ({exc}); delete it by hand") from None
                await sleep(RETRY_DELAY)
                waited += RETRY_DELAY
    return Rotated(old.access_key_id, new_id, cleared)

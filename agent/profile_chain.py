"""A profile's credentials: its plan executed, through the session cache, one prompt at most.

Theory of operation
-------------------
``ProfileResolver.credentials(NAME)`` plans the profile (``wire.aws_config``),
then:

1. answers from the session cache while ``wire.session_cache.MIN_REMAINING``
   (15 min) is left;
2. else takes the profile's lock (``SessionCache.lock``; concurrent callers in
   other processes wait on it), reads the cache again, and makes the chain:
   - the source's credentials: long-term keys from the keyring (``KeyStore``)
     or the config files, a ``credential_process``, a ``credential_source``,
     or a web-identity token for AssumeRoleWithWebIdentity;
   - a GetSessionToken session from long-term keys, with the MFA code when
     the plan names a serial. Sessions have their own cache entries, keyed by
     (access key id, serial, STS endpoint, region) and their own lock, so
     every profile sharing the keys and the serial reuses one session, and one
     prompt serves them all; MFA sessions last ``MFA_SESSION_SECONDS`` (8 h);
   - each AssumeRole of the plan, signed with what came before (with the
     code of its ``mfa_serial`` when the session does not carry it);
3. caches the result (0600) and returns it as a ``CacheEntry``.

Codes come from the ``MfaPrompt`` chosen per call (``agent.mfa_prompt``);
each code is used for exactly one STS call. Long-term keys never reach the
cache: a profile of plain keys yields a GetSessionToken session.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import trio

from agent.errors import AgentError, SourceError
from agent.keystore import KeyStore
from agent.mfa_prompt import PROMPT_TIMEOUT, MfaPrompt, choose_prompt
from agent.profile_sources import (SourceCredentials, container_credentials, environment_credentials,
                                   imds_credentials, process_credentials, refuse_loop)
from agent.sources import read_token_file
from agent.sts_client import StsClient, StsCredentials
from wire.aws_config import AwsConfig, ProfilePlan, RoleStep
from wire.clock import WallClock
from wire.session_cache import CacheEntry, SessionCache, reusable
from wire.sigv4 import Credentials

__all__ = ["MFA_SESSION_SECONDS", "PLAIN_SESSION_SECONDS", "ProfileResolver", "session_key"]

MFA_SESSION_SECONDS = 8 * 3600  # one prompt per working day (aws-vault's chained-session default)
PLAIN_SESSION_SECONDS = 3600  # no MFA: renewing costs no prompt, so keep it short
LOCK_TIMEOUT = PROMPT_TIMEOUT + 60  # the holder may be waiting for a person to type a code


def session_key(access_key_id: str, mfa_serial: str | None, endpoint: str | None, region: str | None) -> str:
    """The cache key of a GetSessionToken session: one per keys, serial, STS endpoint and region."""
    identity = [access_key_id, mfa_serial, (endpoint or "aws").rstrip("/"), region or "aws-global"]
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:40]
    return f"{'mfa' if mfa_serial else 'session'}-{digest}"


def _session_name(role: RoleStep, now: _dt.datetime) -> str:
    return role.session_name or f"rolecall-{int(now.timestamp())}"


class ProfileResolver:
    """Profiles of the AWS config files turned into credentials (see the module).

    Args:
        keystore: long-term keys in the keyring.
        cache: the session cache.
        clock: the wall clock (expiry, signatures).
        environ: the environment the config files and sources are read from.
        token_code: a code given on the command line (used for one call).
        terminal: whether MFA prompts may use the terminal (False in daemons).
        prompt: asks for every code instead of the prompt ``choose_prompt`` picks per profile.
        transport: an httpx transport for STS (tests); real HTTP by default.
    """

    def __init__(self, *, keystore: KeyStore, cache: SessionCache, clock: WallClock,
                 environ: Mapping[str, str] | None = None, token_code: str | None = None, terminal: bool = True,
                 prompt: MfaPrompt | None = None, transport=None) -> None:
        self.keystore, self.cache, self.clock = keystore, cache, clock
        self.environ = os.environ if environ is None else environ
        self.token_code, self.terminal, self.transport = token_code, terminal, transport
        self.prompt = prompt

    # --- planning -----------------------------------------------------------------------------

    def plan(self, profile: str) -> ProfilePlan:
        """The profile's plan.

        Raises:
            wire.aws_config.ProfileError: see there.
        """
        return AwsConfig.load(self.environ).plan(profile, stored=set(self.keystore.names()))

    def _prompt(self, plan: ProfilePlan) -> MfaPrompt:
        if self.prompt is not None:
            return self.prompt
        prompt = choose_prompt(token_code=self.token_code, mfa_process=plan.mfa_process, terminal=self.terminal,
                               profile=plan.profile, environ=self.environ)
        self.token_code = None  # a code given once serves one call
        return prompt

    def _sts(self, plan: ProfilePlan) -> StsClient:
        return StsClient(plan.sts_endpoint, plan.region, clock=self.clock, transport=self.transport,
                         verify=plan.ca_bundle or True, max_attempts=3)

    @asynccontextmanager
    async def _locked(self, key: str) -> AsyncIterator[None]:
        deadline = trio.current_time() + LOCK_TIMEOUT
        while (fd := self.cache.try_lock(key)) is None:
            if trio.current_time() > deadline:
                raise AgentError(f"another rolecall process has held {key}.lock for {LOCK_TIMEOUT:g} s "
                                 "(waiting for an MFA code?); try again")
            await trio.sleep(0.05)
        try:
            yield
        finally:
            SessionCache.unlock(fd)

    # --- the profile --------------------------------------------------------------------------

    async def credentials(self, profile: str, *, fresh: bool = False) -> CacheEntry:
        """The profile's credentials, from the cache or made anew (and cached).

        Args:
            profile: the profile.
            fresh: skip the cached result of the profile itself (sessions it is
                made from are still reused): for a refresh ahead of expiry.

        Raises:
            ProfileError: the profile cannot be planned.
            SourceError, KeyStoreError: the source is unusable.
            MfaError: a code was needed and none could be had.
            StsError, StsUnavailable: STS refused or did not answer.
        """
        refuse_loop(profile, self.environ)
        plan = self.plan(profile)
        key = plan.cache_key()
        if not fresh and reusable(hit := self.cache.get(key), self.clock.now()):
            return hit
        async with self._locked(key):
            if not fresh and reusable(hit := self.cache.get(key), self.clock.now()):
                return hit
            async with self._sts(plan) as sts:
                entry = await self._make(plan, sts, self._prompt(plan))
            self.cache.put(key, entry)
            return entry

    async def login(self, profile: str, *, force: bool = False) -> tuple[CacheEntry, CacheEntry]:
        """``rolecall mfa login``: the profile's MFA session (made now when ``force``), then its credentials.

        Returns:
            ``(MFA session, profile credentials)``; for a profile whose MFA code
            goes on an AssumeRole (no session), both are the profile's credentials.

        Raises:
            AgentError: the profile names no ``mfa_serial``; and as ``credentials``.
        """
        refuse_loop(profile, self.environ)
        plan = self.plan(profile)
        if not plan.mfa_serials:
            raise SourceError(f"profile {profile!r} has no mfa_serial: nothing to log in to")
        if plan.session and plan.session_mfa_serial:
            async with self._sts(plan) as sts:
                session = await self._session(plan, sts, self._prompt(plan), force=force)
            return session, await self.credentials(profile, fresh=force)
        entry = await self.credentials(profile, fresh=force)
        return entry, entry

    async def _make(self, plan: ProfilePlan, sts: StsClient, prompt: MfaPrompt) -> CacheEntry:
        source = plan.source
        if source.kind == "web_identity":
            role = source.role
            got = await sts.assume_role_with_web_identity(role.role_arn, _session_name(role, self.clock.now()),
                                                          read_token_file(source.token_file),
                                                          duration_seconds=role.duration_seconds)
            return await self._assume_roles(plan, sts, prompt, got)
        base = None if plan.session else await self.source_credentials(plan)
        if plan.session or (not plan.roles and base.credentials.session_token is None):
            session = await self._session(plan, sts, prompt, base=base)
            if not plan.roles:
                return self._entry("profile", plan, session.access_key_id, session.secret_access_key,
                                   session.session_token, session.expiration, mfa_serial=session.mfa_serial,
                                   account_id=plan.account_id)
            signer = Credentials(session.access_key_id, session.secret_access_key, session.session_token)
            return await self._assume_roles(plan, sts, prompt, signer)
        if not plan.roles:
            if base.expiration is None:
                raise SourceError(f"profile {plan.profile!r}: its source gave temporary credentials without "
                                  "an expiry, which rolecall cannot serve safely")
            c = base.credentials
            return self._entry("profile", plan, c.access_key_id, c.secret_access_key, c.session_token,
                               base.expiration, account_id=base.account_id or plan.account_id)
        return await self._assume_roles(plan, sts, prompt, base.credentials)

    async def _assume_roles(self, plan: ProfilePlan, sts: StsClient, prompt: MfaPrompt,
                            signer: Credentials | StsCredentials) -> CacheEntry:
        got = signer
        for role in plan.roles:
            code = await prompt(role.mfa_serial) if role.mfa_serial else None
            credentials = got.credentials if isinstance(got, StsCredentials) else got
            got = await sts.assume_role(credentials, role.role_arn, _session_name(role, self.clock.now()),
                                        duration_seconds=role.duration_seconds, external_id=role.external_id,
                                        serial_number=role.mfa_serial, token_code=code)
        return self._entry("profile", plan, got.access_key_id, got.secret_access_key, got.session_token,
                           got.expiration, mfa_serial=plan.mfa_serials[-1] if plan.mfa_serials else None,
                           account_id=got.account_id or plan.account_id, role_arn=got.assumed_role_arn)

    def _entry(self, kind: str, plan: ProfilePlan, key_id: str, secret: str, token: str | None,
               expiration: _dt.datetime, **extra) -> CacheEntry:
        if not token:
            raise SourceError(f"profile {plan.profile!r}: no session token came back; long-term keys are never "
                              "handed out")
        return CacheEntry(kind, plan.profile, plan.chain, key_id, secret, token, expiration, self.clock.now(),
                          **extra)

    # --- sources and sessions -----------------------------------------------------------------

    async def source_credentials(self, plan: ProfilePlan) -> SourceCredentials:
        """The chain's first credentials (not for ``web_identity``, which is a role call).

        Raises:
            SourceError, KeyStoreError: the source is unusable.
        """
        source, environ = plan.source, self.environ
        if source.kind == "keys":
            if source.access_key_id:
                return SourceCredentials(Credentials(source.access_key_id, source.secret_access_key,
                                                     source.session_token))
            keys = await self.keystore.get(source.profile)
            if keys is None:
                raise SourceError(f"profile {source.profile!r} has no keys in the keyring: "
                                  f"run `rolecall keys add --profile {source.profile}`")
            return SourceCredentials(keys)
        if source.kind == "process":
            return await process_credentials(source.command, source.profile, environ)
        if source.kind == "environment":
            return environment_credentials(source.profile, environ)
        if source.kind == "container":
            return await container_credentials(source.profile, environ, transport=self.transport)
        if source.kind == "imds":
            return await imds_credentials(source.profile, environ, transport=self.transport)
        raise SourceError(f"profile {source.profile!r}: {source.kind} is not a source of keys")

    def _known_key_id(self, plan: ProfilePlan) -> str | None:
        """The source's access key id without opening the keyring: from the files, or rolecall's index."""
        source = plan.source
        if source.kind != "keys":
            return None
        return source.access_key_id or self.keystore.names().get(source.profile, {}).get("AccessKeyId")

    async def _session(self, plan: ProfilePlan, sts: StsClient, prompt: MfaPrompt, *,
                       base: SourceCredentials | None = None, force: bool = False) -> CacheEntry:
        """The GetSessionToken session of the source's keys (MFA when the plan says), cached and shared.

        A cached session is found by the key id alone, so the keyring is opened
        (an unlock prompt, a passphrase) only when a new session must be made.
        """
        serial = plan.session_mfa_serial
        key_id = base.access_key_id if base is not None else self._known_key_id(plan)
        if key_id is None:
            base = await self.source_credentials(plan)
            key_id = base.access_key_id
        key = session_key(key_id, serial, plan.sts_endpoint, plan.region)
        if not force and reusable(hit := self.cache.get(key), self.clock.now()):
            return hit
        async with self._locked(key):
            if not force and reusable(hit := self.cache.get(key), self.clock.now()):
                return hit
            if base is None:
                base = await self.source_credentials(plan)
                if base.access_key_id != key_id:  # the keyring was changed behind rolecall's index
                    key = session_key(base.access_key_id, serial, plan.sts_endpoint, plan.region)
            code = await prompt(serial) if serial else None
            duration = plan.session_duration or (MFA_SESSION_SECONDS if serial else PLAIN_SESSION_SECONDS)
            got = await sts.get_session_token(base.credentials, duration_seconds=duration, serial_number=serial,
                                              token_code=code)
            entry = CacheEntry("mfa-session" if serial else "session", plan.source.profile,
                               (plan.source.profile,), got.access_key_id, got.secret_access_key,
                               got.session_token, got.expiration, self.clock.now(), mfa_serial=serial)
            self.cache.put(key, entry)
            return entry

"""A user's agent: its identity from the keyring or a profile, and the MFA session it holds.

``build_source(config.source, ...)`` is what the daemon calls. Besides the
host sources of ``agent.sources`` it builds:

- ``KeyringSource``: ``[source] keyring = "NAME"``: long-term keys from the OS
  keyring (``agent.keystore``), read once and kept; SIGHUP reads them again.
- ``ProfileSource``: ``[source] profile = "NAME"``: the profile's long-term
  keys (keyring, then the files) when it is a profile of keys; else the
  credentials its chain resolves to (``agent.profile_chain``), which makes the
  agent's AssumeRole a chained one.
- ``MfaSession``, wrapped around any of them when ``[source] mfa_serial`` is
  set: the agent signs its AssumeRole with an MFA session (GetSessionToken)
  instead of the keys. The session is shared with the CLI through the session
  cache (``profile_chain.session_key``: keys, serial, endpoint, region), so a
  ``rolecall mfa login`` done earlier serves the agent too. When the session
  nears its end (less than 15 minutes left), a fetch asks the prompt helper:
  a desktop dialog or the profile's ``mfa_process``, never the terminal, and
  at most once per ``PROMPT_COOLDOWN``; otherwise it fails with a line saying
  to run ``rolecall mfa login``, which hands the code to the agent over its
  control socket (``accept_code``). ``rolecall agent status`` shows when the
  session ends and whether the agent waits for a code.
"""

from __future__ import annotations

from collections.abc import Mapping

import trio

from agent.config_types import SourceConfig
from agent.errors import MfaError, SourceError
from agent.keystore import KeyStore
from agent.mfa_prompt import MfaPrompt, choose_prompt
from agent.profile_chain import MFA_SESSION_SECONDS, ProfileResolver, session_key
from agent.sources import CredentialSource, WebIdentitySource, source_from_config
from agent.sts_client import StsClient
from wire.aws_config import ProfileError
from wire.clock import WallClock
from wire.session_cache import CacheEntry, SessionCache, default_cache_dir, reusable
from wire.sigv4 import Credentials

__all__ = ["KeyringSource", "MfaSession", "PROMPT_COOLDOWN", "ProfileSource", "build_source"]

PROMPT_COOLDOWN = 600.0  # seconds between two unanswered dialogs: no dialog storm while the user is away


class KeyringSource:
    """Long-term keys stored in the OS keyring under ``name``."""

    def __init__(self, keystore: KeyStore, name: str) -> None:
        self.keystore, self.name = keystore, name
        self.description = f"keys of {name!r} in the keyring"
        self._credentials: Credentials | None = None

    async def get(self) -> Credentials:
        if self._credentials is None:
            keys = await self.keystore.get(self.name)
            if keys is None:
                raise SourceError(f"the keyring holds no keys for {self.name!r}: "
                                  f"run `rolecall keys add --profile {self.name}`")
            self._credentials = keys
        return self._credentials

    def reload(self) -> None:
        """Read the keyring again on the next ``get`` (the keys may have been rotated)."""
        self._credentials = None

    def __repr__(self) -> str:
        return f"KeyringSource({self.name!r})"


class ProfileSource:
    """The identity of a profile of the AWS config files (see the module)."""

    def __init__(self, resolver: ProfileResolver, profile: str) -> None:
        self.resolver, self.profile = resolver, profile
        self.description = f"profile {profile!r}"

    async def get(self) -> Credentials:
        try:
            plan = self.resolver.plan(self.profile)
        except ProfileError as exc:
            raise SourceError(str(exc)) from None
        if plan.source.long_term and not plan.roles:
            return (await self.resolver.source_credentials(plan)).credentials
        entry = await self.resolver.credentials(self.profile)
        return Credentials(entry.access_key_id, entry.secret_access_key, entry.session_token)

    def reload(self) -> None:
        """Nothing held: the profile is planned afresh on every ``get``."""

    def __repr__(self) -> str:
        return f"ProfileSource({self.profile!r})"


class MfaSession:
    """An MFA session of ``inner``'s long-term keys, held for the agent (see the module).

    Args:
        inner: the long-term identity.
        serial: the MFA device.
        client: the agent's STS client (its endpoint and region key the shared cache).
        cache: the session cache.
        clock: the wall clock.
        prompt: asks for a code (a dialog, ``mfa_process``), or None to wait for ``accept_code``.
        login_hint: what to tell the user to run.
        duration: DurationSeconds of each session.
    """

    def __init__(self, inner: CredentialSource, serial: str, client: StsClient, cache: SessionCache,
                 clock: WallClock, *, prompt: MfaPrompt | None, login_hint: str,
                 duration: int = MFA_SESSION_SECONDS) -> None:
        self.inner, self.serial, self.client, self.cache, self.clock = inner, serial, client, cache, clock
        self.prompt, self.login_hint, self.duration = prompt, login_hint, duration
        self.description = f"{inner.description} with an MFA session of {serial}"
        self.held: CacheEntry | None = None
        self.waiting = False
        self._last_prompt = -PROMPT_COOLDOWN

    def __repr__(self) -> str:
        return f"MfaSession({self.inner!r}, {self.serial!r})"

    async def _key(self) -> tuple[Credentials, str]:
        keys = await self.inner.get()
        endpoint = self.client.endpoint
        return keys, session_key(keys.access_key_id, self.serial, endpoint.url, endpoint.region)

    async def get(self) -> Credentials:
        """The session's credentials; a new session when it nears its end (may prompt).

        Raises:
            SourceError: no session and no code to make one (``waiting`` is then True).
            StsError, StsUnavailable: GetSessionToken failed.
        """
        if not reusable(self.held, self.clock.now()):
            keys, key = await self._key()
            cached = self.cache.get(key)
            if reusable(cached, self.clock.now()):
                self.held = cached
            else:
                await self._open(keys, key, await self._ask())
        held = self.held
        return Credentials(held.access_key_id, held.secret_access_key, held.session_token)

    async def _ask(self) -> str:
        now = trio.current_time()
        if self.prompt is not None and now - self._last_prompt >= PROMPT_COOLDOWN:
            self._last_prompt = now
            try:
                return await self.prompt(self.serial)
            except MfaError:
                pass
        self.waiting = True
        raise SourceError(f"the MFA session of {self.serial} has ended: run `{self.login_hint}` to give the "
                          "agent a code")

    async def accept_code(self, code: str) -> CacheEntry:
        """Open a session with a code handed over the control socket (``rolecall mfa login``).

        Raises:
            SourceError, StsError, StsUnavailable: as ``get``.
        """
        keys, key = await self._key()
        return await self._open(keys, key, code)

    async def _open(self, keys: Credentials, key: str, code: str) -> CacheEntry:
        got = await self.client.get_session_token(keys, duration_seconds=self.duration, serial_number=self.serial,
                                                  token_code=code)
        self.held = CacheEntry("mfa-session", "agent", (), got.access_key_id, got.secret_access_key,
                               got.session_token, got.expiration, self.clock.now(), mfa_serial=self.serial)
        self.waiting = False
        try:
            self.cache.put(key, self.held)
        except OSError:
            pass  # the CLI merely cannot reuse it; the agent holds it
        return self.held

    def status(self) -> dict:
        """``mfa_serial``, ``mfa_expiration`` (aware datetime or None) and ``mfa_waiting``."""
        return {"mfa_serial": self.serial, "mfa_expiration": self.held.expiration if self.held else None,
                "mfa_waiting": self.waiting}

    def reload(self) -> None:
        self.inner.reload()


def build_source(config: SourceConfig, client: StsClient, clock: WallClock, *,
                 environ: Mapping[str, str] | None = None) -> CredentialSource | WebIdentitySource:
    """The agent's source for a checked ``[source]`` table (host kinds: ``agent.sources``).

    Raises:
        SourceError: a file or the environment is unusable now.
    """
    keystore = KeyStore(environ=environ)
    cache = SessionCache(default_cache_dir(environ))
    resolver = None
    if config.kind == "keyring":
        inner = KeyringSource(keystore, config.keyring)
    elif config.kind == "profile":
        resolver = ProfileResolver(keystore=keystore, cache=cache, clock=clock, environ=environ, terminal=False)
        inner = ProfileSource(resolver, config.profile)
    else:
        inner = source_from_config(config, environ=environ)
    if not config.mfa_serial:
        return inner
    mfa_process = None
    if resolver is not None:
        try:
            mfa_process = resolver.plan(config.profile).mfa_process
        except ProfileError:
            pass  # the first fetch reports it
    prompt = choose_prompt(mfa_process=mfa_process, terminal=False, environ=environ)
    hint = f"rolecall mfa login --profile {config.profile}" if config.profile else "rolecall mfa login --agent"
    return MfaSession(inner, config.mfa_serial, client, cache, clock, prompt=prompt, login_hint=hint)


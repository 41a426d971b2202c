"""`rolecall doctor`'s probes: look at the host and record what was seen (``cli.doctor_checks`` and its siblings judge it).

Each probe is bounded: HTTP by ``STS_TIMEOUT``/``IMDS_TIMEOUT`` (all of a
request, under ``trio.move_on_after`` as well as httpx's own timeouts), the
control socket by ``CONTROL_TIMEOUT``, botocore's chain by ``CHAIN_TIMEOUT`` (in a
worker thread that is abandoned when late: a ``credential_process`` may hang),
``systemctl`` and ``ip`` by ``COMMAND_TIMEOUT``. Only the endpoints handed in are
contacted; which ones those may be is decided by ``cli.doctor``. The wall clock
is injected (``WallClock``); nothing here reads the time itself.

No secret is kept in what a probe returns: key ids only (the checks print their
first four characters); the source's secret signs one GetCallerIdentity and is
dropped.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import grp
import json
import os
import pwd
import shutil
import ssl
import subprocess
from collections.abc import Mapping

import httpx
import trio

from agent.config_types import AgentConfig, SourceConfig
from agent.errors import SourceError, StsError, StsUnavailable, one_line
from agent.keystore import KeyStore
from agent.sources import EnvSource, read_secret_file
from agent.sts_client import StsClient, is_loopback_url, parse_expiration, resolve_endpoint
from agent.user_sources import KeyringSource
from cli.doctor_checks import AgentAnswer, HttpProbe, IdentityAnswer, PathFacts
from cli.doctor_sdk import ChainAnswer, ImdsProbe, ImdsTarget
from cli.doctor_systemd import UnitState, addresses_on, parse_systemctl_show
from wire.clock import WallClock
from wire.control import ControlError, request
from wire.session_cache import default_cache_dir
from wire.sigv4 import Credentials

__all__ = ["ask_agent", "botocore_imds_settings", "identity", "path_facts", "probe_imds", "probe_sts",
           "run_chain", "systemd_facts", "trusted_owners"]

STS_TIMEOUT = 5.0
IMDS_TIMEOUT = 2.0
CONTROL_TIMEOUT = 2.0
CHAIN_TIMEOUT = 10.0
COMMAND_TIMEOUT = 5.0
UNITS = ("rolecall-agent.service", "rolecall-agent.socket", "rolecall-link-local.service", "rolecall-container.socket")
_GCI_BODY = b"Action=GetCallerIdentity&Version=2011-06-15"


def _reason(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, 300)


# --- STS -----------------------------------------------------------------------------------------------


async def probe_sts(config: AgentConfig, clock: WallClock) -> HttpProbe:
    """One unsigned POST (GetCallerIdentity without a signature): any answer shows the endpoint, ``Date`` its clock."""
    url = resolve_endpoint(config.sts.endpoint_url, config.sts.region,
                           global_endpoint=config.sts.global_endpoint).url
    loopback = is_loopback_url(url)
    sent = clock.now()
    try:
        verify = ssl.create_default_context(cafile=config.sts.ca_bundle) if config.sts.ca_bundle else True
        async with httpx.AsyncClient(verify=verify, timeout=STS_TIMEOUT, trust_env=not loopback,
                                     follow_redirects=False) as client:
            with trio.fail_after(STS_TIMEOUT):
                response = await client.post(url, content=_GCI_BODY, headers={
                    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    except trio.TooSlowError:
        return HttpProbe(url, None, None, f"no answer within {STS_TIMEOUT:g} s", sent, clock.now(), loopback)
    except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
        return HttpProbe(url, None, None, _reason(exc), sent, clock.now(), loopback)
    received = clock.now()
    try:
        date = email.utils.parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError):
        date = None
    if date is not None and date.tzinfo is None:
        date = None   # "-0000": no zone given, not a usable reading
    return HttpProbe(url, response.status_code, date, None, sent, received, loopback)


async def _source_keys(source: SourceConfig, environ: Mapping[str, str]) -> Credentials | str:
    """The agent's own keys when this process may read them, else why not (a skip's reason)."""
    if source.kind == "static":
        return Credentials(source.access_key_id, source.secret_access_key)
    if source.kind == "file":
        return Credentials(source.access_key_id, read_secret_file(source.secret_access_key_file))
    if source.kind == "env":
        if not environ.get("AWS_ACCESS_KEY_ID"):
            return ("[source] env = true: the agent's keys are in its own environment, which this process "
                    "cannot see (AWS_ACCESS_KEY_ID is unset here)")
        return await EnvSource(environ).get()
    if source.kind == "keyring":
        return await KeyringSource(KeyStore(timeout=STS_TIMEOUT, environ=environ), source.keyring).get()
    if source.kind == "profile":
        return (f"[source] profile = {source.profile!r} may run credential_process, SSO or an MFA prompt: "
                f"check it with `aws sts get-caller-identity --profile {source.profile}`")
    return "[source] web_identity_token_file: the agent signs nothing (AssumeRoleWithWebIdentity is unsigned)"


async def identity(config: AgentConfig, clock: WallClock, environ: Mapping[str, str]) -> IdentityAnswer:
    """GetCallerIdentity signed (SigV4, by the injected clock) with the agent's own source keys."""
    try:
        keys = await _source_keys(config.source, environ)
    except SourceError as exc:
        return IdentityAnswer(key_id=config.source.access_key_id, source_error=str(exc))
    if isinstance(keys, str):
        return IdentityAnswer(skipped=keys)
    try:
        async with StsClient(config.sts.endpoint_url, config.sts.region, clock=clock, timeout=STS_TIMEOUT,
                             verify=config.sts.ca_bundle or True, max_attempts=1,
                             global_endpoint=config.sts.global_endpoint) as sts:
            answer = await sts.get_caller_identity(keys)
    except StsError as exc:
        return IdentityAnswer(key_id=keys.access_key_id, code=exc.code, error=str(exc))
    except (StsUnavailable, OSError, ssl.SSLError) as exc:
        return IdentityAnswer(key_id=keys.access_key_id, error=str(exc) or _reason(exc))
    return IdentityAnswer(key_id=keys.access_key_id, arn=answer["Arn"])


# --- the agent and its metadata endpoint ------------------------------------------------------------------


async def ask_agent(paths: list[str]) -> AgentAnswer:
    """The control socket's ``status`` answer (the first of ``paths`` that answers)."""
    try:
        status = await trio.to_thread.run_sync(lambda: request(paths, {"op": "status"}, timeout=CONTROL_TIMEOUT))
    except ControlError as exc:
        return AgentAnswer(tuple(paths), error=str(exc))
    return AgentAnswer(tuple(paths), status=status)


async def probe_imds(target: ImdsTarget) -> ImdsProbe:
    """IMDSv2 as an SDK does it: token PUT, role listing, that role's credentials (no secret kept)."""
    base = target.url
    steps = (("token PUT", "PUT", "latest/api/token"), ("role", "GET", "latest/meta-data/iam/security-credentials/"))
    headers = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    try:
        async with httpx.AsyncClient(timeout=IMDS_TIMEOUT, trust_env=False, follow_redirects=False) as client:
            with trio.fail_after(3 * IMDS_TIMEOUT):
                answers = []
                for step, method, path in steps:
                    response = await client.request(method, base + path, headers=headers)
                    if response.status_code != 200:
                        return ImdsProbe(target, step, response.status_code)
                    answers.append(response.text)
                    headers = {"X-aws-ec2-metadata-token": answers[0]}
                role = answers[1]
                if not role or any(c in role for c in "/ \r\n"):   # botocore appends it to the path as sent
                    return ImdsProbe(target, "role", error=f"the listing is not one role name: {role[:80]!r}")
                response = await client.get(base + "latest/meta-data/iam/security-credentials/" + role,
                                            headers=headers)
    except trio.TooSlowError:
        return ImdsProbe(target, "request", error=f"no answer within {3 * IMDS_TIMEOUT:g} s")
    except httpx.HTTPError as exc:
        return ImdsProbe(target, "request", error=_reason(exc))
    if response.status_code != 200:
        return ImdsProbe(target, "credentials", response.status_code, role=role)
    try:
        document = json.loads(response.text)
        expiration = parse_expiration(document["Expiration"])
    except (ValueError, KeyError, TypeError):
        return ImdsProbe(target, "credentials", error="the answer is not a credentials document", role=role)
    return ImdsProbe(target, role=role, key_id=str(document.get("AccessKeyId", "")), expiration=expiration,
                     code=document.get("Code"))


# --- what an SDK here picks up --------------------------------------------------------------------------


NO_BOTOCORE = "botocore is not installed with this rolecall (`pip install botocore` to see what SDKs here pick up)"


def botocore_imds_settings(environ: Mapping[str, str]) -> tuple[str | None, str]:
    """botocore's ``ec2_metadata_service_endpoint`` (environment or config file) and endpoint mode, here.

    Without botocore (an optional dependency): the environment variables alone.
    """
    fallback = (environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or None,
                environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") or "ipv4")
    try:   # imported here: botocore is optional, and heavy
        import botocore.session
        from botocore.utils import resolve_imds_endpoint_mode
    except ImportError:
        return fallback
    session = botocore.session.Session()
    try:
        return session.get_config_variable("ec2_metadata_service_endpoint"), resolve_imds_endpoint_mode(session)
    except Exception:   # noqa: BLE001 - a broken config file: the chain row reports it
        return fallback


def _chain(remove: tuple[str, ...], notes: tuple[str, ...]) -> ChainAnswer:
    try:
        import botocore.credentials
        import botocore.session
    except ImportError:
        return ChainAnswer(unavailable=NO_BOTOCORE)
    try:
        resolver = botocore.session.Session().get_component("credential_provider")
        for name in remove:
            resolver.remove(name)
        creds = resolver.load_credentials()
    except Exception as exc:  # noqa: BLE001 - any provider's failure is the answer
        return ChainAnswer(error=_reason(exc), not_tried=notes)
    if creds is None:
        return ChainAnswer(not_tried=notes)
    if isinstance(creds, botocore.credentials.DeferredRefreshableCredentials):
        return ChainAnswer(method=creds.method, deferred=True, not_tried=notes)
    expiry = getattr(creds, "_expiry_time", None)   # botocore keeps it private; absent for static keys
    return ChainAnswer(method=creds.method, key_id=creds.access_key, not_tried=notes,
                       expiration=expiry if isinstance(expiry, _dt.datetime) else None)


async def run_chain(remove: tuple[str, ...], notes: tuple[str, ...]) -> ChainAnswer:
    """botocore's default chain in this process, without the providers in ``remove``."""
    with trio.move_on_after(CHAIN_TIMEOUT):
        return await trio.to_thread.run_sync(_chain, remove, notes, abandon_on_cancel=True)
    return ChainAnswer(error=f"no answer within {CHAIN_TIMEOUT:g} s (a credential_process waiting?)",
                       not_tried=notes)


# --- systemd -----------------------------------------------------------------------------------------


async def _output(*argv: str) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    with trio.move_on_after(COMMAND_TIMEOUT):
        result = await trio.run_process(list(argv), capture_stdout=True, stderr=subprocess.DEVNULL, check=False)
        return result.stdout.decode("utf-8", "replace") if result.returncode == 0 else None
    return None


async def systemd_facts() -> tuple[str, list[UnitState], bool | None, str]:
    """``(PID 1's name, the rolecall units' states, 169.254.169.254 on lo?, systemctl scope)``."""
    try:
        with open("/proc/1/comm", encoding="utf-8") as f:
            pid1 = f.read().strip()
    except OSError:
        pid1 = ""
    if pid1 != "systemd":
        return pid1, [], None, "systemctl"
    show = ("show", "--no-pager", "--property=Id,LoadState,ActiveState,SubState,UnitFileState", *UNITS)
    scope, units = "systemctl", parse_systemctl_show(await _output("systemctl", *show) or "")
    if os.geteuid() != 0 and not any(u.installed and u.name == UNITS[0] for u in units):
        scope, units = "systemctl --user", parse_systemctl_show(await _output("systemctl", "--user", *show) or "")
    lo = await _output("ip", "-j", "addr", "show", "dev", "lo")
    return pid1, units, None if lo is None else "169.254.169.254" in addresses_on(lo), scope


# --- permissions -----------------------------------------------------------------------------------------


def trusted_owners() -> tuple[frozenset[int], int | None]:
    """Who may own rolecall's files (root, this user, the system agent's user ``rolecall``) and that group."""
    uids = {0, os.geteuid()}
    try:
        uids.add(pwd.getpwnam("rolecall").pw_uid)
    except KeyError:
        pass
    try:
        gid = grp.getgrnam("rolecall").gr_gid
    except KeyError:
        gid = None
    return frozenset(uids), gid


def _facts(path: str, kind: str) -> PathFacts:
    try:
        info = os.stat(path) if kind in ("secret", "config") else os.lstat(path)
    except OSError:
        return PathFacts(path, kind, None)
    return PathFacts(path, kind, info.st_mode, info.st_uid, info.st_gid)


def path_facts(config_path: str, config: AgentConfig | None, sockets: list[str],
               environ: Mapping[str, str]) -> list[PathFacts]:
    """The config, the key and token files it names, the control socket, and the directories holding them."""
    secret_in_config = config is not None and config.source.kind == "static"
    files = [(config_path, "secret" if secret_in_config else "config")]
    if config is not None:
        files += [(path, "secret") for path in (config.source.secret_access_key_file,
                                                config.source.web_identity_token_file,
                                                config.container.token_file if config.container else None) if path]
    files += [(path, "socket") for path in sockets]
    dirs = [os.path.dirname(os.path.abspath(path)) for path, _ in files]
    cache = default_cache_dir(environ)
    if os.path.isdir(cache):
        dirs.append(cache)
    seen = dict.fromkeys([*files, *((d, "dir") for d in dirs)])
    return [facts for facts in (_facts(path, kind) for path, kind in seen) if facts.mode is not None]

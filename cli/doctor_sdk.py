"""`rolecall doctor`'s verdicts on what SDKs here reach: the metadata endpoint and botocore's chain. Pure.

``imds_target`` is the rule for which metadata endpoint doctor may try (``cli.doctor``
explains it); ``chain_plan`` keeps botocore's chain to the same rule. The rows say
which endpoint and provider they saw, never a secret (key ids: four characters).
Served credentials with less than ``LOW_REMAINING`` left are a warning: botocore
refreshes them on every call from there (its advisory window).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cli.doctor_checks import Check, key_hint, span
from wire.clock import iso_z

__all__ = ["ChainAnswer", "DEFAULT_IMDS", "ImdsProbe", "ImdsTarget", "LONG_TERM_METHODS", "chain_check", "chain_plan",
           "imds_check", "imds_target"]

LOW_REMAINING = _dt.timedelta(minutes=15)
DEFAULT_IMDS = {"ipv4": "169.254.169.254", "ipv6": "fd00:ec2::254"}
ECS_HOST = "169.254.170.2"   # botocore's host for AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
# botocore providers that sign with long-term keys of their own instead of asking an agent.
LONG_TERM_METHODS = frozenset({"env", "shared-credentials-file", "config-file", "boto-config", "ec2-credentials-file"})


# --- IMDS: where to look, what it serves --------------------------------------------------------------


@dataclass(frozen=True)
class ImdsTarget:
    """The metadata endpoint doctor tries (``url`` ends with ``/``) and why that one."""

    url: str
    origin: str


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def imds_target(sdk_endpoint: str | None, endpoint_mode: str, listen: Sequence[tuple[str, int]],
                is_local: Callable[[str], bool], sdk_origin: str = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
                ) -> ImdsTarget | None:
    """Which metadata endpoint to try, without ever guessing one off this host (see ``cli.doctor``).

    Args:
        sdk_endpoint: botocore's ``ec2_metadata_service_endpoint`` here
            (``AWS_EC2_METADATA_SERVICE_ENDPOINT`` or the AWS config file): configured,
            so used as given.
        endpoint_mode: ``ipv4`` or ``ipv6`` (botocore's ``ec2_metadata_service_endpoint_mode``).
        listen: the agent config's ``[metadata] listen`` as ``(host, port)``.
        is_local: whether an address is this host's (loopback, or on an interface).
        sdk_origin: where ``sdk_endpoint`` was set, for the row.

    Returns:
        The endpoint, or None when nothing here may be tried.
    """
    if sdk_endpoint:
        return ImdsTarget(sdk_endpoint.rstrip("/") + "/", sdk_origin)
    default = DEFAULT_IMDS.get(endpoint_mode.lower(), DEFAULT_IMDS["ipv4"])
    if is_local(default):
        return ImdsTarget(f"http://{_url_host(default)}/", f"{default}, an address of this host")
    for host, port in listen:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        if port and is_local(host):
            return ImdsTarget(f"http://{_url_host(host)}:{port}/", "[metadata] listen")
    return None


@dataclass(frozen=True)
class ImdsProbe:
    """IMDSv2 from this process: token PUT, role listing, credentials; ``failed_step`` when one failed."""

    target: ImdsTarget
    failed_step: str | None = None
    http_status: int | None = None
    error: str | None = None
    role: str | None = None
    key_id: str | None = None
    expiration: _dt.datetime | None = None
    code: str | None = None


def _imds_fix(probe: ImdsProbe) -> str:
    step, status = probe.failed_step, probe.http_status
    if status is None and step == "request":
        return f"nothing answers at {probe.target.url}: start the agent, or correct the endpoint"
    if status == 403:
        return "the agent refuses this caller: peers must be local and Host allowed ([metadata] allowed_peers/hosts)"
    if status == 401:
        return "the agent refused the token: set [metadata] tokens, or check what sits in front of it"
    if status == 503:
        return "the agent holds no credentials yet: see the agent row"
    if step == "role" and status == 404:
        return "the agent serves no role to this caller: check [role] and [roles.NAME] match rules"
    return f"check what answers at {probe.target.url}: it does not speak IMDS as the agent does"


def imds_check(target: ImdsTarget | None, probe: ImdsProbe | None, now: _dt.datetime) -> Check:
    """The metadata endpoint as this process reaches it, with an IMDSv2 token."""
    if target is None or probe is None:
        return Check("imds", "skip", "no endpoint to try: AWS_EC2_METADATA_SERVICE_ENDPOINT is unset, "
                     "169.254.169.254 is not an address of this host, and [metadata] listen names no fixed port")
    where = f"{target.url} ({target.origin})"
    if probe.failed_step is not None:
        answer = f"HTTP {probe.http_status}" if probe.http_status is not None else probe.error
        return Check("imds", "fail", f"{where}: {probe.failed_step} failed: {answer}", _imds_fix(probe))
    if probe.code not in (None, "Success") or probe.expiration is None:
        return Check("imds", "fail", f"{where}: the credentials document says {probe.code!r}", _imds_fix(probe))
    left = probe.expiration - now
    detail = (f"{where}: IMDSv2 token, role {probe.role}, credentials {key_hint(probe.key_id)} "
              f"until {iso_z(probe.expiration)} ({span(left)} left)")
    if left <= _dt.timedelta():
        return Check("imds", "fail", f"{where}: served credentials expired at {iso_z(probe.expiration)}",
                     "the agent must never serve these: check the clock and the agent's log")
    if left < LOW_REMAINING:
        return Check("imds", "warn", detail + ": SDKs refresh on every call this close to expiry",
                     "see the agent row: its refreshes may be failing")
    return Check("imds", "ok", detail)


# --- what an SDK here picks up ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainAnswer:
    """botocore's default credential chain, run in this process.

    ``method`` is the provider that answered (None: no credentials);
    ``deferred`` when it fetches on first use (not done here); ``not_tried``
    names providers left out, with why; ``error`` when the chain raised;
    ``unavailable`` when botocore is not installed here.
    """

    method: str | None = None
    key_id: str | None = None
    expiration: _dt.datetime | None = None
    deferred: bool = False
    not_tried: tuple[str, ...] = ()
    error: str | None = None
    unavailable: str | None = None


def chain_check(answer: ChainAnswer, target: ImdsTarget | None) -> Check:
    """What an SDK in this environment would sign with (provider, key id's first 4 characters, expiry)."""
    notes = "".join(f"; {note}" for note in answer.not_tried)
    endpoint_fix = ("export AWS_EC2_METADATA_SERVICE_ENDPOINT=" + target.url if target is not None
                    else "export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://H:P/ (the agent's [metadata] listen)")
    endpoint_fix += ", or put 169.254.169.254 on lo (`rolecall systemd install`)"
    if answer.unavailable is not None:
        return Check("sdk-chain", "skip", answer.unavailable)
    if answer.error is not None:
        return Check("sdk-chain", "fail", f"botocore's credential chain failed: {answer.error}{notes}",
                     "correct the provider named above (AWS_* variables, ~/.aws/config)")
    if answer.method is None:
        return Check("sdk-chain", "fail", f"botocore here finds no credentials{notes}", endpoint_fix)
    if answer.deferred:
        return Check("sdk-chain", "ok", f"botocore uses {answer.method} (fetched on first use, not here){notes}")
    until = f" until {iso_z(answer.expiration)}" if answer.expiration else ""
    detail = f"botocore uses {answer.method}: {key_hint(answer.key_id)}{until}{notes}"
    if answer.method in LONG_TERM_METHODS:
        return Check("sdk-chain", "warn", detail + ": long-term keys, not the agent's",
                     "remove those keys (AWS_ACCESS_KEY_ID..., ~/.aws/credentials) so SDKs here use the agent")
    return Check("sdk-chain", "ok", detail)


def chain_plan(environ: Mapping[str, str], sdk_endpoint: str | None, endpoint_mode: str,
               is_local: Callable[[str], bool]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(providers to leave out, notes)`` for botocore's chain, so it sends nothing off this host.

    The instance-metadata provider is left out when it would fall back to the
    default address (no endpoint configured) and that address is not this host's;
    the container provider when ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` (which
    botocore prefers) points at 169.254.170.2 and that is not this host's.
    """
    remove, notes = [], []
    default = DEFAULT_IMDS.get(endpoint_mode.lower(), DEFAULT_IMDS["ipv4"])
    if environ.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() == "true":
        notes.append("IMDS is off here (AWS_EC2_METADATA_DISABLED=true)")
    elif not sdk_endpoint and not is_local(default):
        remove.append("iam-role")
        notes.append(f"IMDS not tried: with AWS_EC2_METADATA_SERVICE_ENDPOINT unset an SDK here would ask {default}, "
                     "which is not an address of this host")
    if environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") and not is_local(ECS_HOST):
        remove.append("container-role")
        notes.append(f"container endpoint not tried: {ECS_HOST} is not an address of this host")
    return tuple(remove), tuple(notes)

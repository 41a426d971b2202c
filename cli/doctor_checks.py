"""`rolecall doctor`'s verdicts: what the probes saw in, one row per check out. Pure.

This module holds the rows and the report, and the checks of the config, file
permissions, the STS endpoint (reachability, clock, signature) and the agent;
``cli.doctor_sdk`` those of the metadata endpoint and botocore's chain,
``cli.doctor_systemd`` the systemd rows.

Theory of operation
-------------------
``cli.doctor_probes`` looks at the host (files, sockets, HTTP, botocore,
systemctl) and records what it saw in the small frozen dataclasses below; it
decides nothing. The functions here turn those observations into ``Check``
rows (``name``, ``status`` of ``ok|fail|skip|warn``, ``detail``, ``fix``), with
no I/O and no clock reads: every "now" is an argument. ``cli.doctor`` runs the
probes, calls these, and renders the ``Report`` as a table or JSON.

Statuses: ``ok`` holds; ``fail`` does not, and ``fix`` says what to do in one
line; ``warn`` holds with a caveat worth a look (it does not fail the run);
``skip`` could not be checked here and says why (it does not fail the run
either). No row ever holds a secret: access keys appear as their first four
characters.

A clock more than ``SKEW_WARN`` off the STS endpoint's ``Date`` is a warning,
more than ``SKEW_FAIL`` a failure (AWS STS refuses signatures 15 minutes off;
other AWS services 5).
"""

from __future__ import annotations

import datetime as _dt
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from wire.clock import iso_z

__all__ = [
    "AgentAnswer", "Check", "HttpProbe", "IdentityAnswer", "PathFacts", "Report", "SKEW_FAIL", "SKEW_WARN",
    "SYNC_CLOCK", "agent_check", "clock_check", "config_check", "identity_check", "key_hint", "permissions_check",
    "span", "sts_endpoint_check",
]

Status = Literal["ok", "fail", "skip", "warn"]

SKEW_WARN = _dt.timedelta(seconds=60)
SKEW_FAIL = _dt.timedelta(minutes=5)
SYNC_CLOCK = "synchronise this host's clock: `timedatectl set-ntp true` (or `chronyc makestep`)"


@dataclass(frozen=True)
class Check:
    """One row: ``fix`` is None when there is nothing to do."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class Report:
    """Every row, in the order they are shown; ``ok`` unless a row failed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    def to_json(self) -> dict:
        """``{"ok": bool, "checks": [{"name", "status", "detail", "fix"}]}``."""
        return {"ok": self.ok, "checks": [{"name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix}
                                          for c in self.checks]}


def key_hint(access_key_id: str | None) -> str:
    """The first four characters of an access key id (``ASIA...``): enough to tell kinds apart."""
    return f"{access_key_id[:4]}..." if access_key_id else "-"


def span(delta: _dt.timedelta) -> str:
    """A duration for a row: ``42 s``, ``12 min``, ``3 h 5 min`` (its sign dropped)."""
    seconds = int(abs(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


# --- config ------------------------------------------------------------------------------------


def config_check(path: str, error: Exception | None, summary: str, *, unreadable_here: bool = False) -> Check:
    """The agent config: ``error`` is the ``ConfigError`` that ``rolecall agent serve`` would print.

    Args:
        path: the file checked.
        error: None when it loaded; its ``str()`` is the agent's exact line.
        summary: what the file says, for the ok row.
        unreadable_here: the failure is this process's permission to read a file the
            agent's own user may read (skipped, not failed).
    """
    if error is None:
        return Check("config", "ok", f"{path}: valid; {summary}")
    if unreadable_here:
        return Check("config", "skip", f"{error} (as this user; the agent's user may read it)",
                     "run doctor as root or as the agent's user: `sudo rolecall doctor`")
    key = getattr(error, "key", "")
    reason = getattr(error, "reason", "")
    if not key and reason.startswith("cannot read"):
        fix = f"write {path} (agent.toml.example beside the unit templates shows every key), or pass --config FILE"
    elif key:
        fix = f"correct {key} in {path}, then restart the agent (or `systemctl reload rolecall-agent`)"
    else:
        fix = f"correct {path} (agent.toml.example shows every key)"
    return Check("config", "fail", str(error), fix)


# --- permissions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathFacts:
    """What ``lstat`` (``stat`` for files, which may be symlinks) said about one path.

    ``kind``: ``dir`` (holds secrets or the socket), ``secret`` (a key or token
    file, or a config holding a secret), ``config`` (no secret in it), ``socket``.
    ``mode`` is None when the path does not exist.
    """

    path: str
    kind: Literal["dir", "secret", "config", "socket"]
    mode: int | None
    uid: int = 0
    gid: int = 0


def _path_problem(facts: PathFacts, trusted_uids: frozenset[int], socket_gid: int | None) -> tuple[str, str] | None:
    """``(problem, fix)`` for one path, by ``wire.private_files.private_dir``'s rules.

    One difference: doctor looks at another process's files, so the owner may be
    root or the agent's user as well as whoever runs doctor.
    """
    path, mode = facts.path, facts.mode
    if mode is None:
        return None
    bits = stat.S_IMODE(mode)
    if facts.kind == "dir" and not stat.S_ISDIR(mode):
        return f"{path} is not a directory (a symlink?)", f"remove {path}, or choose another"
    if facts.uid not in trusted_uids:
        return (f"{path} belongs to uid {facts.uid}, neither root nor this user nor the agent's",
                f"chown root {path} (or the agent's user), or choose another")
    if facts.kind == "socket":
        if bits & 0o007 or (bits & 0o070 and facts.gid != socket_gid):
            return (f"{path} is open to other users (mode {bits:o})",
                    f"restart the agent (it makes the socket 0600, or 0660 for the group rolecall): "
                    f"until then `chmod 600 {path}`")
        return None
    if facts.kind == "secret" and bits & 0o077:
        return f"{path} holds a secret and is open to others (mode {bits:o})", f"chmod 600 {path}"
    if bits & 0o022:
        return f"{path} is writable by others (mode {bits:o})", f"chmod go-w {path}"
    return None


def permissions_check(paths: Sequence[PathFacts], trusted_uids: frozenset[int], socket_gid: int | None) -> Check:
    """The config, key files, data directories and control socket, against the private-files rules."""
    problems = [p for p in (_path_problem(f, trusted_uids, socket_gid) for f in paths) if p is not None]
    present = sum(1 for f in paths if f.mode is not None)
    if not problems:
        return Check("permissions", "ok", f"{present} path{'s' if present != 1 else ''}: owned by root, you or "
                     "the agent; none open to others")
    fixes = list(dict.fromkeys(fix for _, fix in problems))
    return Check("permissions", "fail", "; ".join(p for p, _ in problems), "; ".join(fixes))


# --- STS: reachability, clock, signature ------------------------------------------------------------


@dataclass(frozen=True)
class HttpProbe:
    """One unsigned request to the STS endpoint: its status and ``Date``, or why none came.

    ``sent``/``received`` are the injected wall clock's readings around it.
    """

    url: str
    status: int | None
    date: _dt.datetime | None
    error: str | None
    sent: _dt.datetime
    received: _dt.datetime
    loopback: bool = True


def sts_endpoint_check(probe: HttpProbe | None, config_path: str) -> Check:
    """Whether the STS endpoint answers HTTP at all (any status will do)."""
    if probe is None:
        return Check("sts-endpoint", "skip", "no valid agent config to take the endpoint from")
    if probe.error is not None:
        fix = f"check [sts] endpoint_url and region in {config_path}, and that the endpoint is up"
        if not probe.loopback:
            fix += " and reachable from here (HTTPS_PROXY; systemd: IPAddressAllow= in a drop-in)"
        return Check("sts-endpoint", "fail", f"cannot reach {probe.url}: {probe.error}", fix)
    took = (probe.received - probe.sent).total_seconds() * 1000
    return Check("sts-endpoint", "ok", f"{probe.url} answered (HTTP {probe.status}) in {took:.0f} ms")


def clock_check(probe: HttpProbe | None) -> Check:
    """This host's wall clock against the STS endpoint's ``Date`` (taken at the request's midpoint)."""
    if probe is None or probe.error is not None:
        return Check("clock-skew", "skip", "the STS endpoint did not answer")
    if probe.date is None:
        return Check("clock-skew", "skip", f"{probe.url} sent no usable Date header")
    here = probe.sent + (probe.received - probe.sent) / 2
    # Date has whole seconds (truncated): the endpoint's time was half a second past it, on average.
    skew = here - (probe.date + _dt.timedelta(milliseconds=500))   # positive: this host is ahead
    way = "ahead of" if skew > _dt.timedelta() else "behind"
    detail = f"this host's clock is {span(skew)} {way} the endpoint's (Date {iso_z(probe.date)})"
    if abs(skew) >= SKEW_FAIL:
        return Check("clock-skew", "fail", detail + ": signatures and expiry times go wrong", SYNC_CLOCK)
    if abs(skew) >= SKEW_WARN:
        return Check("clock-skew", "warn", detail, SYNC_CLOCK)
    return Check("clock-skew", "ok", f"within {span(skew)} of the endpoint's (Date {iso_z(probe.date)})")


@dataclass(frozen=True)
class IdentityAnswer:
    """GetCallerIdentity signed with the agent's source keys, or why it was not made.

    Exactly one of ``arn``, ``error`` (with ``code`` for an AWS error document)
    and ``skipped`` is set.
    """

    key_id: str | None = None
    arn: str | None = None
    code: str | None = None
    error: str | None = None
    skipped: str | None = None
    source_error: str | None = None


def identity_check(answer: IdentityAnswer | None, config_path: str, endpoint: HttpProbe | None = None) -> Check:
    """The SigV4 result of a GetCallerIdentity with the agent's own identity (skipped when
    ``endpoint``, the unsigned probe, found nothing answering: that row already says so)."""
    if answer is None:
        return Check("sts-identity", "skip", "no valid agent config to take the identity from")
    if answer.skipped is not None:
        return Check("sts-identity", "skip", answer.skipped)
    if answer.source_error is not None:
        return Check("sts-identity", "fail", f"the agent's own keys: {answer.source_error}",
                     f"correct [source] in {config_path}: the agent cannot sign with it either")
    if endpoint is not None and endpoint.error is not None and answer.arn is None and answer.code is None:
        return Check("sts-identity", "skip", "the STS endpoint did not answer")
    key = key_hint(answer.key_id)
    if answer.arn is not None:
        return Check("sts-identity", "ok", f"GetCallerIdentity with {key}: {answer.arn}")
    detail = f"GetCallerIdentity with {key}: {answer.error}"
    text = answer.error or ""
    if answer.code == "SignatureDoesNotMatch" and ("expired" in text or "not yet current" in text):
        fix = SYNC_CLOCK
    elif answer.code == "SignatureDoesNotMatch":
        fix = f"the secret does not belong to {key}: correct [source] in {config_path}"
    elif answer.code in ("InvalidClientTokenId", "UnrecognizedClientException"):
        fix = f"the endpoint does not know {key}: correct [source] access_key_id in {config_path}"
    elif answer.code in ("ExpiredToken", "ExpiredTokenException"):
        fix = "the source's session token has expired: give the agent fresh keys"
    elif answer.code is None:
        fix = f"check [sts] in {config_path}: the endpoint gave no usable answer"
    else:
        fix = f"see the endpoint's answer above; the source is [source] in {config_path}"
    return Check("sts-identity", "fail", detail, fix)


# --- the agent --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentAnswer:
    """The control socket's ``status`` answer (``status``), or why none came (``error``)."""

    paths: tuple[str, ...]
    status: dict | None = None
    error: str | None = None


def agent_check(answer: AgentAnswer, *, start_hint: str) -> Check:
    """Whether the agent answers on its control socket, and whether it holds credentials."""
    if answer.status is None:
        return Check("agent", "fail", answer.error or "no agent answers", start_hint)
    status = answer.status
    if "error" in status:
        return Check("agent", "fail", f"the agent refused status: {status['error']}", start_hint)
    if not status.get("ready"):
        why = f"last error: {status['last_error']}" if status.get("last_error") else "no refresh has finished yet"
        fix = ("run `rolecall mfa login --agent` (the agent waits for an MFA code)" if status.get("mfa_waiting")
               else "see the last error; `rolecall agent status` shows the agent's view")
        return Check("agent", "fail", f"answers but holds no credentials ({why})", fix)
    detail = (f"ready: {status.get('role_arn')}, credentials {key_hint(status.get('access_key_id'))} until "
              f"{status.get('expiration')}, next refresh {status.get('next_refresh')}")
    if status.get("last_error"):
        return Check("agent", "warn", f"{detail}; last refresh failed: {status['last_error']}",
                     "the agent keeps serving what it holds; see the error")
    return Check("agent", "ok", detail)

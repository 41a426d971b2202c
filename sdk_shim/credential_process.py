"""The warm path of ``rolecall credential-process``: cached credentials with no heavy import.

botocore and the AWS CLI run ``credential_process`` afresh in every new
process and never cache its output (reference/sdk-clients.md §4), so this
path runs once per CLI call and must cost about as much as starting Python.
``rolecall``'s entry point hands ``credential-process --profile X`` here before
it imports argparse, trio, httpx or keyring:

1. plan the profile from the AWS config files (``wire.aws_config``, stdlib);
2. answer from the session cache while at least ``MIN_REMAINING`` (15 min,
   botocore's advisory window; ``wire.session_cache``) is left;
3. else ask a running user agent over its control socket, when the profile
   assumes the very role the agent serves (same ARN and, when the profile names
   one, the same session name; profiles with an external id never match);
4. else give up (None): the CLI's cold path (``cli.profiles``) resolves the
   profile, prompting for MFA if it must, and fills the cache.

A profile that cannot be planned (unknown, a loop, SSO) fails here with one line.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from collections.abc import Mapping, Sequence

from wire.aws_config import AwsConfig, ProfileError, ProfilePlan
from wire.key_index import read_index
from wire.session_cache import MIN_REMAINING, CacheError, SessionCache, default_cache_dir, parse_z, reusable

__all__ = ["agent_credentials", "plan_profile", "run_warm", "warm_credentials"]

_AGENT_TIMEOUT = 2.0
_FIELDS = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")


def plan_profile(profile: str, environ: Mapping[str, str] | None = None) -> ProfilePlan:
    """The plan of ``profile`` from the AWS config files and rolecall's key index.

    Raises:
        ProfileError: see ``wire.aws_config``.
    """
    return AwsConfig.load(environ).plan(profile, stored=set(read_index(environ)))


def agent_credentials(environ: Mapping[str, str] | None = None, role_arn: str | None = None,
                      session_name: str | None = None, *, now: _dt.datetime | None = None) -> dict | None:
    """Credentials from the user's running agent, as a ``credential_process`` document, or None.

    Args:
        environ: where to find the socket (``$ROLECALL_AGENT_SOCKET``, ``$XDG_RUNTIME_DIR``).
        role_arn: only the credentials of this role (None: whatever the agent serves).
        session_name: and only of this session name, when given.
        now: for the 15-minute rule; default the system clock.

    Returns:
        ``{"Version": 1, ...}`` with at least ``MIN_REMAINING`` left, else None
        (no agent, another role, a refusal, too little time left).
    """
    # wire.control (and socket with it) only once a socket is there: the warm path pays for nothing it skips
    from wire.control import ControlError, request, user_paths

    paths = user_paths(environ)
    if not paths or not any(os.path.exists(path) for path in paths):
        return None
    message = {"op": "credentials"}
    if role_arn:
        message["role_arn"] = role_arn
    if session_name:
        message["session_name"] = session_name
    try:
        answer = request(paths, message, timeout=_AGENT_TIMEOUT)
        if "error" in answer or not all(isinstance(answer.get(k), str) and answer[k] for k in _FIELDS):
            return None
        expiration = parse_z(answer["Expiration"])
    except (ControlError, ValueError):
        return None
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if (expiration - now).total_seconds() < MIN_REMAINING:
        return None
    doc = {"Version": 1, **{k: answer[k] for k in _FIELDS}}
    if isinstance(answer.get("AccountId"), str):
        doc["AccountId"] = answer["AccountId"]
    return doc


def _agent_for(plan: ProfilePlan, environ: Mapping[str, str] | None, now: _dt.datetime | None) -> dict | None:
    if not plan.roles or plan.roles[-1].external_id:
        return None
    role = plan.roles[-1]
    return agent_credentials(environ, role.role_arn, role.session_name, now=now)


def warm_credentials(profile: str, environ: Mapping[str, str] | None = None, *,
                     now: _dt.datetime | None = None) -> dict | None:
    """The ``credential_process`` document for ``profile`` from the cache or the agent, or None.

    Raises:
        ProfileError: the profile cannot be planned.
    """
    plan = plan_profile(profile, environ)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    entry = SessionCache(default_cache_dir(environ)).get(plan.cache_key())
    if reusable(entry, now):
        return entry.process_output()
    return _agent_for(plan, environ, now)


def _profile_argument(argv: Sequence[str]) -> str | None:
    """``X`` from exactly ``credential-process --profile X`` (or ``--profile=X``), else None."""
    if len(argv) == 3 and argv[0] == "credential-process" and argv[1] == "--profile":
        return argv[2]
    if len(argv) == 2 and argv[0] == "credential-process" and argv[1].startswith("--profile="):
        return argv[1].split("=", 1)[1]
    return None


def run_warm(argv: Sequence[str]) -> int | None:
    """Answer ``credential-process --profile X`` without the heavy CLI, if it can be.

    Returns:
        The exit status when answered here (0 printed credentials; 1 one line
        on stderr for a profile that cannot be used), or None to go on to the
        full CLI (other arguments, or nothing cached).
    """
    profile = _profile_argument(argv)
    if profile is None:
        return None
    try:
        doc = warm_credentials(profile)
    except ProfileError as exc:
        print(f"rolecall: credential-process: {exc}", file=sys.stderr)
        return 1
    except (CacheError, OSError):
        return None  # the cold path reports what is wrong with the cache
    if doc is None:
        return None
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()
    return 0

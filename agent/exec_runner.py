"""``rolecall exec``: a command run with its own container-credentials endpoint, refreshed for its whole life.

Theory of operation
-------------------
``run_exec`` resolves the profile once up front (prompting on the terminal if
an MFA code is needed, before the command starts, and failing fast otherwise),
then in one nursery:

1. a ``Rotator`` keeps those credentials fresh (half-life refreshes through
   ``ProfileResolver.credentials(fresh=True)``, which reuses the cached MFA
   session, so a refresh asks for no code while that session lasts);
2. a ``ContainerHandler`` serves them on ``127.0.0.1:0`` behind a 256-bit
   token written 0600, without a newline, to a private temporary directory;
3. the command runs with ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` and
   ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` set, ``AWS_REGION`` and
   ``AWS_DEFAULT_REGION`` set to the profile's region, and the variables
   botocore reads before the container endpoint removed (``child_environment``);
4. signals sent to rolecall are passed on to the command. SIGINT and SIGQUIT
   are passed on only when they cannot have come from the terminal, which
   already delivers them to the command as part of the foreground process
   group; rolecall itself waits for the command either way.

When the command exits, the endpoint stops, the token file and its directory
are removed, and ``run_exec`` returns the command's status (128 + N for a
death by signal N, as shells report it). ``ROLECALL_EXEC`` in the command's
environment (the profile) makes a nested ``rolecall exec`` refuse.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from collections.abc import Mapping, Sequence

import trio

from agent.errors import AgentError
from agent.profile_chain import ProfileResolver
from agent.rotator import Rotator
from metadata_server import ContainerHandler, RoleCredentials, new_container_token, write_token_file
from metadata_server.server import METADATA_LIMITS
from wire.clock import WallClock
from wire.listeners import open_tcp_listeners
from wire.serve import Server
from wire.session_cache import CacheEntry

__all__ = ["EXEC_VARIABLE", "FORWARDED", "child_environment", "exit_status", "run_exec"]

EXEC_VARIABLE = "ROLECALL_EXEC"
CREDENTIALS_PATH = "/credentials"
FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGQUIT)
_FROM_TERMINAL = (signal.SIGINT, signal.SIGQUIT)
# What botocore (and the other SDKs) would use before the container endpoint, or instead of it.
_REMOVED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CREDENTIAL_EXPIRATION",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME")
_ROLE_IN_ARN = re.compile(r"arn:[^:]+:sts::[0-9]{12}:assumed-role/([^/]+)/")


def child_environment(environ: Mapping[str, str], uri: str, token_file: str, region: str | None,
                      profile: str) -> dict[str, str]:
    """The command's environment: the endpoint and region set, competing credentials removed."""
    env = {name: value for name, value in environ.items() if name not in _REMOVED}
    env.update({"AWS_CONTAINER_CREDENTIALS_FULL_URI": uri, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": token_file,
                EXEC_VARIABLE: profile})
    if region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
    return env


def exit_status(returncode: int) -> int:
    """A shell's exit status for a child's ``returncode`` (negative: killed by that signal)."""
    return 128 - returncode if returncode < 0 else returncode


def _role_credentials(entry: CacheEntry, last_updated) -> RoleCredentials:
    match = _ROLE_IN_ARN.match(entry.role_arn or "")
    return RoleCredentials(match.group(1) if match else "session", entry.access_key_id, entry.secret_access_key,
                           entry.session_token, entry.expiration, last_updated, entry.account_id)


def _terminal_foreground() -> bool:
    """Whether our process group is the terminal's foreground group (it then sent SIGINT to the child too)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


async def _forward_signals(process: trio.Process, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(*FORWARDED) as signals:
        task_status.started()
        async for signum in signals:
            if signum in _FROM_TERMINAL and _terminal_foreground():
                continue
            try:
                process.send_signal(signum)
            except ProcessLookupError:
                return


async def run_exec(resolver: ProfileResolver, profile: str, argv: Sequence[str], *, clock: WallClock,
                   environ: Mapping[str, str] | None = None, handle_signals: bool = True) -> int:
    """Run ``argv`` with credentials of ``profile`` (see the module); its exit status.

    Raises:
        AgentError: nested in another ``rolecall exec``; and what ``resolver.credentials`` raises
            for the first credentials.
        OSError: the command cannot be started.
    """
    environ = os.environ if environ is None else environ
    if environ.get(EXEC_VARIABLE):
        raise AgentError(f"already inside `rolecall exec` for profile {environ[EXEC_VARIABLE]!r}: "
                         "nesting would hide the outer credentials")
    first = await resolver.credentials(profile)
    region = resolver.plan(profile).region
    pending = [first]

    async def fetch() -> RoleCredentials:
        entry = pending.pop() if pending else await resolver.credentials(profile, fresh=True)
        return _role_credentials(entry, clock.now())

    rotator = Rotator(fetch, clock)
    runtime = environ.get("XDG_RUNTIME_DIR")
    directory = tempfile.mkdtemp(prefix="rolecall-exec-", dir=runtime if runtime and os.path.isdir(runtime) else None)
    try:
        token_file = os.path.join(directory, "token")
        token = write_token_file(token_file, new_container_token())
        server = Server(ContainerHandler(rotator, token, clock, path=CREDENTIALS_PATH), limits=METADATA_LIMITS)
        async with trio.open_nursery() as nursery:
            await nursery.start(rotator.run)
            addresses = await nursery.start(server.serve, await open_tcp_listeners(["127.0.0.1:0"]))
            env = child_environment(environ, f"http://{addresses[0]}{CREDENTIALS_PATH}", token_file, region, profile)
            process = await trio.lowlevel.open_process(list(argv), env=env)
            if handle_signals:
                await nursery.start(_forward_signals, process)
            returncode = await process.wait()
            server.shutdown()
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return exit_status(returncode)

"""`rolecall mfa login|enroll`: MFA sessions, and virtual MFA devices.

    rolecall mfa login --profile NAME [--token-code C] [--force]
    rolecall mfa login --agent [--token-code C]
    rolecall mfa enroll --profile NAME [--device-name N] [--qr-png FILE]

``login`` gets the profile's MFA session (GetSessionToken with SerialNumber and
TokenCode, ``agent.profile_chain``), caches it until 15 minutes before it ends,
and fills the profile's own cache entry from it, so ``credential_process``
calls after it prompt no more. A valid cached session is reused unless a code
is given or ``--force``. When the user's agent waits for a code of the same
device, the code goes to the agent over its control socket instead (``--agent``
sends it there whatever the profile).

``enroll`` creates a virtual MFA device for the profile's own user, shows its
QR code in the terminal (and writes the PNG, 0600, with ``--qr-png``), asks for
two consecutive codes, enables it, and prints the ``mfa_serial`` line to add to
the profile. A failed enable deletes the device again, so enrolment can be retried.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys

from cli.errors import CliError
from cli.profiles import resolver
from cli.runtime import run

__all__ = ["register"]

_HANDOVER_TIMEOUT = 30.0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``mfa`` command and its sub-commands to the root parser."""
    parser = commands.add_parser("mfa", help="MFA sessions and virtual MFA devices")
    sub = parser.add_subparsers(dest="mfa_command", required=True, metavar="SUBCOMMAND")
    login = sub.add_parser("login", help="get and cache an MFA session for a profile (or give the agent a code)")
    target = login.add_mutually_exclusive_group(required=True)
    target.add_argument("--profile", metavar="NAME", help="a profile with mfa_serial")
    target.add_argument("--agent", action="store_true", help="give the code to the running user agent")
    login.add_argument("--token-code", metavar="C", help="the current code (else asked for)")
    login.add_argument("--force", action="store_true", help="a new session even if a cached one is valid")
    login.set_defaults(run=_login)
    enroll = sub.add_parser("enroll", help="create and enable a virtual MFA device for the profile's user")
    enroll.add_argument("--profile", required=True, metavar="NAME", help="a profile of the user's long-term keys")
    enroll.add_argument("--device-name", metavar="N", help="the device's name (default: the user's name)")
    enroll.add_argument("--qr-png", metavar="FILE", help="also write the QR code as a PNG (mode 0600)")
    enroll.set_defaults(run=_enroll)


# --- login -------------------------------------------------------------------------------------


def _agent_waiting_for(serial: str | None) -> bool:
    """Whether the user's agent waits for a code of ``serial`` (None: of any device)."""
    from wire.control import ControlError, request, user_paths

    paths = user_paths()
    if not paths or not os.path.exists(paths[0]):
        return False
    try:
        status = request(paths, {"op": "status"}, timeout=2.0)
    except ControlError:
        return False
    return bool(status.get("mfa_waiting")) and (serial is None or status.get("mfa_serial") == serial)


async def _code(token_code: str | None, mfa_process: str | None, serial: str) -> str:
    from agent.mfa_prompt import choose_prompt

    return await choose_prompt(token_code=token_code, mfa_process=mfa_process)(serial)


def _hand_over(code: str) -> None:
    from wire.control import ControlError, request, user_paths

    try:
        answer = request(user_paths(), {"op": "mfa-code", "code": code}, timeout=_HANDOVER_TIMEOUT)
    except ControlError as exc:
        raise CliError(f"mfa login: {exc}") from None
    if "error" in answer:
        raise CliError(f"mfa login: the agent refused the code: {answer['error']}")
    print(f"gave the code to the agent: its MFA session of {answer.get('mfa_serial')} lasts until "
          f"{answer.get('mfa_expiration')}")


def _login(args: argparse.Namespace) -> int:
    if args.agent:
        status_serial = _agent_serial()
        _hand_over(run(_code, args.token_code, None, status_serial, what="mfa login"))
        return 0
    chain = resolver(args.token_code)

    async def plan_and_maybe_code():
        plan = chain.plan(args.profile)
        serial = plan.mfa_serials[0] if plan.mfa_serials else None
        if serial and _agent_waiting_for(serial):
            return await _code(args.token_code, plan.mfa_process, serial)
        return None

    code = run(plan_and_maybe_code, what="mfa login")
    if code is not None:
        _hand_over(code)
        return 0

    async def body():
        return await chain.login(args.profile, force=args.force or args.token_code is not None)

    session, creds = run(body, what="mfa login")
    from wire.session_cache import format_z

    if session is not creds:
        print(f"MFA session of {session.mfa_serial} until {format_z(session.expiration)}")
    print(f"profile {args.profile}: credentials {creds.access_key_id} until {format_z(creds.expiration)}")
    return 0


def _agent_serial() -> str:
    from wire.control import ControlError, request, user_paths

    try:
        status = request(user_paths(), {"op": "status"}, timeout=2.0)
    except ControlError as exc:
        raise CliError(f"mfa login: {exc}") from None
    if not status.get("mfa_serial"):
        raise CliError("mfa login: the running agent holds no MFA session ([source] mfa_serial is not set)")
    return status["mfa_serial"]


# --- enroll ------------------------------------------------------------------------------------


def _ask_code(prompt: str) -> str:
    from agent.tty import NoTerminal, ask

    try:
        return ask(prompt)
    except (NoTerminal, EOFError):
        raise CliError("mfa enroll: no terminal to ask for the codes on") from None


def _enroll(args: argparse.Namespace) -> int:
    import segno
    import trio

    from agent.iam_client import IamClient
    from wire.clock import SystemClock
    from wire.private_files import write_private

    chain = resolver()

    async def body() -> str:
        plan = chain.plan(args.profile)
        if not plan.source.long_term:
            raise CliError(f"mfa enroll: profile {args.profile} does not start from long-term keys of an IAM user")
        keys = (await chain.source_credentials(plan)).credentials
        async with IamClient(plan.iam_endpoint, keys, SystemClock(), verify=plan.ca_bundle or True) as iam:
            user = (await iam.call("GetUser"))["User"]
            name, account = args.device_name or user["UserName"], user["Arn"].split(":")[4]
            device = (await iam.call("CreateVirtualMFADevice", VirtualMFADeviceName=name))["VirtualMFADevice"]
            serial = device["SerialNumber"]
            seed = base64.b64decode(device["Base32StringSeed"]).decode("ascii")
            segno.make(f"otpauth://totp/{name}@{account}?secret={seed}", error="m").terminal(compact=True)
            if args.qr_png:  # the QR code holds the seed: a private file
                write_private(args.qr_png, base64.b64decode(device["QRCodePNG"]))
            print(f"Scan the QR code above into your authenticator app (device {serial}).", flush=True)
            code1 = await trio.to_thread.run_sync(_ask_code, "First code: ")
            code2 = await trio.to_thread.run_sync(_ask_code, "Next code (wait for it to change): ")
            try:
                await iam.call("EnableMFADevice", UserName=user["UserName"], SerialNumber=serial,
                               AuthenticationCode1=code1, AuthenticationCode2=code2)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await iam.call("DeleteVirtualMFADevice", SerialNumber=serial)
                raise
        return serial

    serial = run(body, what="mfa enroll")
    print(f"MFA device enabled. Add this line to [profile {args.profile}] (and to the role profiles that use it):")
    print(f"mfa_serial = {serial}")
    sys.stdout.flush()
    return 0

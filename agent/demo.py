"""The demo account of ``rolecall up``, created over the IAM API and kept in a 0600 file.

On the first run of ``rolecall up`` the embedded backend has only its bootstrap
administrator. ``seed_demo`` signs in as that administrator and creates, through
the IAM Query API on the backend's real endpoint (the agent never imports the
backend; they meet over HTTP as any client would):

- user ``rolecall-agent`` with an access key: the embedded agent's own identity;
- role ``rolecall-demo`` (read-only IAM), trusting ``rolecall-agent`` and
  ``demo``, no MFA: what the embedded agent serves;
- user ``demo`` with an access key and an enabled virtual MFA device;
- role ``rolecall-demo-admin`` (administrator), assumable by ``demo`` only
  with MFA (``aws:MultiFactorAuthPresent``): for trying ``rolecall mfa login``.

``DemoAccount.save`` writes everything, keys and the MFA seed included, to one
JSON file of mode 0600 in the data directory; later runs ``load`` it. The
device is enabled with the codes of the two previous 30-second steps, so the
current code works at once for a first ``mfa login``.

Seeding is idempotent, so a run interrupted before the file was written (Ctrl-C,
a crash, a failed call) is finished by the next one: users and roles that exist
are reused (the roles' trust and permissions written again), and what only the
lost file knew is made anew — each user's access keys (every old key is deleted
first: its secret is gone, and IAM allows two keys per user) and the MFA device
(deactivated and deleted, then created and enabled again with a new seed).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyotp

from agent.errors import IamError
from agent.iam_client import IamClient, members
from wire.clock import WallClock
from wire.private_files import write_private
from wire.sigv4 import Credentials

__all__ = ["DEMO_ADMIN_ROLE", "DEMO_ROLE", "DemoAccount", "DemoError", "Keys", "seed_demo"]

DEMO_ROLE = "rolecall-demo"
DEMO_ADMIN_ROLE = "rolecall-demo-admin"
DEMO_USER = "demo"
AGENT_USER = "rolecall-agent"
_READ_ONLY = {"Effect": "Allow", "Action": ["iam:Get*", "iam:List*", "sts:GetCallerIdentity"], "Resource": "*"}
_EVERYTHING = {"Effect": "Allow", "Action": "*", "Resource": "*"}


class DemoError(Exception):
    """The demo account could not be created or read (one line, no secret).

    Attributes:
        code: AWS's error code when IAM refused a call (``EntityAlreadyExists``...), else None.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Keys:
    """An IAM user's access key; the secret stays out of ``repr``."""

    access_key_id: str
    secret_access_key: str = field(repr=False)

    def credentials(self) -> Credentials:
        return Credentials(self.access_key_id, self.secret_access_key)


@dataclass(frozen=True)
class DemoAccount:
    """Everything ``rolecall up`` needs to run and to show a user."""

    account_id: str
    admin: Keys
    agent: Keys
    demo: Keys
    role_arn: str
    admin_role_arn: str
    mfa_serial: str
    mfa_seed: str = field(repr=False)

    def save(self, path: str | os.PathLike) -> None:
        """Write the account to ``path`` as JSON, mode 0600, atomically (``wire.private_files``)."""
        write_private(path, json.dumps(asdict(self), indent=2).encode("utf-8"), durable=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DemoAccount:
        """Read an account ``save`` wrote.

        Raises:
            DemoError: missing, unreadable or not what ``save`` writes.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            keys = {name: Keys(**data.pop(name)) for name in ("admin", "agent", "demo")}
            return cls(**data, **keys)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DemoError(f"{path}: not a readable demo account ({type(exc).__name__})") from None


def _policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _trust(principals: list[str], *, mfa: bool = False) -> str:
    statement = {"Effect": "Allow", "Principal": {"AWS": principals}, "Action": "sts:AssumeRole"}
    if mfa:
        statement["Condition"] = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    return _policy(statement)


def _exists(exc: IamError) -> bool:
    return exc.code == "EntityAlreadyExists"


async def _user_with_key(iam: IamClient, name: str) -> tuple[str, Keys]:
    """The user (created, or reused from an interrupted run) and a new access key of theirs."""
    try:
        arn = (await iam.call("CreateUser", UserName=name))["User"]["Arn"]
    except IamError as exc:
        if not _exists(exc):
            raise
        arn = (await iam.call("GetUser", UserName=name))["User"]["Arn"]
        for old in members(await iam.call("ListAccessKeys", UserName=name), "AccessKeyMetadata"):
            await iam.call("DeleteAccessKey", UserName=name, AccessKeyId=old["AccessKeyId"])
    key = (await iam.call("CreateAccessKey", UserName=name))["AccessKey"]
    return arn, Keys(key["AccessKeyId"], key["SecretAccessKey"])


async def _role(iam: IamClient, name: str, trust: str, policy: str) -> str:
    try:
        arn = (await iam.call("CreateRole", RoleName=name, AssumeRolePolicyDocument=trust,
                              MaxSessionDuration="43200"))["Role"]["Arn"]
    except IamError as exc:
        if not _exists(exc):
            raise
        arn = (await iam.call("GetRole", RoleName=name))["Role"]["Arn"]
        await iam.call("UpdateAssumeRolePolicy", RoleName=name, PolicyDocument=trust)
    await iam.call("PutRolePolicy", RoleName=name, PolicyName="demo", PolicyDocument=policy)
    return arn


async def _remove_mfa_device(iam: IamClient, name: str) -> None:
    """Deactivate and delete the virtual device ``name`` (its seed was lost with an interrupted run)."""
    for device in members(await iam.call("ListVirtualMFADevices"), "VirtualMFADevices"):
        serial = device.get("SerialNumber", "")
        if not serial.endswith(f":mfa/{name}"):
            continue
        if isinstance(device.get("User"), dict):
            await iam.call("DeactivateMFADevice", UserName=device["User"]["UserName"], SerialNumber=serial)
        await iam.call("DeleteVirtualMFADevice", SerialNumber=serial)


async def _mfa_device(iam: IamClient, clock: WallClock) -> tuple[str, str]:
    try:
        device = (await iam.call("CreateVirtualMFADevice", VirtualMFADeviceName=DEMO_USER))["VirtualMFADevice"]
    except IamError as exc:
        if not _exists(exc):
            raise
        await _remove_mfa_device(iam, DEMO_USER)
        device = (await iam.call("CreateVirtualMFADevice", VirtualMFADeviceName=DEMO_USER))["VirtualMFADevice"]
    serial, seed = device["SerialNumber"], base64.b64decode(device["Base32StringSeed"]).decode("ascii")
    totp, now = pyotp.TOTP(seed), clock.now()
    code1, code2 = (totp.at(now - dt.timedelta(seconds=totp.interval * back)) for back in (2, 1))
    await iam.call("EnableMFADevice", UserName=DEMO_USER, SerialNumber=serial,
                   AuthenticationCode1=code1, AuthenticationCode2=code2)
    return serial, seed


async def seed_demo(endpoint: str, admin: Keys, clock: WallClock, *, transport=None) -> DemoAccount:
    """Create the demo users and roles (or finish an interrupted seeding); return what was made.

    Safe to run again on a backend where a previous run stopped part-way: see the
    module's description. Every access key and the MFA seed returned are new.

    Args:
        endpoint: the backend's IAM endpoint (``http://127.0.0.1:8900``).
        admin: the bootstrap administrator's key.
        clock: the wall clock that dates signatures and TOTP codes.
        transport: an httpx transport (tests); real HTTP by default.

    Raises:
        DemoError: any IAM call failed.
    """
    try:
        async with IamClient(endpoint, admin.credentials(), clock, transport=transport) as iam:
            agent_arn, agent = await _user_with_key(iam, AGENT_USER)
            demo_arn, demo = await _user_with_key(iam, DEMO_USER)
            role_arn = await _role(iam, DEMO_ROLE, _trust([agent_arn, demo_arn]), _policy(_READ_ONLY))
            admin_role_arn = await _role(iam, DEMO_ADMIN_ROLE, _trust([demo_arn], mfa=True), _policy(_EVERYTHING))
            serial, seed = await _mfa_device(iam, clock)
    except IamError as exc:
        raise DemoError(f"IAM {exc}", exc.code) from None
    return DemoAccount(account_id=role_arn.split(":")[4], admin=admin, agent=agent, demo=demo,
                       role_arn=role_arn, admin_role_arn=admin_role_arn, mfa_serial=serial, mfa_seed=seed)

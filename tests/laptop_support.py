"""Laptop test fixtures: an IAM user with keys and an MFA device on the included backend, and its profiles.

``make_user`` signs in as the backend's administrator and creates, over the
IAM Query API (as any client would), a user with an access key, an enabled
virtual MFA device and two roles it may assume: ``NAME-mfa`` only with MFA
(``aws:MultiFactorAuthPresent``), ``NAME-open`` without. Each test makes its
own user, so MFA codes (single use per device and step) never collide between
tests. ``write_profiles`` writes the usual laptop ``~/.aws/config``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyotp

from agent.demo import Keys
from agent.iam_client import IamClient

__all__ = ["LaptopUser", "MemoryKeyring", "code_at", "make_user", "start_laptop", "write_profiles"]

_SELF_SERVICE = {"Effect": "Allow", "Resource": "*",
                 "Action": ["iam:GetUser", "iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys",
                            "iam:CreateVirtualMFADevice", "iam:EnableMFADevice", "iam:DeleteVirtualMFADevice",
                            "sts:GetCallerIdentity"]}
_READ = {"Effect": "Allow", "Action": ["sts:GetCallerIdentity", "iam:Get*", "iam:List*"], "Resource": "*"}


@dataclass(frozen=True)
class LaptopUser:
    """What ``make_user`` created."""

    name: str
    keys: Keys
    arn: str
    mfa_serial: str
    seed: str = field(repr=False)
    mfa_role: str
    open_role: str

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]


def code_at(seed: str, when: dt.datetime) -> str:
    """The TOTP code of ``seed`` at ``when``."""
    return pyotp.TOTP(seed).at(when)


def _policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


async def make_user(endpoint: str, admin: Keys, clock, name: str, *, transport=None) -> LaptopUser:
    """A user with keys, an enabled MFA device and two roles (see the module)."""
    async with IamClient(endpoint, admin.credentials(), clock, transport=transport) as iam:
        arn = (await iam.call("CreateUser", UserName=name))["User"]["Arn"]
        key = (await iam.call("CreateAccessKey", UserName=name))["AccessKey"]
        await iam.call("PutUserPolicy", UserName=name, PolicyName="self", PolicyDocument=_policy(_SELF_SERVICE))
        device = (await iam.call("CreateVirtualMFADevice", VirtualMFADeviceName=name))["VirtualMFADevice"]
        serial, seed = device["SerialNumber"], base64.b64decode(device["Base32StringSeed"]).decode("ascii")
        now = clock.now()
        await iam.call("EnableMFADevice", UserName=name, SerialNumber=serial,
                       AuthenticationCode1=code_at(seed, now - dt.timedelta(seconds=60)),
                       AuthenticationCode2=code_at(seed, now - dt.timedelta(seconds=30)))
        roles = {}
        for suffix, mfa in (("mfa", True), ("open", False)):
            statement = {"Effect": "Allow", "Principal": {"AWS": arn}, "Action": "sts:AssumeRole"}
            if mfa:
                statement["Condition"] = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
            role = await iam.call("CreateRole", RoleName=f"{name}-{suffix}", AssumeRolePolicyDocument=_policy(statement),
                                  MaxSessionDuration="43200")
            await iam.call("PutRolePolicy", RoleName=f"{name}-{suffix}", PolicyName="read", PolicyDocument=_policy(_READ))
            roles[suffix] = role["Role"]["Arn"]
    return LaptopUser(name, Keys(key["AccessKeyId"], key["SecretAccessKey"]), arn, serial, seed, roles["mfa"],
                      roles["open"])


def write_profiles(home: Path, user: LaptopUser, *, mfa_process: str | None = None, extra: str = "",
                   role_extra: str = "") -> Path:
    """``~/.aws/config``: ``base`` (the user's keys live in the keyring), ``dev-role`` (the MFA role from
    ``base`` with ``mfa_serial``), ``dev`` (``credential_process`` of ``dev-role``), ``open-role``."""
    path = home / ".aws" / "config"
    path.parent.mkdir(parents=True, exist_ok=True)
    process = f"mfa_process = {mfa_process}\n" if mfa_process else ""
    path.write_text(
        f"[profile base]\nregion = us-east-1\n\n"
        f"[profile dev-role]\nrole_arn = {user.mfa_role}\nsource_profile = base\nmfa_serial = {user.mfa_serial}\n"
        f"role_session_name = laptop\n{process}{role_extra}\n"
        f"[profile dev]\nregion = us-east-1\ncredential_process = rolecall credential-process --profile dev-role\n\n"
        f"[profile open-role]\nrole_arn = {user.open_role}\nsource_profile = base\n\n{extra}")
    return path


class MemoryKeyring:
    """A ``keyring`` backend in a dict, for in-process tests of the key store's callers."""

    priority = 1

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}
        self.reads = 0  # how often a secret was read: each would be an unlock prompt on some keyrings

    def get_password(self, service: str, username: str) -> str | None:
        self.reads += 1
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError("not found")


async def start_laptop(nursery, directory: Path, clock, name: str):
    """The included backend on loopback (counting calls), a user ``name`` on it, and a key store
    (in memory) holding the user's keys under ``base``: ``(backend, user, keystore)``."""
    from agent.keystore import KeyStore
    from tests.test_daemon import StsBackend

    backend = StsBackend(directory / "backend", clock)
    await backend.start(nursery)
    user = await make_user(backend.url, backend.admin, clock, name)
    keystore = KeyStore(MemoryKeyring(), clock=clock)
    await keystore.put("base", user.keys.access_key_id, user.keys.secret_access_key)
    backend.calls.clear()
    return backend, user, keystore

"""rolecall as a botocore credential provider, at the front of a session's chain.

    import botocore.session, boto3
    from sdk_shim.botocore import install

    session = botocore.session.get_session()
    install(session, profile="dev")            # before the session's first credentials
    s3 = boto3.Session(botocore_session=session).client("s3")

``install`` puts a ``RolecallProvider`` before botocore's ``env`` provider. Its
``load()`` returns ``RefreshableCredentials`` whose refresh asks rolecall again,
so a long-running process never holds expired credentials:

- ``profile`` given: the warm path of ``rolecall credential-process``
  (``sdk_shim.credential_process``: the session cache, or the user's agent when
  it serves the profile's role), in-process, with no subprocess; on a miss,
  ``rolecall credential-process --profile NAME`` runs as a subprocess (it may
  prompt for MFA on the terminal) and its JSON is read;
- no profile: the user's running agent over its control socket.

A failure raises botocore's ``CredentialRetrievalError`` with rolecall's one
line, so the advisory window keeps the old credentials and the mandatory window
reports why (reference/sdk-clients.md §5). Importing this module imports
botocore, which the caller has anyway; nothing of rolecall's agent, no trio,
no httpx.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from botocore.credentials import CredentialProvider, RefreshableCredentials
from botocore.exceptions import CredentialRetrievalError

from sdk_shim.credential_process import agent_credentials, warm_credentials
from wire.aws_config import ProfileError

__all__ = ["METHOD", "RolecallProvider", "install"]

METHOD = "custom-rolecall"
PROCESS_TIMEOUT = 600  # seconds: the subprocess may wait for a person to type an MFA code


def _command() -> list[str]:
    """``rolecall`` beside this interpreter (a venv), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "rolecall")
    if os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("rolecall")
    return [found] if found else []


class RolecallProvider(CredentialProvider):
    """Credentials from rolecall (see the module).

    Args:
        profile: a profile of ``~/.aws/config``, or None for the user's agent.
        command: how to run rolecall (default: ``rolecall`` beside this Python, else on PATH).
    """

    METHOD = METHOD
    CANONICAL_NAME = METHOD

    def __init__(self, profile: str | None = None, command: Sequence[str] | None = None) -> None:
        super().__init__()
        self.profile = profile
        self.command = list(command) if command is not None else None

    def _error(self, reason: str) -> CredentialRetrievalError:
        return CredentialRetrievalError(provider=METHOD, error_msg=reason)

    def _from_process(self) -> dict:
        command = self.command if self.command is not None else _command()
        if not command:
            raise self._error("rolecall is not on PATH (pass command= to install())")
        try:
            done = subprocess.run([*command, "credential-process", "--profile", self.profile], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=PROCESS_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise self._error(f"cannot run rolecall: {exc}") from None
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise self._error(lines[-1] if lines else f"rolecall exited with status {done.returncode}")
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise self._error("rolecall printed something that is not JSON") from None

    def fetch(self) -> dict:
        """botocore's credential metadata, from rolecall; raises ``CredentialRetrievalError`` on failure."""
        if self.profile is None:
            doc = agent_credentials()
            if doc is None:
                raise self._error("no rolecall agent of this user answers with credentials "
                                  "($ROLECALL_AGENT_SOCKET, $XDG_RUNTIME_DIR/rolecall/agent.sock)")
        else:
            try:
                doc = warm_credentials(self.profile)
            except ProfileError as exc:
                raise self._error(str(exc)) from None
            except OSError:
                doc = None
            if doc is None:
                doc = self._from_process()
        metadata = {"access_key": doc["AccessKeyId"], "secret_key": doc["SecretAccessKey"],
                    "token": doc["SessionToken"], "expiry_time": doc["Expiration"]}
        if doc.get("AccountId"):
            metadata["account_id"] = doc["AccountId"]
        return metadata

    def load(self) -> RefreshableCredentials:
        return RefreshableCredentials.create_from_metadata(self.fetch(), refresh_using=self.fetch, method=METHOD)


def install(session, profile: str | None = None, *, command: Sequence[str] | None = None) -> RolecallProvider:
    """Put a ``RolecallProvider`` at the front of ``session``'s credential chain.

    Args:
        session: a ``botocore.session.Session`` whose credentials were not asked for yet.
        profile: a profile of ``~/.aws/config``, or None for the user's running agent.
        command: how to run rolecall when the warm path cannot answer.

    Returns:
        The provider.
    """
    provider = RolecallProvider(profile, command)
    session.get_component("credential_provider").insert_before("env", provider)
    return provider

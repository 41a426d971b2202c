"""`rolecall keys add|list|remove|rotate --profile NAME`: long-term keys in the OS keyring.

``add`` takes ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` when both are
set, else asks on the terminal (the secret without echo). ``list`` reads
rolecall's index (no keyring call, so no unlock prompt). ``add``, ``remove``
and ``rotate`` clear the cached sessions made from the profile's keys.
"""

from __future__ import annotations

import argparse
import json
import os

from cli.errors import CliError
from cli.runtime import run

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``keys`` command and its sub-commands to the root parser."""
    parser = commands.add_parser("keys", help="long-term keys of profiles, in the OS keyring")
    sub = parser.add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    for name, helptext, handler in (
            ("add", "store a profile's access key (from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else asked)", _add),
            ("remove", "delete a profile's keys from the keyring", _remove),
            ("rotate", "create a new access key, store it, delete the old one", _rotate)):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("--profile", required=True, metavar="NAME", help="the profile")
        command.set_defaults(run=handler)
    listing = sub.add_parser("list", help="profiles with keys in the keyring (no secrets)")
    listing.add_argument("--profile", metavar="NAME", help="only this profile")
    listing.add_argument("--json", action="store_true", help="one JSON object")
    listing.set_defaults(run=_list)


def _ask_keys() -> tuple[str, str]:
    from agent.tty import NoTerminal, ask

    try:
        key_id = ask("Access key ID: ")
        secret = ask("Secret access key: ", echo=False)
    except (NoTerminal, EOFError):
        raise CliError("keys add: no terminal to ask on: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
    return key_id, secret


def _add(args: argparse.Namespace) -> int:
    from agent.keystore import KeyStore, check_keys
    from agent.errors import KeyStoreError
    from wire.session_cache import SessionCache

    key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID", "").strip(), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not (key_id and secret.strip()):
        key_id, secret = _ask_keys()
    try:
        check_keys(key_id, secret.strip())
    except KeyStoreError as exc:
        raise CliError(f"keys add: {exc}") from None

    async def body():
        await KeyStore().put(args.profile, key_id, secret.strip())

    run(body, what="keys add")
    cleared = SessionCache().clear(args.profile)
    print(f"stored access key {key_id} for profile {args.profile} in the keyring"
          + (f"; cleared {cleared} cached session(s)" if cleared else ""))
    return 0


def _list(args: argparse.Namespace) -> int:
    from wire.key_index import read_index

    index = read_index()
    if args.profile is not None:
        index = {name: entry for name, entry in index.items() if name == args.profile}
    if args.json:
        print(json.dumps(index))
        return 0
    if not index:
        print("no keys stored: rolecall keys add --profile NAME")
    for name, entry in sorted(index.items()):
        print(f"{name:24} {entry.get('AccessKeyId', '?'):24} added {entry.get('Added', '?')}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from agent.keystore import KeyStore
    from wire.session_cache import SessionCache

    async def body() -> bool:
        return await KeyStore().delete(args.profile)

    existed = run(body, what="keys remove")
    SessionCache().clear(args.profile)
    if not existed:
        raise CliError(f"keys remove: the keyring holds no keys for profile {args.profile}")
    print(f"removed the keys of profile {args.profile} from the keyring")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from agent.key_rotation import rotate_keys
    from agent.keystore import KeyStore
    from wire.aws_config import AwsConfig
    from wire.clock import SystemClock
    from wire.session_cache import SessionCache

    async def body():
        config = AwsConfig.load()
        bundle = os.environ.get("AWS_CA_BUNDLE") or config.get(args.profile, "ca_bundle")
        return await rotate_keys(args.profile, KeyStore(), SessionCache(), SystemClock(),
                                 iam_endpoint=config.endpoint(args.profile, "iam"), verify=bundle or True)

    done = run(body, what="keys rotate")
    cleared = f"; {done.sessions_cleared} cached session(s) made with it cleared" if done.sessions_cleared else ""
    print(f"rotated profile {args.profile}: {done.old_access_key_id} -> {done.new_access_key_id} "
          f"(the old key is deleted{cleared})")
    return 0

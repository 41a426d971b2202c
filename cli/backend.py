"""`rolecall backend init|serve|rotate-token-key`: the included STS+IAM backend.

    rolecall backend init --data-dir D [--account-id N]
    rolecall backend serve --data-dir D [--listen H:P] [--tls-cert F --tls-key F] [--insecure-http]
    rolecall backend rotate-token-key --data-dir D

``init`` prints the bootstrap administrator's keys once, as one JSON object.
``serve`` logs ``listening on http://H:P`` once bound and exits 0 on SIGTERM/SIGINT.
``rotate-token-key`` adds a new session-token key; tokens sealed under older keys
keep verifying until they expire (a running server picks the key up on its own).
"""

from __future__ import annotations

import argparse
import json
import ssl
from pathlib import Path

from cli.main import CliError

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``backend`` command and its sub-commands to the root parser."""
    parser = commands.add_parser("backend", help="the included STS + IAM backend")
    sub = parser.add_subparsers(dest="backend_command", required=True, metavar="SUBCOMMAND")

    init = sub.add_parser("init", help="create the backend's state and a bootstrap administrator")
    init.add_argument("--data-dir", required=True, help="directory for the database and audit log")
    init.add_argument("--account-id", help="12-digit account id (random when omitted)")
    init.set_defaults(run=_init)

    serve = sub.add_parser("serve", help="serve the STS and IAM Query APIs on one port")
    serve.add_argument("--data-dir", required=True)
    serve.add_argument("--listen", default="127.0.0.1:8900", metavar="H:P",
                       help="address to listen on (default 127.0.0.1:8900; port 0 picks one)")
    serve.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate chain")
    serve.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    serve.add_argument("--insecure-http", action="store_true",
                       help="allow plain HTTP on a non-loopback address")
    serve.set_defaults(run=_serve)

    rotate = sub.add_parser("rotate-token-key", help="add a new session-token sealing key")
    rotate.add_argument("--data-dir", required=True)
    rotate.set_defaults(run=_rotate)


def _init(args: argparse.Namespace) -> int:
    from sts_backend.iam import bootstrap_admin
    from sts_backend.store import Store, StoreError

    if args.account_id is not None and not (len(args.account_id) == 12 and args.account_id.isdigit()):
        raise CliError(f"backend init: --account-id must be 12 digits, not {args.account_id!r}")
    try:
        store = Store.create(args.data_dir, args.account_id)
    except StoreError as exc:
        raise CliError(f"backend init: {exc}") from None
    with store:
        user, key = bootstrap_admin(store)
        print(json.dumps({"AccountId": store.account_id(), "UserName": user.user_name, "Arn": user.arn,
                          "AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key}))
    return 0


def _open_store(data_dir: str):
    from sts_backend.store import Store, StoreError

    try:
        return Store.open(data_dir)
    except StoreError as exc:
        raise CliError(f"backend: {exc}") from None


def _serve(args: argparse.Namespace) -> int:
    from sts_backend import server
    from sts_backend.app import Backend
    from sts_backend.audit import AuditLog
    from wire.clock import SystemClock

    if bool(args.tls_cert) != bool(args.tls_key):
        raise CliError("backend serve: --tls-cert and --tls-key go together")
    try:
        server.check_listen([args.listen], tls=bool(args.tls_cert), insecure_http=args.insecure_http)
    except ValueError as exc:
        raise CliError(f"backend serve: {exc}") from None
    context = None
    if args.tls_cert:
        try:
            context = server.tls_context(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"backend serve: cannot load the TLS certificate or key: {exc}") from None
    store = _open_store(args.data_dir)
    audit = AuditLog(Path(args.data_dir) / "audit.log")
    try:
        server.run(Backend(store, SystemClock(), audit), [args.listen], ssl_context=context)
    except OSError as exc:
        raise CliError(f"backend serve: cannot listen on {args.listen}: {exc.strerror or exc}") from None
    finally:
        audit.close()
        store.close()
    return 0


def _rotate(args: argparse.Namespace) -> int:
    with _open_store(args.data_dir) as store:
        key_id = store.add_token_key()
    print(json.dumps({"TokenKeyId": key_id}))
    return 0

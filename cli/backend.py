"""`rolecall backend ...`: the included STS+IAM backend.

    rolecall backend init (--data-dir D | --database URL) [--account-id N]
    rolecall backend serve (--data-dir D | --database URL --audit-log F) [--listen H:P]
                           [--tls-cert F --tls-key F] [--insecure-http]
                           [--metrics-listen H:P [--metrics-allow-remote]]
    rolecall backend rotate-token-key (--data-dir D | --database URL)
    rolecall backend retire-token-key (--data-dir D | --database URL) [--key-id N]
    rolecall backend revoke-sessions (--data-dir D | --database URL) (--role NAME | --user NAME)
    rolecall backend quotas (--data-dir D | --database URL)
    rolecall backend set-quota (--data-dir D | --database URL) NAME VALUE
    rolecall backend backup --data-dir D --to FILE [--force]
    rolecall backend restore --from FILE --data-dir D [--force]

``--data-dir D`` keeps the state in SQLite (``D/rolecall.db``, the embedded default);
``--database postgresql://USER@HOST[:PORT]/DB`` keeps it in PostgreSQL, shared by any
number of ``serve`` replicas. The URL never carries the password: libpq reads it from
``PGPASSFILE`` or ``~/.pgpass``, or ``--database-password-file F`` names a file whose
first line it is. ``init --database`` creates or migrates the schema; every other
command refuses a schema version it does not know. A replica's audit log is local to
it: ``--audit-log F`` (with ``--data-dir``, ``D/audit.log`` by default).

``init`` prints the bootstrap administrator's keys once, as one JSON object.
``serve`` logs ``listening on http://H:P`` once bound and exits 0 on SIGTERM/SIGINT;
with ``--metrics-listen`` it serves Prometheus metrics there (``metrics on http://H:P/metrics``).
``rotate-token-key`` adds a new session-token key; tokens sealed under older keys
keep verifying until they expire (a running server picks the key up on its own).
``retire-token-key`` deletes the oldest key (or ``--key-id N``), never the current
one: every running server on the data dir refuses the tokens it sealed within a
second. Rotating, then retiring the old key once its tokens may be refused (36 h,
the longest session, for no disruption) is the rotation procedure.
``revoke-sessions`` denies every call but GetCallerIdentity to the sessions of a role
(or of a user's GetSessionToken/AssumeRole chains) issued before now; later sessions
are unaffected, as with IAM's "Revoke active sessions".
``quotas`` prints every quota in force (stored override or default) as one JSON
object; ``set-quota`` overrides one of them (e.g. ``RolesPerAccount 500``), which a
running server applies from its next call.
``backup`` copies the database online (a backend may be serving it) to FILE, 0600,
and prints ``{"Backup": FILE, "Bytes": N}``; ``restore`` puts a backup in place in
a data dir that no process has open (``sts_backend.backup``) and prints
``{"Restored": DB, "Bytes": N}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.errors import CliError

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``backend`` command and its sub-commands to the root parser."""
    parser = commands.add_parser("backend", help="the included STS + IAM backend")
    sub = parser.add_subparsers(dest="backend_command", required=True, metavar="SUBCOMMAND")

    init = sub.add_parser("init", help="create the backend's state and a bootstrap administrator")
    add_store_options(init, data_dir_help="directory for the database and audit log")
    init.add_argument("--account-id", help="12-digit account id (random when omitted)")
    init.set_defaults(run=_init)

    serve = sub.add_parser("serve", help="serve the STS and IAM Query APIs on one port")
    add_store_options(serve)
    serve.add_argument("--audit-log", metavar="FILE",
                       help="where audit lines go, in a directory this user owns and others cannot write "
                            "(default DATA_DIR/audit.log; required with --database)")
    serve.add_argument("--listen", default="127.0.0.1:8900", metavar="H:P",
                       help="address to listen on (default 127.0.0.1:8900; port 0 picks one)")
    serve.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate chain")
    serve.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    serve.add_argument("--metrics-listen", metavar="H:P",
                       help="serve Prometheus metrics at http://H:P/metrics (off by default; loopback only "
                            "unless --metrics-allow-remote)")
    serve.add_argument("--metrics-allow-remote", action="store_true",
                       help="allow a --metrics-listen address that is not loopback")
    serve.add_argument("--insecure-http", action="store_true",
                       help="allow plain HTTP on a non-loopback address")
    add_audit_options(serve)
    serve.set_defaults(run=_serve)

    rotate = sub.add_parser("rotate-token-key", help="add a new session-token sealing key")
    add_store_options(rotate)
    rotate.set_defaults(run=_rotate)

    retire = sub.add_parser("retire-token-key",
                            help="delete the oldest session-token key (never the current one)")
    add_store_options(retire)
    retire.add_argument("--key-id", type=_positive, metavar="N", help="retire key N instead of the oldest")
    retire.set_defaults(run=_retire)

    revoke = sub.add_parser("revoke-sessions", help="deny the live sessions of a role or user issued before now")
    add_store_options(revoke)
    who = revoke.add_mutually_exclusive_group(required=True)
    who.add_argument("--role", metavar="NAME", help="the role whose sessions are revoked")
    who.add_argument("--user", metavar="NAME", help="the IAM user whose temporary credentials are revoked")
    revoke.set_defaults(run=_revoke)

    quotas = sub.add_parser("quotas", help="print the account's quotas as JSON")
    add_store_options(quotas)
    quotas.set_defaults(run=_quotas)

    set_quota = sub.add_parser("set-quota", help="override one quota (e.g. RolesPerAccount 500)")
    add_store_options(set_quota)
    set_quota.add_argument("name", metavar="NAME", help="a quota name, as `rolecall backend quotas` lists them")
    set_quota.add_argument("value", metavar="VALUE",
                           help="an integer, at least 1 (StsRequestsPerSecondPerKey: 0 turns throttling off)")
    set_quota.set_defaults(run=_set_quota)

    backup = sub.add_parser("backup", help="copy the database, online, to a file (0600)")
    backup.add_argument("--data-dir", required=True)
    backup.add_argument("--database", metavar="URL", help=argparse.SUPPRESS)   # refused: see _backup
    backup.add_argument("--to", required=True, metavar="FILE", help="the backup file to create")
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    backup.set_defaults(run=_backup)

    restore = sub.add_parser("restore", help="put a backup in place as a stopped data dir's database")
    restore.add_argument("--from", required=True, dest="source", metavar="FILE", help="a `backend backup` file")
    restore.add_argument("--data-dir", required=True, help="created 0700 if missing; no backend may be serving it")
    restore.add_argument("--force", action="store_true", help="replace the data dir's existing database")
    restore.set_defaults(run=_restore)


def add_store_options(parser: argparse.ArgumentParser, data_dir_help: str | None = None) -> None:
    """``--data-dir D`` (SQLite) or ``--database URL`` (PostgreSQL), one of them required."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", metavar="D", help=data_dir_help or "the backend's data directory (SQLite)")
    where.add_argument("--database", metavar="URL",
                       help="a postgresql://USER@HOST[:PORT]/DB URL (no password in it: PGPASSFILE, ~/.pgpass "
                            "or --database-password-file)")
    parser.add_argument("--database-password-file", metavar="FILE",
                        help="with --database: a file whose first line is the database password")


def _where(args: argparse.Namespace) -> str:
    return args.data_dir if args.data_dir is not None else args.database


def _init(args: argparse.Namespace) -> int:
    from sts_backend.iam import bootstrap_admin
    from sts_backend.store import Store, StoreError

    if args.account_id is not None and not (len(args.account_id) == 12 and args.account_id.isdigit()):
        raise CliError(f"backend init: --account-id must be 12 digits, not {args.account_id!r}")
    _check_password_file(args)
    try:
        if args.database is not None:
            store = Store.create_database(args.database, args.account_id, password_file=args.database_password_file)
        else:
            store = Store.create(args.data_dir, args.account_id)
    except StoreError as exc:
        raise CliError(f"backend init: {exc}") from None
    with store:
        user, key = bootstrap_admin(store)
        print(json.dumps({"AccountId": store.account_id(), "UserName": user.user_name, "Arn": user.arn,
                          "AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key}))
    return 0


def _check_password_file(args: argparse.Namespace) -> None:
    if args.database_password_file is not None and args.database is None:
        raise CliError("backend: --database-password-file goes with --database")


def _open_store(args: argparse.Namespace, **kwargs):
    """The store that ``--data-dir`` or ``--database`` names; one line when it cannot be opened."""
    from sts_backend.store import Store, StoreError

    _check_password_file(args)
    try:
        if args.database is not None:
            return Store.open_database(args.database, password_file=args.database_password_file, **kwargs)
        return Store.open(args.data_dir, **kwargs)
    except StoreError as exc:
        raise CliError(f"backend: {exc}") from None


def _serve(args: argparse.Namespace) -> int:
    from sts_backend import server
    from sts_backend.app import Backend
    from sts_backend.audit import AuditLog
    from sts_backend.metrics import BackendMetrics
    from wire.clock import SystemClock
    from wire.metrics_endpoint import check_metrics_listen

    if bool(args.tls_cert) != bool(args.tls_key):
        raise CliError("backend serve: --tls-cert and --tls-key go together")
    try:
        server.check_listen([args.listen], tls=bool(args.tls_cert), insecure_http=args.insecure_http)
        if args.metrics_listen:
            check_metrics_listen(args.metrics_listen, allow_remote=args.metrics_allow_remote,
                                 opt_in="--metrics-allow-remote")
    except ValueError as exc:
        raise CliError(f"backend serve: {exc}") from None
    context = None
    if args.tls_cert:
        import ssl

        try:
            context = server.tls_context(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"backend serve: cannot load the TLS certificate or key: {exc}") from None
    if args.database is not None and args.audit_log is None:
        raise CliError("backend serve: --database needs --audit-log FILE (each replica keeps its own audit log)")
    audit_path = Path(args.audit_log) if args.audit_log else Path(args.data_dir) / "audit.log"
    if args.audit_log:   # (the data dir's own is checked with the store) rotated by rename: ours alone
        from wire.private_files import UnsafeDirectory, private_dir

        try:
            private_dir(audit_path.absolute().parent, create=False)
        except (UnsafeDirectory, OSError) as exc:
            raise CliError(f"backend serve: --audit-log {audit_path}: {getattr(exc, 'strerror', None) or exc}") \
                from None
    store = _open_store(args)
    try:
        audit = AuditLog(audit_path, max_bytes=args.audit_max_bytes, keep=args.audit_keep)
    except OSError as exc:
        store.close()
        raise CliError(f"backend serve: cannot open the audit log {audit_path}: {exc.strerror or exc}") from None
    try:
        metrics = BackendMetrics() if args.metrics_listen else None
        server.run(Backend(store, SystemClock(), audit, secure_transport=context is not None, metrics=metrics),
                   [args.listen], ssl_context=context, metrics_listen=args.metrics_listen)
    except OSError as exc:
        where = f"{args.listen} or {args.metrics_listen}" if args.metrics_listen else args.listen
        raise CliError(f"backend serve: cannot listen on {where}: {exc.strerror or exc}") from None
    finally:
        audit.close()
        store.close()
    return 0


def add_audit_options(parser: argparse.ArgumentParser) -> None:
    """``--audit-max-bytes`` and ``--audit-keep`` (``backend serve`` and ``up``)."""
    parser.add_argument("--audit-max-bytes", type=_positive, metavar="N",
                        help="rotate audit.log before it passes N bytes (default: never; SIGHUP reopens it for "
                             "logrotate either way)")
    parser.add_argument("--audit-keep", type=_positive, default=5, metavar="K",
                        help="rotated audit logs kept, audit.log.1 ... .K (default 5)")


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def _rotate(args: argparse.Namespace) -> int:
    with _open_store(args, need_token_key=False) as store:
        key_id = store.add_token_key()
        count = len(store.token_keys()[1])
    print(json.dumps({"TokenKeyId": key_id}))
    print(f"backend rotate-token-key: key {key_id} now seals new session tokens; a running backend uses it from its "
          f"next token, no restart needed. The {count - 1} older key(s) stay, so tokens they sealed keep working "
          "until they expire (36 h at most); keep the data dir's backups as secret as the keys in it.",
          file=sys.stderr)
    return 0


def _retire(args: argparse.Namespace) -> int:
    from sts_backend.store import StoreError

    with _open_store(args) as store:
        try:
            key_id = store.retire_token_key(args.key_id)
        except StoreError as exc:
            raise CliError(f"backend retire-token-key: {exc}") from None
        left = sorted(store.token_keys()[1])
    print(json.dumps({"RetiredTokenKeyId": key_id, "TokenKeyIds": left}))
    print(f"backend retire-token-key: key {key_id} is gone; tokens it sealed are refused (InvalidClientTokenId) by "
          "every backend on this store within a second.", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    kind, name = ("role", args.role) if args.role is not None else ("user", args.user)
    with _open_store(args) as store:
        if (store.role(name) if kind == "role" else store.user(name)) is None:
            raise CliError(f"backend revoke-sessions: there is no {kind} named {name!r} in {_where(args)}")
        store.revoke_sessions(kind, name)
    print(json.dumps({"Revoked": kind, "Name": name}))
    print(f"backend revoke-sessions: sessions of {kind} {name} issued before now are denied every call but "
          "GetCallerIdentity; new sessions are unaffected.", file=sys.stderr)
    return 0


MAX_QUOTA = 2**31 - 1


def _quotas(args: argparse.Namespace) -> int:
    from sts_backend.store_core import DEFAULT_QUOTAS

    with _open_store(args) as store:
        print(json.dumps({name: store.quota(name) for name in DEFAULT_QUOTAS}))
    return 0


def _set_quota(args: argparse.Namespace) -> int:
    from sts_backend.store_core import DEFAULT_QUOTAS, QUOTA_MINIMUM

    if args.name not in DEFAULT_QUOTAS:
        raise CliError(f"backend set-quota: unknown quota {args.name!r} (one of: {', '.join(DEFAULT_QUOTAS)})")
    text, low = args.value.strip(), QUOTA_MINIMUM.get(args.name, 1)
    if not (text.isascii() and text.isdigit() and low <= int(text) <= MAX_QUOTA):
        raise CliError(f"backend set-quota: {args.name} must be an integer from {low} to {MAX_QUOTA}, "
                       f"not {args.value!r}")
    import sqlite3

    from sts_backend.store import StoreUnavailable

    with _open_store(args) as store:
        try:
            store.set_quota(args.name, int(text))
        except (sqlite3.OperationalError, StoreUnavailable) as exc:   # the write lock stayed busy past the timeout
            raise CliError(f"backend set-quota: the database is busy, try again ({exc})") from None
        print(json.dumps({args.name: store.quota(args.name)}))
    return 0


def _backup(args: argparse.Namespace) -> int:
    from sts_backend.backup import backup
    from sts_backend.store import StoreError

    if args.database is not None:
        raise CliError("backend backup: --database: back a PostgreSQL store up with pg_dump (see docs/backend.md)")
    try:
        result = backup(args.data_dir, args.to, force=args.force)
    except StoreError as exc:
        raise CliError(f"backend backup: {exc}") from None
    print(json.dumps({"Backup": result.path, "Bytes": result.size}))
    return 0


def _restore(args: argparse.Namespace) -> int:
    from sts_backend.backup import restore
    from sts_backend.store import StoreError

    try:
        result = restore(args.source, args.data_dir, force=args.force)
    except StoreError as exc:
        raise CliError(f"backend restore: {exc}") from None
    print(json.dumps({"Restored": result.path, "Bytes": result.size}))
    return 0

"""Command line for operators: `python -m core.cli <command>` (see README, "Other commands")."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from core import demo, heartbeat, users
from core.documents import intake, lifecycle
from core.platform import crypto, files
from core.platform.config import PROJECT_ROOT, ConfigurationError, Settings, get_settings
from core.platform.crypto import KeyConfigurationError
from core.platform.db import get_engine
from core.platform.errors import UserFacingError
from core.platform.migrate import upgrade_to_head
from core.platform.models import Role
from core.platform.secret_store import (
    keyring_from_settings,
    primary_record,
    record_primary,
    reencrypt_all,
    verify_keyring,
)
from core.users import process

CLI_ACTOR = "cli"
SECRETS_TOML = PROJECT_ROOT / ".streamlit" / "secrets.toml"


def write_local_auth_secrets(settings: Settings, path: Path = SECRETS_TOML) -> bool:
    """Write the `[auth]` block for the emulator's identity provider if no secrets file exists."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    body = (
        "# Written by `make run` for the embedded default: sign-in at the local emulator.\n"
        "# Production: point [auth] at your company's identity provider (see README).\n"
        "[auth]\n"
        f'redirect_uri = "{settings.public_url.rstrip("/")}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        'client_id = "token-desk-dashboard"\n'
        'client_secret = "demo-dashboard-secret"\n'
        f'server_metadata_url = "{settings.emulator_url.rstrip("/")}/idp/.well-known/openid-configuration"\n'
    )
    fd_path = path.with_suffix(".tmp")
    fd_path.write_text(body)
    fd_path.chmod(0o600)
    fd_path.replace(path)
    return True


def cmd_bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    """Everything `make run` needs before the processes start."""
    files.secure_data_dir(create=settings.app_env != "production")  # data/ 0700, its files 0600 (fixed if wider)
    if settings.app_env != "production" and not settings.encryption_keys:
        if crypto.ensure_local_key_file(settings.encryption_key_file):
            print(
                "\n" + "!" * 78 + f"\n  Generated a LOCAL encryption key: {settings.encryption_key_file}\n"
                "  It is for this machine only. Production MUST supply its own key\n"
                "  (ENCRYPTION_KEYS or ENCRYPTION_KEY_FILE). Losing it loses every stored token.\n"
                + "!" * 78 + "\n"
            )
        if write_local_auth_secrets(settings):
            print(f"Wrote {SECRETS_TOML.relative_to(PROJECT_ROOT)} for sign-in at the local emulator.")
    cmd_migrate(settings, args)
    cmd_check_keys(settings, args)
    if settings.app_env != "production" and demo.seed_demo(get_engine(settings.database_url), with_documents=True):
        print("Seeded demo data (users for each role, four companies, three sample documents).")
    return 0


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    database = files.sqlite_path(settings.database_url)
    if database is not None and not database.parent.is_dir():
        files.private_dir(database.parent)  # created owner-only (0700)
    upgrade_to_head(get_engine(settings.database_url))
    print("Database schema is up to date.")
    return 0


def cmd_check_keys(settings: Settings, _args: argparse.Namespace) -> int:
    engine = get_engine(settings.database_url)
    keyring = keyring_from_settings(settings)
    report = verify_keyring(engine, keyring)
    print(f"Keys OK: loaded {', '.join(report.checked_keys)}; {report.secrets} stored secret(s) "
          f"use {', '.join(report.key_ids_in_use) or 'no key yet'}.")
    record = primary_record(engine)
    if record is not None:
        print(f"Primary key recorded in the database: '{record[0]}' (since {record[1]:%Y-%m-%d %H:%M:%S} UTC).")
    processes = heartbeat.live_processes(engine)
    for row in processes:
        keys = heartbeat.held_key_ids(row)
        print(f"Live {row.kind} {row.instance_id} (host {row.host}, pid {row.pid}, last beat "
              f"{row.last_tick_at:%H:%M:%S} UTC): {'primary ' + keys[0] if keys else 'key set not reported'}"
              f"{' (outdated: restart it)' if keys and keys[0] != keyring.primary_id else ''}.")
    primaries = {keys[0] for row in processes if (keys := heartbeat.held_key_ids(row))}
    removable = [kid for kid in keyring.key_ids[1:] if kid not in report.key_ids_in_use and kid not in primaries]
    if removable:
        print(f"Not used by any secret or live process: {', '.join(removable)} (remove-key when no process "
              "started before the rotation is left).")
    return 0


def cmd_set_role(settings: Settings, args: argparse.Namespace) -> int:
    role = None if args.role == "none" else Role(args.role)
    users.set_role(get_engine(settings.database_url), actor=process("cli"), email=args.email, role=role)
    print(f"{args.email}: role {args.role}.")
    return 0


def cmd_generate_key(_settings: Settings, _args: argparse.Namespace) -> int:
    print(crypto.new_key_entry())
    return 0


def cmd_rotate_keys(settings: Settings, args: argparse.Namespace) -> int:
    """Add a new primary key and re-encrypt every stored secret with it."""
    engine = get_engine(settings.database_url)
    if not args.reencrypt_only:
        if settings.encryption_keys:
            print("ENCRYPTION_KEYS is set in the environment, which this command cannot edit.\n"
                  "Put this new entry FIRST in ENCRYPTION_KEYS, keep the old ones, restart every dashboard and\n"
                  f"scheduler, then run `python -m core.cli rotate-keys --reencrypt-only`:\n  {crypto.new_key_entry()}")
            return 0
        old = keyring_from_settings(settings)
        verify_keyring(engine, old)
        entry = crypto.new_key_entry()
        current = old.entries()
        header = crypto.key_file_header(settings.encryption_key_file)
        crypto.write_key_file(settings.encryption_key_file, [entry, *current], header)
        print(f"Added new primary key '{entry.split(':', 1)[0]}' to {settings.encryption_key_file}.")
    keyring = keyring_from_settings(settings)
    verify_keyring(engine, keyring)  # writes the new key's canary
    # From here on every process seals with the new key: a key-file process reloads it, one with an
    # outdated ENCRYPTION_KEYS refuses to seal (core.platform.secret_store). Recorded before re-encrypting,
    # so nothing sealed afterwards is left behind with the old key.
    if record_primary(engine, keyring):
        print(f"Recorded '{keyring.primary_id}' as the primary key in the database.")
    count = reencrypt_all(engine, keyring)
    report = verify_keyring(engine, keyring)
    old_ids = [kid for kid in keyring.key_ids if kid != keyring.primary_id]
    print(f"Re-encrypted {count} secret(s) with '{keyring.primary_id}'. Keys still in use: "
          f"{', '.join(report.key_ids_in_use) or 'none'}.")
    if old_ids:
        print(f"Next: wait until every dashboard and scheduler holds '{keyring.primary_id}' (check-keys lists them;\n"
              "key-file processes reload within seconds, others need a restart), back up the key file, then\n"
              f"remove the old key(s) {', '.join(old_ids)} with `python -m core.cli remove-key <id>`"
              " (or from ENCRYPTION_KEYS).")
    return 0


def cmd_remove_key(settings: Settings, args: argparse.Namespace) -> int:
    if settings.encryption_keys:
        print("ENCRYPTION_KEYS is set in the environment: remove the entry there.")
        return 1
    engine = get_engine(settings.database_url)
    keyring = keyring_from_settings(settings)
    report = verify_keyring(engine, keyring)
    if args.key_id not in keyring.key_ids:
        print(f"Key '{args.key_id}' is not in {settings.encryption_key_file}.")
        return 1
    if args.key_id == keyring.primary_id:
        print(f"Key '{args.key_id}' is the primary key; run rotate-keys first.")
        return 1
    if args.key_id in report.key_ids_in_use:  # never with --force: those secrets would be lost
        print(f"Key '{args.key_id}' is still used by stored secrets; run "
              "`python -m core.cli rotate-keys --reencrypt-only` first.")
        return 1
    record = primary_record(engine)
    holding = heartbeat.processes_holding(engine, args.key_id, primary_since=record[1] if record else None)
    if holding and not args.force:
        print(f"Key '{args.key_id}' may still be used for sealing by {len(holding)} live process(es):")
        for row in holding:
            keys = heartbeat.held_key_ids(row)
            why = f"its primary key is '{keys[0]}'" if keys else "it started before the rotation"
            print(f"  {row.kind} {row.instance_id} (host {row.host}, pid {row.pid}, last beat "
                  f"{row.last_tick_at:%Y-%m-%d %H:%M:%S} UTC): {why}")
        print("Restart them (a key-file process reloads the keys at its next beat), wait for their next beat,\n"
              "and try again; `--force` removes the key anyway.")
        return 1
    kept = [e for e in keyring.entries() if not e.startswith(args.key_id + ":")]
    header = crypto.key_file_header(settings.encryption_key_file)
    crypto.write_key_file(settings.encryption_key_file, kept, header)
    print(f"Removed key '{args.key_id}'" + (f" although {len(holding)} live process(es) may still use it (--force)."
                                            if holding else "."))
    return 0


def cmd_seed_demo(settings: Settings, _args: argparse.Namespace) -> int:
    seeded = demo.seed_demo(get_engine(settings.database_url))
    print("Seeded demo data." if seeded else "Database is not empty: nothing seeded.")
    return 0


def cmd_import_documents(settings: Settings, args: argparse.Namespace) -> int:
    """Import files as documents of a company (status "neu", or "freigegeben" with --approve)."""
    engine = get_engine(settings.database_url)
    files: list[tuple[str, bytes]] = []
    missing: list[tuple[str, str]] = []
    for name in args.files:
        path = Path(name)
        try:
            files.append((path.name, path.read_bytes()))
        except OSError as exc:
            missing.append((name, f"Datei nicht lesbar ({exc.strerror or exc})."))
    report = intake.intake(engine, company_id=args.company_id, files=files, actor=process(CLI_ACTOR),
                              document_type=args.type or "", note=args.note or "", source="cli") \
        if files else intake.IntakeReport([], [])
    approved = 0
    if args.approve and report.accepted:
        approved = lifecycle.approve(engine, document_ids=[d.id for d in report.accepted if d.id is not None], actor=process(CLI_ACTOR))
    status = "freigegeben" if args.approve else "neu"
    for document in report.accepted:
        print(f"OK         {document.original_name}: Beleg #{document.id} ({status})")
    for name, message in [*missing, *((r.name, r.message) for r in report.rejected)]:
        print(f"ABGELEHNT  {name}: {message}")
    rejected = len(missing) + len(report.rejected)
    print(f"{len(report.accepted)} übernommen ({approved} freigegeben), {rejected} abgelehnt.")
    return 1 if rejected else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.cli", description="Token Desk administration")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("bootstrap", help="local key, [auth] secrets, migrate, check keys, demo data (make run)")
    sub.add_parser("migrate", help="upgrade the database schema to the newest version")
    sub.add_parser("check-keys", help="verify the encryption keys against the database")
    p = sub.add_parser("create-admin", help="give an e-mail address the admin role")
    p.add_argument("email")
    p.set_defaults(role="admin")
    p = sub.add_parser("set-role", help="set a user's role (viewer, operator, admin, none)")
    p.add_argument("email")
    p.add_argument("role", choices=[*(r.value for r in Role), "none"])
    sub.add_parser("generate-key", help="print a new 'keyid:base64key' entry")
    p = sub.add_parser("rotate-keys", help="add a new primary key and re-encrypt all secrets")
    p.add_argument("--reencrypt-only", action="store_true", help="keys already changed: only re-encrypt")
    p = sub.add_parser("remove-key", help="remove an unused old key from the key file")
    p.add_argument("key_id")
    p.add_argument("--force", action="store_true",
                   help="remove it even if a live dashboard or scheduler may still hold it as primary")
    sub.add_parser("seed-demo", help="seed demo data into an empty database")
    p = sub.add_parser("import-documents", help="import files as documents (Belege) of a company")
    p.add_argument("company_id", type=int, metavar="COMPANY_ID")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--type", help="document type (Belegtyp); default: the company's default")
    p.add_argument("--note", help="note (Notiz) stored with every imported document")
    p.add_argument("--approve", action="store_true", help="approve the imported documents at once")
    return parser


COMMANDS = {
    "bootstrap": cmd_bootstrap, "migrate": cmd_migrate, "check-keys": cmd_check_keys,
    "create-admin": cmd_set_role, "set-role": cmd_set_role, "generate-key": cmd_generate_key,
    "rotate-keys": cmd_rotate_keys, "remove-key": cmd_remove_key, "seed-demo": cmd_seed_demo,
    "import-documents": cmd_import_documents,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](get_settings(), args)
    except (ConfigurationError, KeyConfigurationError, UserFacingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``montage db upgrade|downgrade|current|check``: Alembic migrations of the jobs database."""

from __future__ import annotations

import argparse
from pathlib import Path

from montage.errors import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="database URL (default: settings db.url / MONTAGE_DB__URL)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = sub.add_parser("upgrade", help="upgrade to a revision (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="downgrade to a revision (default: -1, one step back)")
    down.add_argument("revision", nargs="?", default="-1")
    sub.add_parser("current", help="print the database's revision and the newest one")
    check = sub.add_parser(
        "check", help="upgrade/downgrade round trip on scratch databases; prints JSON, exit 0 when all pass"
    )
    check.add_argument("--backend", action="append", choices=["sqlite", "postgresql"], default=None,
                       help="scratch database to use (repeatable; default: both)")  # fmt: skip
    check.add_argument("--out", type=Path, default=None, help="also write the JSON record to this file")


def database_url(explicit: str | None) -> str:
    """``explicit``, else the configured ``db.url``."""
    if explicit:
        from montage.settings import check_database_url

        check_database_url(explicit, "--url")
        return explicit
    from montage.settings import load_settings

    return load_settings().settings.db.url.get_secret_value()


def run(args: argparse.Namespace) -> int:
    from montage.db import migrate
    from montage.db.errors import translate_db_errors

    if args.action == "check":
        import json

        from montage.db.roundtrip import check_backend

        records = [check_backend(b) for b in args.backend or ["sqlite", "postgresql"]]
        text = json.dumps({"backends": records}, indent=2, sort_keys=True) + "\n"
        if args.out is not None:
            from montage.core.files import atomic_write_text

            atomic_write_text(args.out, text)
        print(text, end="")
        return ExitCode.OK if all(r["ok"] for r in records) else ExitCode.FAIL
    url = database_url(args.url)
    with translate_db_errors("montage db"):
        if args.action == "upgrade":
            migrate.upgrade(url, args.revision)
            print(f"database at {migrate.current(url) or 'base'}")
        elif args.action == "downgrade":
            migrate.downgrade(url, args.revision)
            print(f"database at {migrate.current(url) or 'base'}")
        else:
            cur = migrate.current(url)
            head = migrate.head_revision()
            print(f"current: {cur or 'base (not migrated)'}")
            print(f"head:    {head}")
            return ExitCode.OK if cur == head else ExitCode.FAIL
    return ExitCode.OK

"""``montage db upgrade|downgrade|current``: Alembic migrations of the jobs database."""

from __future__ import annotations

import argparse

from montage.errors import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="database URL (default: settings db.url / MONTAGE_DB__URL)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = sub.add_parser("upgrade", help="upgrade to a revision (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="downgrade to a revision (default: -1, one step back)")
    down.add_argument("revision", nargs="?", default="-1")
    sub.add_parser("current", help="print the database's revision and the newest one")


def database_url(explicit: str | None) -> str:
    """``explicit``, else the configured ``db.url``."""
    if explicit:
        return explicit
    from montage.settings import load_settings

    return load_settings().settings.db.url.get_secret_value()


def run(args: argparse.Namespace) -> int:
    from montage.db import migrate
    from montage.db.errors import translate_db_errors

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

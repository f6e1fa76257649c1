"""``montage admin create-key|revoke-key|list-keys``: API keys for /v1/admin (and public, if required)."""

from __future__ import annotations

import argparse
import json

from montage.errors import ExitCode, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="database URL (default: settings db.url / MONTAGE_DB__URL)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create-key", help="create an API key and print it (once: only its hash is stored)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--json", action="store_true", help="print {id, name, key} as JSON")
    revoke = sub.add_parser("revoke-key", help="revoke an API key by id")
    revoke.add_argument("key_id")
    sub.add_parser("list-keys", help="list key ids, names and whether they are revoked (never the keys)")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from montage.commands.db import database_url
    from montage.db import keys
    from montage.db.database import Database, make_engine
    from montage.db.errors import translate_db_errors

    url = database_url(args.url)

    async def go() -> int:
        db = Database(make_engine(url))
        try:
            async with db.begin() as session:
                if args.action == "create-key":
                    if not args.name.strip() or len(args.name) > 128:
                        raise UsageError(f"--name {args.name!r} must be 1 to 128 characters.")
                    row, plain = await keys.create_key(session, args.name)
                    if args.json:
                        print(json.dumps({"id": row.id, "name": row.name, "key": plain}))
                    else:
                        print(plain)
                        print(f"(key id {row.id}; shown once, only its hash is stored)")
                elif args.action == "revoke-key":
                    if await keys.revoke_key(session, args.key_id) is None:
                        raise UsageError(f"no API key with id {args.key_id!r}; `montage admin list-keys` lists them.")
                    print(f"revoked {args.key_id}")
                else:
                    for row in await keys.list_keys(session):
                        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
                        print(f"{row.id}  {row.name}  created {row.created_at:%Y-%m-%d %H:%M}  {state}")
        finally:
            await db.dispose()
        return ExitCode.OK

    with translate_db_errors("montage admin"):
        return asyncio.run(go())

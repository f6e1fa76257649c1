"""``montage flags list|get|set``: the app's flags.

``set`` writes the flags file and, when the database is reachable, its ``flags`` table (the store the
service reads per request; see montage/db/flagstore.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from montage.errors import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", type=Path, default=None, help="flags file (default: settings ops.flags_file)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="print every flag as JSON")
    get = sub.add_parser("get", help="print one flag's value as JSON")
    get.add_argument("name")
    set_ = sub.add_parser("set", help="set a flag (value parsed as JSON scalar, else a string)")
    set_.add_argument("name")
    set_.add_argument("value")


def _path(args: argparse.Namespace) -> Path:
    if args.file is not None:
        return Path(args.file)
    import os

    from montage.settings import OpsSettings

    return Path(os.environ.get("MONTAGE_OPS__FLAGS_FILE", str(OpsSettings().flags_file)))


def run(args: argparse.Namespace) -> int:
    from montage.flags import parse_flag_value, read_flags, write_flag

    path = _path(args)
    if args.action == "list":
        print(json.dumps(read_flags(path), indent=2, sort_keys=True))
    elif args.action == "get":
        flags = read_flags(path)
        if args.name not in flags:
            print(f"montage flags: {args.name} is not set in {path}", file=sys.stderr)
            return ExitCode.FAIL
        print(json.dumps(flags[args.name]))
    else:
        value = parse_flag_value(args.value)
        write_flag(path, args.name, value)
        print(f"{args.name}={args.value} written to {path}")
        if args.file is None:  # the app's own flags file: keep the database's flags table in step
            from montage.db.flagstore import mirror_to_database
            from montage.settings import load_settings

            print(mirror_to_database(load_settings().settings, args.name, value))
    return ExitCode.OK

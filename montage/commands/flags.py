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
    set_ = sub.add_parser("set", help="set a known flag (true/false, 1/0, yes/no, on/off)")
    set_.add_argument("name")
    set_.add_argument("value")


def _path(args: argparse.Namespace) -> Path:
    from montage.core.flags import flags_path

    return flags_path(args.file)


def run(args: argparse.Namespace) -> int:
    from montage.core import flags as core_flags

    path = _path(args)
    if args.action == "list":
        print(json.dumps(core_flags.read_flags(path), indent=2, sort_keys=True))
    elif args.action == "get":
        flags = core_flags.read_flags(path)
        if args.name not in flags:
            print(f"montage flags: {args.name} is not set in {path}", file=sys.stderr)
            return ExitCode.FAIL
        print(json.dumps(flags[args.name]))
    else:
        value = core_flags.parse_value(args.value)
        stored = core_flags.validate(args.name, value)  # unknown name or bad value: exit 2, nothing written
        if args.file is not None:  # an explicit file only (no database)
            core_flags.write_flag(path, args.name, stored)
            print(f"{args.name}={json.dumps(stored)} written to {path}")
            return ExitCode.OK
        from montage.db.flagstore import set_flag_from_cli
        from montage.settings import load_settings

        note = set_flag_from_cli(load_settings().settings, path, args.name, stored)
        print(f"{args.name}={json.dumps(stored)} written to {path}")
        print(note)
    return ExitCode.OK

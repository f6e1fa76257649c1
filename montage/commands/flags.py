"""``montage flags list|get|set``: the flags file the app reads at start-up."""

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
        write_flag(path, args.name, parse_flag_value(args.value))
        print(f"{args.name}={args.value} written to {path}")
    return ExitCode.OK

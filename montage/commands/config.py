"""``montage config show [--json]``: the effective configuration, secrets masked, with origins."""

from __future__ import annotations

import argparse
import json

from montage.errors import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print the effective configuration")
    show.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from montage.settings import load_settings, masked_view

    loaded = load_settings()
    rows = masked_view(loaded)
    if args.json:
        print(
            json.dumps(
                {
                    "source": loaded.source,
                    "settings": {name: {"value": value, "origin": origin} for name, value, origin in rows},
                },
                indent=2,
            )
        )
        return ExitCode.OK
    print(loaded.log_line)
    width = max(len(name) for name, _, _ in rows)
    for name, value, origin in rows:
        print(f"{name:<{width}}  {value:<40}  ({origin})")
    return ExitCode.OK

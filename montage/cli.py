"""The ``montage`` console script.

Start-up is kept light on purpose: this module imports only the standard library and
``montage.errors``.  A sub-command's module is imported only when that sub-command runs, and
heavy libraries (FastAPI, SQLAlchemy, the media stack, rich) are imported inside the functions that
need them.  ``tests/test_cli.py`` checks what ``montage --help`` imports.

Each sub-command module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from montage.errors import ExitCode, run_reporting

# name -> (module, one-line help).  Keep alphabetical within a group.
COMMANDS: dict[str, tuple[str, str]] = {
    "admin": ("montage.commands.admin", "create, revoke and list API keys of the service"),
    "config": ("montage.commands.config", "show the effective configuration and where each value came from"),
    "db": ("montage.commands.db", "migrate the jobs database (upgrade, downgrade, current)"),
    "flags": ("montage.commands.flags", "read or set the app's flags (USE_SETTINGS_V2, ...)"),
    "probe": ("montage.commands.probe", "show what Montage sees in a media file"),
    "run": ("montage.commands.run", "make a highlight montage from long footage"),
    "serve": ("montage.commands.serve", "serve the HTTP API with embedded job workers"),
    "worker": ("montage.commands.worker", "run a job worker against the configured database"),
}

PROG = "montage"


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [--debug] COMMAND [ARGS...]",
        description="Montage turns long footage into short highlight montages.",
        epilog=f"commands:\n{lines}\n\nRun '{PROG} COMMAND --help' for a command's options.\n"
        "Exit codes: 0 success, 1 fail, 2 usage, 3 inconclusive, 4 partial, 5 tampered, "
        "6 refused, 7 tool missing, 8 media error, 130 interrupted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("command", nargs="?", metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    return parser


def build_command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The parser of one sub-command and its module (imported here, not before)."""
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"{PROG} {name}", description=help_)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    module.add_arguments(parser)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    # The first non-option word is the command; everything after it belongs to the command.
    command_index = next((i for i, a in enumerate(args_list) if not a.startswith("-")), None)

    def dispatch() -> int:
        if command_index is None or args_list[command_index] not in COMMANDS:
            top = _top_parser()
            ns = top.parse_args(args_list)
            if ns.version:
                from montage import __version__

                print(f"{PROG} {__version__}")
                return ExitCode.OK
            if ns.command is None:
                top.print_help()
                return ExitCode.USAGE
            top.error(f"unknown command {ns.command!r}; expected one of: {', '.join(COMMANDS)}")
        assert command_index is not None
        name = args_list[command_index]
        rest = args_list[:command_index] + args_list[command_index + 1 :]
        parser, module = build_command_parser(name)
        ns = parser.parse_args(rest)
        return int(module.run(ns))  # type: ignore[attr-defined]

    try:
        return run_reporting(PROG, dispatch, debug=debug)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else ExitCode.USAGE


def console_main() -> None:
    """``montage`` console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()

"""One exception hierarchy and one exit-code table shared by every Montage command.

Every user-facing command (``montage ...``, ``python -m montage.ops ...``, invoke tasks and nox
sessions) maps its outcome to exactly one of the codes below.  The table is documented in the
README; keep the two in sync (``tests/test_errors.py`` checks it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class ExitCode(enum.IntEnum):
    """Process exit codes used by every Montage command."""

    OK = 0  # PASS / success
    FAIL = 1  # a check or gate failed
    USAGE = 2  # usage error or invalid input (bad flag, bad file, bad config value)
    INCONCLUSIVE = 3  # not enough data to decide
    PARTIAL = 4  # gate neither passed nor failed (e.g. artifacts missing, non-critical failure)
    TAMPERED = 5  # a proof bundle no longer matches its manifest
    REFUSED = 6  # a dependency is not satisfied (e.g. previous phase has no PASS bundle)
    TOOL_MISSING = 7  # a required external tool (ffmpeg, PostgreSQL, ...) is missing
    MEDIA = 8  # the media could not be read, decoded or rendered
    INTERRUPTED = 130  # Ctrl-C / SIGINT / SIGTERM


EXIT_CODE_DESCRIPTIONS: dict[ExitCode, str] = {
    ExitCode.OK: "PASS / success",
    ExitCode.FAIL: "FAIL (a check or gate failed)",
    ExitCode.USAGE: "usage error or invalid input",
    ExitCode.INCONCLUSIVE: "INCONCLUSIVE (could not measure enough to decide)",
    ExitCode.PARTIAL: "PARTIAL (gate neither passed nor failed)",
    ExitCode.TAMPERED: "TAMPERED (a proof bundle was modified)",
    ExitCode.REFUSED: "refused (a dependency is not satisfied)",
    ExitCode.TOOL_MISSING: "a required tool is missing",
    ExitCode.MEDIA: "media error (unreadable, undecodable or unrenderable input)",
    ExitCode.INTERRUPTED: "interrupted",
}


class MontageError(Exception):
    """Base class of every error Montage reports to a user.

    ``str(error)`` is a one-paragraph message meant for people; ``exit_code`` is what the
    command exits with.  Subclasses only pick a different exit code.
    """

    exit_code: ExitCode = ExitCode.FAIL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} {self.hint}"
        return self.message


class UsageError(MontageError):
    """Bad command-line usage or invalid input (a file, a field or a value)."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """An invalid configuration value; the message names the variable."""


class ValidationFailure(UsageError):
    """A document (phase file, plan, transcript) failed validation.

    Carries the location so messages can say ``file:line:column``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        location = format_location(path, line, column)
        super().__init__(f"{location}: {message}" if location else message, hint=hint)


class CheckFailed(MontageError):
    """A check or gate was judged FAIL."""

    exit_code = ExitCode.FAIL


class Inconclusive(MontageError):
    """A measurement could not decide (too few samples, nothing measured)."""

    exit_code = ExitCode.INCONCLUSIVE


class PartialResult(MontageError):
    """A gate that neither passed nor failed."""

    exit_code = ExitCode.PARTIAL


class Tampered(MontageError):
    """A proof bundle's files do not match its manifest."""

    exit_code = ExitCode.TAMPERED


class Refused(MontageError):
    """An operation refused because a dependency is not satisfied."""

    exit_code = ExitCode.REFUSED


class ToolMissing(MontageError):
    """A required external tool is not installed or not runnable."""

    exit_code = ExitCode.TOOL_MISSING


class MediaError(MontageError):
    """Media that cannot be probed, decoded or rendered.

    ``stderr_tail`` keeps the last lines ffmpeg printed, for the message and for logs.
    """

    exit_code = ExitCode.MEDIA

    def __init__(self, message: str, *, stderr_tail: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.stderr_tail = stderr_tail


class Interrupted(MontageError):
    """The user interrupted the command."""

    exit_code = ExitCode.INTERRUPTED


def format_location(path: str | None, line: int | None = None, column: int | None = None) -> str:
    """Render ``path:line:column`` leaving out the parts that are unknown."""
    if not path:
        return ""
    out = path
    if line is not None:
        out += f":{line}"
        if column is not None:
            out += f":{column}"
    return out


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code a command should use for ``exc``."""
    if isinstance(exc, MontageError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.FAIL


def run_reporting(
    prog: str,
    call: Callable[[], int],
    *,
    debug: bool = False,
    interrupted: str = "interrupted",
) -> int:
    """Run a command body and turn its outcome into an exit code, the way every entry point does.

    A :class:`MontageError` prints one paragraph (``PROG: error: ...``) and exits with its code; an
    unexpected exception prints one paragraph too (a traceback only with ``debug``); Ctrl-C exits
    130; a closed pipe (``... | head``) is not an error.
    """
    import sys
    import traceback

    try:
        return int(call())
    except BrokenPipeError:  # the reader left; not an error of ours
        sys.stderr.close()
        return ExitCode.OK
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except MontageError as exc:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a bug: still one paragraph, the traceback only with --debug
        if debug:
            traceback.print_exc()
        print(
            f"{prog}: internal error: {type(exc).__name__}: {exc}. Re-run with --debug for the traceback "
            "and report it.",
            file=sys.stderr,
        )
        return exit_code_for(exc)

"""Where ``montage run -o OUT`` may write: refuse anything that would destroy data or cannot be written.

Every file a run writes (the montage, the plan sidecar, the EDL and the OTIO timeline) is checked
before any work starts, so a refusal leaves the inputs and the named path exactly as they were:

- never the same file as an input (``os.stat`` identity, so ``./in.mp4``, an absolute spelling,
  a hard link or a symlink to an input are all caught);
- never an existing path that is not a regular file (a FIFO, a device, a directory, a socket):
  the atomic write would replace it with a regular file;
- never a place that cannot be written (a parent that is a file, a name longer than the
  file system allows, a directory that refuses new files such as ``/proc`` or ``/sys``).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from montage.errors import UsageError

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFSOCK: "a socket",
}


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _nearest_existing(path: Path) -> Path:
    """The closest ancestor of ``path`` that exists (render creates the missing ones)."""
    parent = path.absolute().parent
    while True:
        try:
            os.lstat(parent)
            return parent
        except FileNotFoundError:
            parent = parent.parent
        except NotADirectoryError:  # a component on the way up is a file
            parent = parent.parent


def _refuse(flag: str, output: Path, target: Path, problem: str, expected: str) -> UsageError:
    what = f"{flag} {str(output)!r}" if target == output else f"{flag} {str(output)!r} (its sidecar {str(target)!r})"
    return UsageError(f"{what} {problem}; {expected} Nothing was written.")


def _check_one(flag: str, output: Path, target: Path, inputs: dict[tuple[int, int], Path]) -> None:
    expected = "expected a new or regular file name such as montage.mp4 in a writable directory."
    try:
        st = os.stat(target)  # follows a symlink: what a write would reach
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise _refuse(flag, output, target, "has a parent that is a file, not a directory", expected) from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise _refuse(flag, output, target, "is a name too long for the file system", expected) from None
        if exc.errno == errno.ELOOP:
            raise _refuse(flag, output, target, "is a symlink loop", expected) from None
        raise _refuse(flag, output, target, f"cannot be inspected ({exc.strerror})", expected) from None
    if st is not None:
        same = inputs.get((st.st_dev, st.st_ino))
        if same is not None:
            raise _refuse(
                flag, output, target, f"is the same file as the input {str(same)!r}", "expected a different file name."
            )
        kind = _KINDS.get(stat.S_IFMT(st.st_mode))
        if kind is not None:
            raise _refuse(flag, output, target, f"is {kind}", expected)
    where = _nearest_existing(target)
    if not where.is_dir():
        raise _refuse(flag, output, target, f"has a parent {str(where)!r} that is a file, not a directory", expected)
    name_max = os.pathconf(where, "PC_NAME_MAX")
    for part in target.absolute().relative_to(where).parts:
        if len(os.fsencode(part)) > name_max:
            raise _refuse(
                flag,
                output,
                target,
                f"has a name too long for the file system (over {name_max} bytes)",
                "expected a shorter name.",
            )
    _probe_writable(flag, output, target, where, expected)


def _probe_writable(flag: str, output: Path, target: Path, where: Path, expected: str) -> None:
    """Create and remove a temporary file where the run will write: permissions alone lie for root."""
    try:
        fd, name = tempfile.mkstemp(prefix=".montage-probe-", dir=where)
    except OSError as exc:
        raise _refuse(
            flag, output, target, f"is in {str(where)!r}, where no file can be created ({exc.strerror})", expected
        ) from None
    os.close(fd)
    os.unlink(name)


def check_outputs(flag: str, output: Path, targets: Iterable[Path], inputs: Iterable[Path]) -> None:
    """Raise :class:`UsageError` (exit 2) naming ``flag`` unless every target is safe to write.

    ``output`` is the path the user named; ``targets`` are every file the run will write (it
    included); ``inputs`` are every file the run reads.
    """
    known: dict[tuple[int, int], Path] = {}
    for path in inputs:
        ident = _identity(path)
        if ident is not None:
            known.setdefault(ident, path)
    seen: dict[Path, Path] = {}
    for target in targets:
        key = Path(os.path.abspath(target))
        if key in seen:
            raise UsageError(
                f"{flag} {str(output)!r}: two of the files this run writes would be {str(target)!r}; "
                "expected an output name whose sidecars differ from it (e.g. montage.mp4). Nothing was written."
            )
        seen[key] = target
        _check_one(flag, output, target, known)

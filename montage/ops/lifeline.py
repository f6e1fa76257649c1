"""The ops runner's tie to whoever launched it: die with the parent, never publish for a dead one.

``invoke phase.run N`` and ``nox -s phase-N`` start ``python -m montage.ops`` as a child. If that
parent is killed (even by SIGKILL), the child gets SIGTERM from the kernel (PR_SET_PDEATHSIG), which
the ops CLI turns into an interrupt: steps stop, the half-built bundle is removed. As a second line,
the child learns its launcher's pid (``MONTAGE_OPS_PARENT_PID``) and refuses to publish a bundle once
its parent is no longer that process. A run started by hand (no variable) is never refused, so
``nohup python -m montage.ops run 0 &`` still publishes after the terminal closes.

(The prctl call is montage.core.proc's.)
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from montage.core.proc import die_with_parent
from montage.errors import Interrupted

PARENT_ENV = "MONTAGE_OPS_PARENT_PID"
_claimed: list[int] = []


def die_with_me(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child receives ``sig`` when this process (the caller of Popen) dies."""
    return die_with_parent(sig)


def parent_env() -> dict[str, str]:
    """Environment for an ops child: who its parent is (see :func:`check_parent`)."""
    return {PARENT_ENV: str(os.getpid())}


def claim_parent() -> None:
    """At ops CLI start: take the launcher's pid out of the environment (children must not inherit it)."""
    value = os.environ.pop(PARENT_ENV, "")
    _claimed[:] = [int(value)] if value.isdigit() else []


def check_parent(what: str) -> None:
    """Raise :class:`Interrupted` if the launcher that started this run has died."""
    if _claimed and os.getppid() != _claimed[0]:
        raise Interrupted(f"the launching process (pid {_claimed[0]}) is gone; {what} was not done.")

"""The canary's negative controls: a minimal real change to the *candidate* that must make it FAIL.

A phase may run its canary as a flag canary on the same code (``baseline_code: candidate``): both
sides serve the same tree, so editing ``montage/`` in it would change both sides and could never
make the candidate worse than the baseline.  A control therefore changes the candidate's
environment only: it writes Python files into :data:`OVERLAY` (a directory at the top of the
candidate tree, never tracked) and :func:`montage.ops.canary.collect.collect` puts that directory
first on the candidate's ``PYTHONPATH``, after every other layer of the side's environment
(``candidate_env`` included), and records it with the sha256 of every file it holds.  The baseline
never sees it: a deployed baseline is a worktree of a commit (which does not hold the untracked
directory) and a same-code baseline is given no overlay.

* ``slow``: a ``sitecustomize.py`` that holds every HTTP response :data:`SLOW_DELAY_S` plus
  :data:`SLOW_FACTOR` of the request's own handling time before sending it (a fixed delay alone is
  lost in a loaded machine's p99: +8 ms moved a 70 ms p99 by 5 % at a load of 3 on 2 CPUs);
* ``5xx``: a ``sitecustomize.py`` that answers 500 to every :data:`FAIL_EVERY`-th request
  (the harness's ``/metrics`` and ``/v1/admin/config`` reads excepted, so the import counts and the
  configuration stay measurable);
* ``broken-import``: a shadow ``av`` module (PyAV, imported lazily by the render path) whose import
  raises ImportError, which the ``montage serve`` start-up import probe counts.

The prometheus source reads a fleet's series: there is nothing here to change, so every control is
:class:`~montage.ops.checks.base.ControlNotApplicable` there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from montage.ops.checks.base import ControlNotApplicable, control_file

OVERLAY = ".montage-canary-candidate"
SLOW_DELAY_S = 0.005  # fixed extra time per request, plus
SLOW_FACTOR = 1.0  # this share of the request's own handling time (the p99 grows with the machine's load)
FAIL_EVERY = 40  # 2.5 %; the SLO is 1 % (at 2 %, 572 requests left the low end at 1.08 %)
EXEMPT_PATHS = ("/metrics", "/v1/admin/config")

_PATCH = '''"""Negative control (phase.selftest, canary {name}): loaded by the candidate only, through PYTHONPATH."""

from starlette.applications import Starlette

_original = Starlette.__call__
{state}

async def _control(self, scope, receive, send):  # type: ignore[no-untyped-def]
{body}    await _original(self, scope, receive, send)


Starlette.__call__ = _control  # type: ignore[method-assign]
'''

SLOW = _PATCH.format(
    name="slow",
    state=f"import asyncio\nimport time\n\nDELAY_S = {SLOW_DELAY_S!r}\nFACTOR = {SLOW_FACTOR!r}\n",
    body=(
        '    if scope["type"] == "http":\n'
        "        started, inner = time.perf_counter(), send\n\n"
        "        async def send(message):  # type: ignore[no-untyped-def]\n"
        '            if message["type"] == "http.response.start":\n'
        "                await asyncio.sleep(DELAY_S + FACTOR * (time.perf_counter() - started))\n"
        "            await inner(message)\n\n"
    ),
)
FIVE_XX = _PATCH.format(
    name="5xx",
    state=f"import itertools\n\nEVERY = {FAIL_EVERY}\nEXEMPT = {EXEMPT_PATHS!r}\n_count = itertools.count(1)\n",
    body=(
        '    if scope["type"] == "http" and scope["path"] not in EXEMPT and next(_count) % EVERY == 0:\n'
        '        await send({"type": "http.response.start", "status": 500,\n'
        '                    "headers": [(b"content-type", b"text/plain")]})\n'
        '        await send({"type": "http.response.body", "body": b"negative control: 500"})\n'
        "        return\n"
    ),
)
BROKEN_IMPORT = '"""Negative control (phase.selftest, canary broken-import): shadows PyAV."""\n\n' + (
    'raise ImportError("negative control: a broken PyAV build")\n'
)

FILES = {
    "slow": ("sitecustomize.py", SLOW),
    "5xx": ("sitecustomize.py", FIVE_XX),
    "broken-import": ("av.py", BROKEN_IMPORT),
}
WHAT = {
    "slow": f"the candidate holds every response {SLOW_DELAY_S * 1000:g} ms + {SLOW_FACTOR:.0%} of its handling time",
    "5xx": f"the candidate answers 500 to every {FAIL_EVERY}th request ({100 / FAIL_EVERY:g} %)",
    "broken-import": "the candidate's lazily imported PyAV (av) fails to import",
}


def overlay_dir(tree: Path) -> Path:
    return tree / OVERLAY


def apply(tree: Path, params: Any, name: str) -> str:
    """Write control ``name``'s files into ``tree``'s candidate overlay and say what changed."""
    if getattr(params, "source", "local") != "local":
        raise ControlNotApplicable(
            f"source {params.source}: the canary reads a fleet's series, and there is nothing on the fleet to "
            "change from here (deploy a degraded candidate behind candidate_selector to self-test it)"
        )
    rel, text = FILES[name]
    control_file(tree, f"{OVERLAY}/{rel}", text)
    return f"{OVERLAY}/{rel} (first on the candidate's PYTHONPATH only): {WHAT[name]}"


def control(name: str) -> Any:
    def edit(tree: Path, params: Any) -> str:
        return apply(tree, params, name)

    return edit

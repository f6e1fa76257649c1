"""Named nox sessions and invoke tasks: ``name -> list of argv``, run in order, exit code passed through.

Other areas extend these tables by ONE line each, e.g.::

    "perf": [[PY, "-m", "montage.ops.perf", "guard"]],

``{python}`` in an argv is replaced by the running interpreter.  Commands run in the repository
root, in the current environment (nox sessions use ``python=False``: fast, no network).  The
first command that exits non-zero stops the chain and its exit code becomes the session's / task's
exit code unchanged (``montage/errors.py`` defines the codes).  Extra arguments (``nox -s tests --
-k foo``) are appended to the last command.

Standard library only: ``invoke --list`` and ``nox -l`` import this module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

PY = "{python}"
DEFAULT_TIMEOUT_S = 4 * 3600.0

# nox -s NAME.  `phase-N` sessions are added from the phase files (see noxfile.py).
NOX_SESSIONS: dict[str, list[list[str]]] = {
    "coverage": [
        [
            PY,
            "-m",
            "pytest",
            "-m",
            "not slow",
            "--cov=montage",
            "--cov-report=term",
            "--cov-report=json:var/coverage.json",
        ]
    ],
    "canary": [
        [PY, "-m", "montage.ops.canary", "collect", "-o", "var/canary/canary_metrics.json"],
        [
            PY,
            "-m",
            "montage.ops.canary",
            "evaluate",
            "var/canary/canary_metrics.json",
            "-o",
            "var/canary/evaluate_canary.out",
        ],
    ],
    "perf": [[PY, "-m", "montage.ops.perf", "guard"]],  # `nox -s perf -- --update-baseline` recaptures
    "lint": [
        [PY, "-m", "ruff", "check", "."],
        [PY, "-m", "ruff", "format", "--check", "."],
        [PY, "-m", "mypy", "montage"],
    ],
    "report": [[PY, "-m", "montage.ops.report_pages"]],
    "scan": [[PY, "-m", "montage.ops", "scan"]],
    "selftest": [[PY, "-m", "montage.ops", "selftest", "all"]],  # `nox -s selftest -- --fast`: CI's cheap controls
    "tests": [[PY, "-m", "pytest"]],
    "migrations": [[PY, "-m", "montage", "db", "check", "--backend", "sqlite", "--backend", "postgresql"]],
    "stress": [[PY, "-m", "montage.runtime.stress", "--out", "var/stress"]],  # 3 x 600 MB under 2 GiB + control
}

# invoke NAME (dotted names become namespaces: "perf.guard").  The phase.* tasks are built in
# montage.ops.invoke_tasks.
INVOKE_TASKS: dict[str, list[list[str]]] = {
    "adr.check": [[PY, "-m", "montage.ops", "adr", "check"]],
    "adr.index": [[PY, "-m", "montage.ops", "adr", "index"]],
    "adr.list": [[PY, "-m", "montage.ops", "adr", "list"]],
    "coverage.plan": [[PY, "-m", "montage.ops", "coverage-plan"]],
    "lint": NOX_SESSIONS["lint"],
    "perf.baseline": [[PY, "-m", "montage.ops.perf", "baseline"]],
    "perf.guard": NOX_SESSIONS["perf"],
    "report": [[PY, "-m", "montage.ops.report_pages"]],  # var/reports/index.html + a page per phase
    "scan": NOX_SESSIONS["scan"],
    "stress": NOX_SESSIONS["stress"],
    "tests": NOX_SESSIONS["tests"],
}

# Sessions / tasks a flag can switch off (a phase's rollback, e.g. phase 7 "disable the perf CI job"
# runs `montage flags set PERF_GUARD_ENABLED false`).  Disabled: a loud message and exit 0, because
# the job was deliberately turned off, not judged.  Session or task name -> flag name.
SESSION_FLAGS: dict[str, str] = {
    "perf": "PERF_GUARD_ENABLED",
    "perf.guard": "PERF_GUARD_ENABLED",
}


def disabled_by_flag(name: str, root: Path | None = None) -> str | None:
    """Why session/task ``name`` is switched off by the flags file, or None."""
    flag = SESSION_FLAGS.get(name)
    if flag is None:
        return None
    import json

    from montage.core.flags import file_enabled, flags_path, read_flags

    path = flags_path(root=root or repo_root())
    if file_enabled(path, flag):  # a bad value is an error naming the flag, never a silent "enabled"
        return None
    value = read_flags(path).get(flag)
    return f"{name} is disabled: flag {flag}={json.dumps(value)} in {path} (re-enable: montage flags set {flag} true)"


def run_named(
    name: str, commands: Sequence[Sequence[str]], extra: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> int:
    """Run a named session/task's chain unless a flag disabled it."""
    why = disabled_by_flag(name)
    if why is not None:
        print(why, file=sys.stderr, flush=True)
        return 0
    return run_chain(commands, extra, env=env)


def resolve(argv: Sequence[str], python: str | None = None) -> list[str]:
    """Substitute ``{python}``."""
    exe = python or sys.executable
    return [exe if part == PY else part for part in argv]


def run_chain(
    commands: Sequence[Sequence[str]],
    extra: Sequence[str] = (),
    cwd: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    echo: bool = True,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run each command in turn; return the first non-zero exit code (else 0).

    Every command dies with this process (PR_SET_PDEATHSIG): killing invoke or nox never leaves
    a child running on for nobody. ``env`` is added to the inherited environment.
    """
    import signal

    from montage.core import proc as core_proc

    for i, argv in enumerate(commands):
        full = resolve(argv) + (list(extra) if i == len(commands) - 1 else [])
        if echo:
            print("$ " + " ".join(full), file=sys.stderr, flush=True)
        # Interactive: the terminal's stdin/stdout and process group (Ctrl-C reaches the child too).
        child = core_proc.spawn(full, cwd=cwd or repo_root(), env=env, stdin=None, pdeathsig=signal.SIGTERM,
                                new_session=False)  # fmt: skip
        try:
            rc = child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            print(f"timed out after {timeout_s:.0f}s: {' '.join(full)}", file=sys.stderr)
            core_proc.stop(child)
            rc = 1
        except KeyboardInterrupt:
            core_proc.stop(child, grace_s=10.0)
            rc = 130
        finally:
            core_proc.stop(child)  # always waited; kills only a child still running
        if rc != 0:
            return rc
    return 0


def repo_root() -> Path:
    """The repository root: ``MONTAGE_REPO_ROOT`` or the nearest ancestor of cwd holding ``phases/``."""
    env = os.environ.get("MONTAGE_REPO_ROOT")
    if env:
        return Path(env)
    here = Path.cwd()
    for candidate in (here, *here.parents):
        if (candidate / "phases").is_dir() or (candidate / ".git").exists():
            return candidate
    return here


def phase_ids_from_filenames(phases_dir: Path) -> list[tuple[int, str]]:
    """(id, slug) from ``NN-slug.yaml`` names: enough to list tasks without parsing YAML."""
    out: list[tuple[int, str]] = []
    for path in sorted(phases_dir.glob("[0-9][0-9]-*.yaml")):
        stem = path.name[: -len(".yaml")]
        out.append((int(stem[:2]), stem[3:]))
    return out

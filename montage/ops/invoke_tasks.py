"""The invoke namespace (``tasks.py`` is one line that imports :func:`build_namespace`).

``phase.*`` tasks call ``python -m montage.ops`` and pass its exit code through unchanged
(``invoke.Exit``); tasks from :data:`montage.ops.sessions.INVOKE_TASKS` run their argv chain.
Only the standard library and invoke are imported here, so ``invoke --list`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from invoke.collection import Collection
from invoke.exceptions import Exit
from invoke.tasks import Task, task

from montage.ops.lifeline import parent_env
from montage.ops.sessions import INVOKE_TASKS, PY, run_chain, run_named


def _ops(args: Sequence[str]) -> None:
    # The child dies with invoke and will not publish a bundle once invoke is gone (montage.ops.lifeline).
    rc = run_chain([[PY, "-m", "montage.ops", *args]], echo=False, env=parent_env())
    if rc:
        raise Exit(code=rc)


def _json(flag: bool) -> list[str]:
    return ["--json"] if flag else []


@task(name="list", help={"json": "JSON on stdout"})
def list_(c: Any, json: bool = False) -> None:
    """List the phases (id, slug, dependencies, title)."""
    _ops(["list", *_json(json)])


@task(help={"json": "JSON on stdout"})
def status(c: Any, json: bool = False) -> None:
    """State, date, commit and bundle of every phase."""
    _ops(["status", *_json(json)])


@task(
    help={
        "phase": "phase number",
        "force": "run although a dependency lacks a PASS (recorded)",
        "dry_run": "print the plan only",
        "json": "JSON on stdout",
    }
)
def run(c: Any, phase: str, force: bool = False, dry_run: bool = False, json: bool = False) -> None:
    """Run phase N: steps, gate, bundle (needs dependencies PASS)."""
    _ops(["run", str(phase), *(["--force"] if force else []), *(["--dry-run"] if dry_run else []), *_json(json)])


@task(help={"phase": "phase number", "dry_run": "list the checks only", "json": "JSON on stdout"})
def gate(c: Any, phase: str, dry_run: bool = False, json: bool = False) -> None:
    """Judge phase N's gate only (no steps, no dependency check)."""
    _ops(["gate", str(phase), *(["--dry-run"] if dry_run else []), *_json(json)])


@task(help={"phase": "phase number or 'all'", "json": "JSON on stdout"})
def verify(c: Any, phase: str, json: bool = False) -> None:
    """Re-hash and re-judge phase N's bundle (or 'all')."""
    _ops(["verify", str(phase), *_json(json)])


@task(help={"phase": "phase number or 'all'", "json": "JSON on stdout"})
def resign(c: Any, phase: str, json: bool = False) -> None:
    """Re-judge phase N's bundle (or 'all'), then sign it with the current key."""
    _ops(["resign", str(phase), *_json(json)])


@task(name="new", help={"name": "who signs with it (default: user@host)", "json": "JSON on stdout"})
def keys_new(c: Any, name: str = "", json: bool = False) -> None:
    """Create a signing key pair: private key outside the repo (0600), public key under proofs/keys/."""
    _ops(["keys", "new", *(["--name", name] if name else []), *_json(json)])


@task(name="list", help={"json": "JSON on stdout"})
def keys_list(c: Any, json: bool = False) -> None:
    """Trusted keys, revocations, this machine's signing key."""
    _ops(["keys", "list", *_json(json)])


@task(name="revoke", help={"key": "key id (unique prefix) or name", "reason": "why", "json": "JSON on stdout"})
def keys_revoke(c: Any, key: str, reason: str = "", json: bool = False) -> None:
    """Revoke a key: every signature by it is rejected from now on (commit the revocation file)."""
    _ops(["keys", "revoke", key, *(["--reason", reason] if reason else []), *_json(json)])


@task(
    help={
        "phase": "phase number or 'all'",
        "fast": "only the fast controls (scans, pytest, command, file, log)",
        "no_cache": "run again although a current result exists",
        "json": "JSON on stdout",
    }
)
def selftest(c: Any, phase: str, fast: bool = False, no_cache: bool = False, json: bool = False) -> None:
    """Prove phase N's gate checks fail on their negative controls and pass unchanged (or 'all')."""
    _ops(["selftest", str(phase), *(["--fast"] if fast else []), *(["--no-cache"] if no_cache else []), *_json(json)])


@task(help={"phase": "phase number", "yes": "execute the plan", "json": "JSON on stdout"})
def rollback(c: Any, phase: str, yes: bool = False, json: bool = False) -> None:
    """Print phase N's rollback plan; --yes executes and records it."""
    _ops(["rollback", str(phase), *(["--yes"] if yes else []), *_json(json)])


@task(help={"json": "JSON on stdout"})
def schema(c: Any, json: bool = False) -> None:
    """Write phases/schema.json for editors."""
    _ops(["schema", *_json(json)])


@task(
    help={
        "title": "the decision's title (names the file NNNN-slug.md)",
        "phase": "the phase whose gate confirms it",
        "supersedes": "the ADR number it replaces",
        "evidence": "a measured file (repeatable)",
    },
    iterable=["evidence"],
)
def adr_new(c: Any, title: str, phase: str = "", supersedes: str = "", evidence: list[str] | None = None) -> None:
    """Write a proposed MADR 4 ADR (docs/adr/NNNN-slug.md) and the index."""
    opts = [*(["--phase", phase] if phase else []), *(["--supersedes", supersedes] if supersedes else [])]
    _ops(["adr", "new", title, *opts, *[a for e in evidence or [] for a in ("--evidence", e)]])


@task(help={"number": "ADR number", "by": "a decision-maker's name (repeatable)"}, iterable=["by"])
def adr_accept(c: Any, number: str, by: list[str] | None = None) -> None:
    """Mark proposed ADR N accepted (needs a chosen option and a decision-maker)."""
    _ops(["adr", "accept", str(number), *[a for b in by or [] for a in ("--by", b)]])


@task(help={"old": "the superseded ADR's number", "new": "the superseding ADR's number"})
def adr_supersede(c: Any, old: str, new: str) -> None:
    """ADR OLD is superseded by ADR NEW (updates both files and the index)."""
    _ops(["adr", "supersede", str(old), str(new)])


@task(help={"number": "ADR number"})
def adr_refresh(c: Any, number: str) -> None:
    """Re-render ADR N's generated blocks from current evidence; people's text is kept."""
    _ops(["adr", "refresh", str(number)])


def _chain_task(name: str, commands: list[list[str]]) -> Task[Any]:
    def body(c: Any) -> None:
        rc = run_named(name, commands)
        if rc:
            raise Exit(code=rc)

    body.__name__ = name.rsplit(".", 1)[-1].replace("-", "_")
    body.__doc__ = " && ".join(" ".join(["python", *cmd[1:]] if cmd[0] == PY else cmd) for cmd in commands)
    return Task(body, name=name.rsplit(".", 1)[-1])


def build_namespace() -> Collection:
    ns = Collection()
    phase = Collection("phase")
    for t in (list_, status, run, gate, verify, resign, selftest, rollback, schema):
        phase.add_task(t)
    ns.add_collection(phase)
    keys = Collection("keys")
    for t in (keys_new, keys_list, keys_revoke):
        keys.add_task(t)
    ns.add_collection(keys)
    for name, commands in sorted(INVOKE_TASKS.items()):
        parent = ns
        *groups, _ = name.split(".")
        for group in groups:
            if group not in parent.collections:
                parent.add_collection(Collection(group))
            parent = parent.collections[group]
        parent.add_task(_chain_task(name, commands))
    for t, name in ((adr_new, "new"), (adr_accept, "accept"), (adr_supersede, "supersede"), (adr_refresh, "refresh")):
        ns.collections["adr"].add_task(t, name=name)
    return ns

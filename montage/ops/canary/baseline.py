"""Which version the canary serves as its baseline: the deployed one.

Order (issue 14 item 2):

1. an explicit ref (``--baseline-ref`` on the command line): the user said what to compare with;
2. the commit of the phase's last PASS run: what is running. "Last" is by finish time over every
   record of a run: ``proofs/phase-NN/latest``, the bundles in ``runs/`` and the committed index
   ``proofs/history.jsonl`` (a fresh clone has no ``runs/``). A FAIL published to ``latest/``
   after the PASS does not change what is deployed: the failed change never shipped;
3. the phase file's ``baseline_ref`` (``with: {baseline_ref: ...}``), required when there is no
   PASS bundle: without it there is nothing deployed to compare with, a usage error.

A PASS bundle recorded on a dirty tree does not name the code that ran, and a commit the clone
does not have (a shallow clone) cannot be checked out: both are usage errors naming the bundle and
what to do, never a silent fallback to something else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from montage.core import git as core_git
from montage.errors import UsageError


@dataclass(frozen=True)
class Baseline:
    ref: str | None  # what to check out (a commit or a ref); None: the candidate's own tree
    how: str  # one sentence: where the choice came from


def proofs_root(repo: Path) -> Path:
    """``MONTAGE_OPS__BUNDLES_DIR`` (relative to the repository) or ``<repo>/proofs``: the ops CLI's rule."""
    return repo / os.environ.get("MONTAGE_OPS__BUNDLES_DIR", "proofs")


@dataclass(frozen=True)
class _PassRecord:
    finished_at: str
    commit: str | None
    dirty: bool | None
    where: str  # the file the record was read from
    rank: int  # on equal times a bundle (full manifest) wins over a history line


def _shown(path: Path, repo: Path) -> str:
    """``path`` relative to the repository when it is inside it (as bundles name files), else as given."""
    try:
        return path.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return str(path)


def _pass_records(root: Path, phase_id: int, repo: Path) -> list[_PassRecord]:
    from montage.ops import report_history
    from montage.ops.bundle import ProofsLayout, read_manifest

    layout = ProofsLayout(root)
    runs = layout.runs(phase_id)
    bundles = [layout.latest(phase_id)]
    if runs.is_dir():
        bundles += sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.name)
    out: list[_PassRecord] = []
    for bundle in bundles:
        manifest = read_manifest(bundle)
        if manifest is not None and manifest.verdict.value == "PASS":
            out.append(_PassRecord(manifest.finished_at, manifest.git.commit, manifest.git.dirty,
                                   f"{_shown(bundle, repo)}/manifest.json", 1))  # fmt: skip
    index = _shown(root / report_history.HISTORY, repo)
    for e in report_history.read(root):
        if e.phase == phase_id and e.verdict == "PASS":
            out.append(_PassRecord(e.date, e.commit, e.dirty, f"{index} ({e.bundle})", 0))
    return out


def deployed(repo: Path, phase_id: int, proofs: Path | None = None) -> Baseline | None:
    """The commit of phase ``phase_id``'s last PASS run, or None when it has none."""
    records = _pass_records(proofs if proofs is not None else proofs_root(repo), phase_id, repo)
    if not records:
        return None
    last = max(records, key=lambda r: (r.finished_at, r.rank))
    commit = last.commit
    if last.dirty or not commit:
        raise UsageError(
            f"{last.where}: phase {phase_id}'s last PASS run was recorded on a dirty tree "
            f"(commit {commit or 'unknown'}, dirty {last.dirty}), so no commit names the code that ran; "
            "re-run the phase on a clean tree, or give the baseline explicitly with --baseline-ref REF."
        )
    if core_git.try_git(repo, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        raise UsageError(
            f"{last.where}: the deployed commit {commit} (phase {phase_id}'s last PASS run) is not in "
            f"the repository {repo} (a shallow clone?); fetch it (git fetch --unshallow) or give the baseline "
            "explicitly with --baseline-ref REF."
        )
    return Baseline(commit, f"deployed: commit of phase {phase_id}'s last PASS run ({last.where}, {last.finished_at})")


def resolve(
    repo: Path, *, phase_id: int | None, explicit: str | None, fallback: str | None, proofs: Path | None = None
) -> Baseline:
    """The baseline by the order in the module docstring."""
    if explicit:
        return Baseline(explicit, "explicit --baseline-ref")
    if phase_id is not None:
        found = deployed(repo, phase_id, proofs)
        if found is not None:
            return found
    if fallback:
        if phase_id is None:
            return Baseline(fallback, f"{fallback} (no --phase and no --baseline-ref given)")
        return Baseline(fallback, f"baseline_ref {fallback} from the phase file (phase {phase_id} has no PASS bundle)")
    raise UsageError(
        f"the canary has no baseline: phase {phase_id} has no PASS bundle to take the deployed commit from, and "
        "no baseline_ref is set; add `baseline_ref: REF` to the canary's `with:` in the phase file "
        "(or --baseline-ref REF on the command line)."
    )

"""The committed history index ``proofs/history.jsonl``: one line per ``phase.run``.

``runs/`` is git-ignored, so a fresh clone holds only each phase's ``latest/`` bundle; this small
file keeps what a report needs to draw a phase's history (verdict, date, commit, key figures).
``phase.run`` appends a line after it publishes a bundle; :func:`backfill` rebuilds the lines of
earlier runs from the git history of every ``latest/manifest.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from montage.core.files import atomic_write_text, canonical_json
from montage.errors import UsageError
from montage.ops.manifest import Manifest
from montage.ops.model import describe_errors
from montage.ops.report_figures import key_figures

HISTORY = "history.jsonl"


class HistoryEntry(BaseModel):
    """One phase run as the history index records it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase: int
    slug: str
    verdict: str
    date: str
    commit: str | None
    dirty: bool | None
    forced: bool
    figures: dict[str, str]
    bundle: str

    @property
    def key(self) -> tuple[int, str, str | None]:
        return (self.phase, self.date, self.commit)


def entry(manifest: Manifest, bundle: str) -> HistoryEntry:
    return HistoryEntry(
        phase=manifest.phase_id,
        slug=manifest.phase_slug,
        verdict=manifest.verdict.value,
        date=manifest.finished_at,
        commit=manifest.git.commit,
        dirty=manifest.git.dirty,
        forced=manifest.forced,
        figures=key_figures(manifest),
        bundle=bundle,
    )


def read(proofs_dir: Path) -> list[HistoryEntry]:
    """Every entry, oldest first; a malformed line is an error naming the file and line."""
    path = proofs_dir / HISTORY
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out: list[HistoryEntry] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(HistoryEntry.model_validate_json(line))
        except ValidationError as exc:
            raise UsageError(
                f"{path}:{number}: not a history entry ({describe_errors(exc)}); expected one JSON object per "
                "line with phase, slug, verdict, date, commit, dirty, forced, figures and bundle "
                "(`python -m montage.ops.report --backfill-history` rebuilds the file from git)."
            ) from None
    return sorted(out, key=lambda e: (e.date, e.phase))


def write(proofs_dir: Path, entries: list[HistoryEntry]) -> None:
    """Replace the index atomically with ``entries`` (deduplicated, oldest first)."""
    unique = {e.key: e for e in entries}
    lines = [
        canonical_json(e.model_dump(mode="json")) for e in sorted(unique.values(), key=lambda e: (e.date, e.phase))
    ]
    atomic_write_text(proofs_dir / HISTORY, "".join(line + "\n" for line in lines))


def append(proofs_dir: Path, new: HistoryEntry) -> None:
    write(proofs_dir, [*read(proofs_dir), new])


def backfill(repo_root: Path, proofs_dir: Path) -> list[HistoryEntry]:
    """Entries of every committed version of every ``phase-NN/latest/manifest.json`` (git history)."""
    from montage.core.git import try_git

    try:
        rel = proofs_dir.resolve().relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        return []
    found: list[HistoryEntry] = []
    for manifest_path in sorted(proofs_dir.glob("phase-[0-9][0-9]/latest/manifest.json")):
        git_path = f"{rel}/{manifest_path.relative_to(proofs_dir).as_posix()}"
        log = try_git(repo_root, "log", "--format=%H", "--", git_path) or ""
        for commit in log.split():
            text = try_git(repo_root, "show", f"{commit}:{git_path}")
            if text is None:
                continue
            try:
                manifest = Manifest.model_validate_json(text)
            except ValidationError:
                continue  # a version written before the typed manifest: not a run this index can describe
            found.append(entry(manifest, f"{git_path} at {commit[:10]}"))
    return found


def as_rows(entries: list[HistoryEntry]) -> list[dict[str, Any]]:
    return [json.loads(canonical_json(e.model_dump(mode="json"))) for e in entries]

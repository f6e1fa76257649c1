"""ADR drafts rendered from a Jinja template and the measured evidence in proof bundles.

``python -m montage.ops adr PHASE --title TITLE [--evidence FILE ...]`` writes
``docs/adr/NNNN-<slug>.md`` with status *Proposed*.  Everything numeric in the draft is copied from
files: the latest bundle of the phase and of its dependencies (verdict, commit, each check's
measured value and reason) and any JSON evidence file given with ``--evidence`` (its sha256 and its
scalar fields).  The Decision and Consequences sections are left for people to write: a tool that
invented a decision would be the kind of simulated proof this project exists to avoid.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from montage.errors import UsageError
from montage.ops.bundle import ProofsLayout, read_manifest, utc_now
from montage.ops.loader import Roadmap
from montage.ops.status import phase_status

ADR_DIR = Path("docs/adr")
MAX_EVIDENCE_FIELDS = 60


@dataclass(frozen=True)
class EvidenceFile:
    path: str
    sha256: str
    fields: list[tuple[str, str]]


def slugify(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    if not slug:
        raise UsageError(f"ADR title {title!r} has no letters or digits to name the file after.")
    return slug[:60]


def next_number(adr_dir: Path) -> int:
    """One more than the highest ``NNNN-*.md`` in ``adr_dir`` (1 when there is none)."""
    numbers = [int(p.name[:4]) for p in adr_dir.glob("[0-9][0-9][0-9][0-9]-*.md")] if adr_dir.is_dir() else []
    return max(numbers, default=0) + 1


def _scalars(data: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _scalars(value, f"{prefix}{key}.")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _scalars(value, f"{prefix}{i}.")
    else:
        yield prefix.rstrip("."), json.dumps(data)


def read_evidence(path: Path, repo_root: Path) -> EvidenceFile:
    """Hash an evidence file; for JSON, list its scalar fields (the first ``MAX_EVIDENCE_FIELDS``)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"evidence file {path}: cannot be read ({exc.strerror}).") from None
    fields: list[tuple[str, str]] = []
    if path.suffix == ".json":
        try:
            fields = list(_scalars(json.loads(raw)))[:MAX_EVIDENCE_FIELDS]
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"evidence file {path}: not valid JSON ({exc}); expected a JSON document.") from None
    try:
        shown = path.resolve().relative_to(repo_root).as_posix()
    except ValueError:
        shown = str(path)
    return EvidenceFile(path=shown, sha256=hashlib.sha256(raw).hexdigest(), fields=fields)


def _bundle_facts(roadmap: Roadmap, phase_ids: Sequence[int], layout: ProofsLayout, root: Path) -> list[dict[str, Any]]:
    facts = []
    for pid in phase_ids:
        lp = roadmap.phases[pid]
        st = phase_status(lp, layout, root)
        manifest = read_manifest(layout.latest(pid)) if st.bundle else None
        facts.append(
            {
                "id": pid,
                "title": lp.phase.title,
                "state": st.state,
                "date": st.date,
                "commit": st.commit,
                "bundle": st.bundle,
                "reasons": st.reasons,
                "checks": manifest.checks if manifest is not None else [],
            }
        )
    return facts


def render_draft(
    roadmap: Roadmap,
    phase_id: int,
    title: str,
    layout: ProofsLayout,
    repo_root: Path,
    evidence: Sequence[Path] = (),
    number: int | None = None,
    adr_dir: Path | None = None,
) -> tuple[Path, str]:
    """The draft's path and text (nothing written)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    if phase_id not in roadmap.phases:
        raise UsageError(f"phase {phase_id} does not exist; the roadmap has phases {sorted(roadmap.phases)}.")
    phase = roadmap.phases[phase_id].phase
    directory = adr_dir or repo_root / ADR_DIR
    num = number if number is not None else next_number(directory)
    path = directory / f"{num:04d}-{slugify(title)}.md"
    env = Environment(
        loader=PackageLoader("montage.ops", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    text = env.get_template("adr.md.j2").render(
        number=f"{num:04d}",
        title=title,
        phase=phase,
        generated_at=utc_now(),
        bundles=_bundle_facts(roadmap, [*phase.deps, phase_id], layout, repo_root),
        evidence=[read_evidence(p, repo_root) for p in evidence],
    )
    return path, text


def write_draft(path: Path, text: str, overwrite: bool) -> None:
    """Write atomically; an existing ADR is never overwritten without ``overwrite``."""
    from montage.core.files import atomic_write_text

    if path.exists() and not overwrite:
        raise UsageError(f"{path} already exists; an ADR is a record, so pass --force to replace the draft.")
    atomic_write_text(path, text)

"""Architecture decision records in MADR 4 form, linked to the checks and the evidence that confirm them.

``python -m montage.ops adr new|list|accept|supersede|refresh|index|check`` (and ``invoke adr.*``).
An ADR is ``docs/adr/NNNN-slug.md``: YAML front matter (MADR's ``status``, ``date``,
``decision-makers``; Montage adds ``phase`` and ``evidence``, a list of ``{path, sha256}``) and
MADR's sections.  Two blocks are generated and re-rendered by ``adr refresh`` between
``<!-- BEGIN GENERATED name -->`` and ``<!-- END GENERATED name -->`` markers: ``measured-data``
(in Context: the evidence files' figures, and where, when and how they were measured) and
``confirmation`` (the linked phase's gate checks with the verdicts of its latest bundle).  Everything
outside the markers is people's text and is kept.  The tool never chooses an option: a new ADR
is ``proposed`` and ``adr accept`` refuses one without a chosen option and a named decision-maker.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from montage.errors import CheckFailed, UsageError
from montage.ops.adr_render import _provenance, phase_facts, read_evidence, render

ADR_DIR = Path("docs/adr")
INDEX = "README.md"
STATUSES = ("proposed", "accepted", "rejected", "deprecated")
SUPERSEDED = re.compile(r"^superseded by ADR-(\d{4})$")
FILE_RE = re.compile(r"^(\d{4})-([a-z0-9-]+)\.md$")
LINK_RE = re.compile(r"\]\(((?:\./)?(\d{4})-[a-z0-9-]+\.md)\)")
CHOSEN_RE = re.compile(r'^Chosen option: "([^"]+)"', re.MULTILINE)
PLACEHOLDER = "to be decided"
BLOCKS = ("measured-data", "confirmation")


@dataclass
class Adr:
    """One parsed ADR file."""

    path: Path
    number: int
    title: str
    meta: dict[str, Any]
    body: str

    @property
    def status(self) -> str:
        return str(self.meta["status"])

    @property
    def decision(self) -> str | None:
        match = CHOSEN_RE.search(self.body)
        return match.group(1) if match and match.group(1).strip().lower() != PLACEHOLDER else None

    def text(self) -> str:
        import yaml

        front = yaml.safe_dump(self.meta, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
        return f"---\n{front}---\n{self.body}"


def slugify(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    if not slug:
        raise UsageError(f"ADR title {title!r} has no letters or digits to name the file after.")
    return slug[:60].rstrip("-")


# ---------------------------------------------------------------- reading and checking


def parse(path: Path) -> Adr:
    """Parse an ADR file; a clear error naming the file for a bad name or front matter."""
    import yaml

    match = FILE_RE.match(path.name)
    if match is None:
        raise UsageError(f"{path}: an ADR file is named NNNN-slug.md (four digits, lower-case slug).")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror}).") from None
    head = re.match(r"---\n(.*?\n)---\n", text, re.DOTALL)
    if head is None:
        raise UsageError(f"{path}: no MADR front matter; expected the file to start with '---', YAML, '---'.")
    try:
        meta = yaml.safe_load(head.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        raise UsageError(f"{path}: the front matter is not valid YAML{where} ({exc}).") from None
    body = text[head.end() :]
    problems = _meta_problems(meta)
    if problems:
        raise UsageError(f"{path}: invalid front matter: " + "; ".join(problems) + ".")
    title = next((line[2:].strip() for line in body.splitlines() if line.startswith("# ")), "")
    if not title:
        raise UsageError(f"{path}: no '# Title' heading after the front matter.")
    return Adr(path=path, number=int(match.group(1)), title=title, meta=meta, body=body)


def _meta_problems(meta: Any) -> list[str]:
    if not isinstance(meta, dict):
        return ["expected a YAML mapping with status, date and decision-makers"]
    problems = []
    status = meta.get("status")
    if not isinstance(status, str) or not (status in STATUSES or SUPERSEDED.match(status)):
        problems.append(f"status {status!r} is not one of {', '.join(STATUSES)} or 'superseded by ADR-NNNN'")
    date = meta.get("date")
    if not isinstance(date, dt.date) and not (isinstance(date, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)):
        problems.append(f"date {date!r} is not YYYY-MM-DD")
    makers = meta.get("decision-makers", [])
    if not isinstance(makers, list) or not all(isinstance(m, str) and m.strip() for m in makers):
        problems.append(f"decision-makers {makers!r} is not a list of names")
    phase = meta.get("phase")
    if phase is not None and (isinstance(phase, bool) or not isinstance(phase, int)):
        problems.append(f"phase {phase!r} is not a phase number")
    evidence = meta.get("evidence", [])
    if not isinstance(evidence, list) or not all(
        isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("sha256"), str) for e in evidence
    ):
        problems.append("evidence is not a list of {path, sha256}")
    return problems


def load_all(adr_dir: Path) -> list[Adr]:
    """Every ADR in ``adr_dir``, by number; refuses duplicate numbers, naming both files."""
    adrs = [parse(p) for p in sorted(adr_dir.glob("[0-9][0-9][0-9][0-9]-*.md"))] if adr_dir.is_dir() else []
    seen: dict[int, Path] = {}
    for adr in adrs:
        if adr.number in seen:
            raise UsageError(
                f"ADR number {adr.number:04d} is used twice: {seen[adr.number]} and {adr.path}; "
                "renumber one of them (two drafts from two branches), then run `invoke adr.index`."
            )
        seen[adr.number] = adr.path
    return adrs


def get(adrs: Sequence[Adr], number: int, adr_dir: Path) -> Adr:
    for adr in adrs:
        if adr.number == number:
            return adr
    raise UsageError(
        f"no ADR {number:04d} in {adr_dir} (it has {', '.join(f'{a.number:04d}' for a in adrs) or 'none'})."
    )


def problems(adr_dir: Path, repo_root: Path, accepted_only: int | None = None) -> list[str]:
    """What the suite's ADR check finds: duplicate numbers, broken links, accepted without a decision, stale hashes.

    With ``accepted_only=N`` only ADR N is judged, and it must also be accepted (phase 4's gate).
    """
    from montage.core.files import sha256_file

    try:
        adrs = load_all(adr_dir)
    except UsageError as exc:
        return [str(exc)]
    numbers = {a.number for a in adrs}
    out: list[str] = []
    for adr in adrs:
        if accepted_only is not None and adr.number != accepted_only:
            continue
        where = str(adr.path)
        for target, num in LINK_RE.findall(adr.body):
            if not (adr_dir / target).is_file():
                out.append(
                    f"{where}: links to {target}, which does not exist"
                    + ("" if int(num) in numbers else f" (no ADR {num})")
                )
        for key in ("supersedes", "superseded-by"):
            ref = adr.meta.get(key)
            if ref is not None and ref not in numbers:
                out.append(f"{where}: {key} {ref!r} names no ADR in {adr_dir}")
        if adr.status == "accepted":
            if adr.decision is None:
                out.append(f"{where}: accepted, but Decision Outcome has no 'Chosen option: \"...\"'")
            if not adr.meta.get("decision-makers"):
                out.append(f"{where}: accepted, but decision-makers names nobody")
        elif accepted_only is not None:
            out.append(f"{where}: status is {adr.status!r}, not accepted")
        for ev in adr.meta.get("evidence", []):
            path = repo_root / ev["path"]
            if not path.is_file():
                out.append(f"{where}: evidence {ev['path']} does not exist")
            elif sha256_file(path) != ev["sha256"]:
                out.append(
                    f"{where}: evidence {ev['path']} no longer matches its recorded sha256 "
                    f"(run `invoke adr.refresh {adr.number}`)"
                )
    if accepted_only is not None and accepted_only not in numbers:
        out.append(f"no ADR {accepted_only:04d} in {adr_dir}")
    return out


def generated_blocks(meta: Mapping[str, Any], ctx: OpsContext) -> dict[str, str]:
    """The generated blocks' current text, from the evidence files and the linked phase's bundle."""
    evidence = [read_evidence(ctx.repo_root / e["path"], ctx.repo_root) for e in meta.get("evidence", [])]
    phase = meta.get("phase")
    facts = None
    if phase is not None:
        roadmap = ctx.roadmap()
        if phase not in roadmap.phases:
            raise UsageError(f"phase {phase} does not exist; the roadmap has phases {sorted(roadmap.phases)}.")
        facts = phase_facts(roadmap, phase, ctx.layout, ctx.repo_root)
    measured = render("adr_measured.md.j2", evidence=[{"e": e, "p": _provenance(e.data)} for e in evidence])
    confirmation = render("adr_confirmation.md.j2", phase=facts)
    return {"measured-data": measured.strip("\n"), "confirmation": confirmation.strip("\n")}


def _block(name: str, text: str) -> str:
    begin = f"<!-- BEGIN GENERATED {name} (adr.refresh rewrites this block; edit outside it) -->"
    return f"{begin}\n{text}\n<!-- END GENERATED {name} -->"


def replace_blocks(adr: Adr, blocks: Mapping[str, str]) -> str:
    body = adr.body
    for name, text in blocks.items():
        pattern = re.compile(
            rf"<!-- BEGIN GENERATED {re.escape(name)}\b.*?<!-- END GENERATED {re.escape(name)} -->", re.DOTALL
        )
        if pattern.search(body) is None:
            raise UsageError(
                f"{adr.path}: the generated block {name!r} is missing (its BEGIN/END GENERATED markers); "
                "restore them to refresh."
            )
        match = pattern.search(body)
        assert match is not None
        body = body[: match.start()] + _block(name, text) + body[match.end() :]
    return body


@dataclass
class OpsContext:
    """Where things are: the repository, the ADR directory, the phases and the bundles."""

    repo_root: Path
    adr_dir: Path
    phases_dir: Path
    layout: Any  # montage.ops.bundle.ProofsLayout

    def roadmap(self) -> Any:
        from montage.ops.loader import load_roadmap

        return load_roadmap(self.phases_dir)


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


# ---------------------------------------------------------------- commands


def new(
    ctx: OpsContext, title: str, phase: int | None = None, supersedes: int | None = None, evidence: Sequence[Path] = ()
) -> tuple[Path, str]:
    """A new ``proposed`` ADR's path and text (nothing written)."""
    slug = slugify(title)
    adrs = load_all(ctx.adr_dir)
    if supersedes is not None:
        get(adrs, supersedes, ctx.adr_dir)
    number = max((a.number for a in adrs), default=0) + 1
    path = ctx.adr_dir / f"{number:04d}-{slug}.md"
    meta: dict[str, Any] = {"status": "proposed", "date": today(), "decision-makers": []}
    if phase is not None:
        meta["phase"] = phase
    meta["evidence"] = [
        {"path": e.path, "sha256": e.sha256} for e in (read_evidence(p, ctx.repo_root) for p in evidence)
    ]
    if supersedes is not None:
        meta["supersedes"] = supersedes
    old = next((a for a in adrs if a.number == supersedes), None)
    blocks = generated_blocks(meta, ctx)
    body = render(
        "adr.md.j2",
        title=title,
        blocks={k: _block(k, v) for k, v in blocks.items()},
        supersedes=({"number": f"{old.number:04d}", "file": old.path.name, "title": old.title} if old else None),
    )
    return path, Adr(path, number, title, meta, body).text()


def accept(adr: Adr, by: Sequence[str]) -> str:
    if adr.status == "accepted":
        raise UsageError(f"{adr.path}: ADR {adr.number:04d} is already accepted (on {adr.meta['date']}).")
    if adr.status != "proposed":
        raise UsageError(f"{adr.path}: ADR {adr.number:04d} is {adr.status!r}; only a proposed ADR can be accepted.")
    makers = list(dict.fromkeys([*adr.meta.get("decision-makers", []), *[b.strip() for b in by if b.strip()]]))
    if not makers:
        raise UsageError(f"{adr.path}: name who decided (--by NAME); decision-makers is empty.")
    if adr.decision is None:
        raise UsageError(f"{adr.path}: write the decision first: Decision Outcome needs 'Chosen option: \"...\"'.")
    adr.meta.update({"status": "accepted", "date": today(), "decision-makers": makers})
    return adr.text()


def supersede(old: Adr, new_adr: Adr) -> tuple[str, str]:
    if old.number == new_adr.number:
        raise UsageError(f"{old.path}: an ADR cannot supersede itself.")
    if SUPERSEDED.match(old.status):
        raise UsageError(f"{old.path}: ADR {old.number:04d} is already {old.status}.")
    old.meta.update(
        {"status": f"superseded by ADR-{new_adr.number:04d}", "date": today(), "superseded-by": new_adr.number}
    )
    new_adr.meta["supersedes"] = old.number
    line_old = f"* Superseded by [ADR-{new_adr.number:04d}]({new_adr.path.name}) ({new_adr.title})."
    line_new = f"* Supersedes [ADR-{old.number:04d}]({old.path.name}) ({old.title})."
    for adr, line in ((old, line_old), (new_adr, line_new)):
        if line not in adr.body:
            adr.body = adr.body.rstrip("\n") + f"\n{line}\n"
    return old.text(), new_adr.text()


def refresh(adr: Adr, ctx: OpsContext) -> str:
    """Re-render the generated blocks and re-record the evidence hashes; people's text is kept."""
    adr.meta["evidence"] = [
        {"path": e["path"], "sha256": read_evidence(ctx.repo_root / e["path"], ctx.repo_root).sha256}
        for e in adr.meta.get("evidence", [])
    ]
    adr.body = replace_blocks(adr, generated_blocks(adr.meta, ctx))
    return adr.text()


def index_text(adrs: Sequence[Adr]) -> str:
    rows = [
        {
            "number": f"{a.number:04d}",
            "file": a.path.name,
            "title": a.title,
            "status": a.status,
            "date": str(a.meta["date"]),
            "makers": ", ".join(a.meta.get("decision-makers", [])) or "—",
            "phase": a.meta.get("phase", "—"),
        }
        for a in adrs
    ]
    return render("adr_index.md.j2", adrs=rows)


def write(ctx: OpsContext, texts: Mapping[Path, str]) -> None:
    """Write the ADRs (each atomically; every text was rendered and validated first) and the index."""
    from montage.core.files import atomic_write_text

    for path, text in texts.items():
        atomic_write_text(path, text)
    atomic_write_text(ctx.adr_dir / INDEX, index_text(load_all(ctx.adr_dir)))


def check_or_raise(ctx: OpsContext, number: int | None) -> int:
    found = problems(ctx.adr_dir, ctx.repo_root, accepted_only=number)
    if found:
        raise CheckFailed("ADR check failed:\n" + "\n".join(f"  - {p}" for p in found))
    return 0

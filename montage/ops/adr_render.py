"""Rendering for ADRs: packaged Jinja templates (StrictUndefined), evidence files and a phase's latest bundle.

:func:`phase_facts` is the one place the ADR tool reads a proof bundle.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from montage.errors import UsageError

MAX_EVIDENCE_FIELDS = 60


@dataclass(frozen=True)
class EvidenceFile:
    path: str
    sha256: str
    data: Any
    fields: list[tuple[str, str]] = field(default_factory=list)


def render(template: str, *, trim_blocks: bool = False, **values: Any) -> str:
    """Render a packaged template with StrictUndefined; a missing value names the template and line.

    ``trim_blocks`` also strips the whitespace around block tags (Jinja's trim_blocks + lstrip_blocks)."""
    import traceback

    from jinja2 import Environment, PackageLoader, StrictUndefined, UndefinedError

    env = Environment(
        loader=PackageLoader("montage.ops", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=trim_blocks,
        lstrip_blocks=trim_blocks,
        autoescape=lambda name: name is not None and name.endswith(".html.j2"),  # Markdown is not escaped
    )
    try:
        return env.get_template(template).render(**values)
    except UndefinedError as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
        where = f"{Path(frames[-1].filename).name}, line {frames[-1].lineno}" if frames else template
        raise UsageError(f"template {where}: {exc.message}; the value is missing from what was passed in.") from None


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
    """Hash an evidence file; for JSON, keep its data and list its scalar fields."""
    from montage.core.files import sha256_bytes

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"evidence file {path}: cannot be read ({exc.strerror}).") from None
    data: Any = None
    fields: list[tuple[str, str]] = []
    if path.suffix == ".json":
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"evidence file {path}: not valid JSON ({exc}); expected a JSON document.") from None
        fields = list(_scalars(data))[:MAX_EVIDENCE_FIELDS]
    try:
        shown = path.resolve().relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        shown = str(path)
    return EvidenceFile(path=shown, sha256=sha256_bytes(raw), data=data, fields=fields)


def _side_by_side(options: Mapping[str, Any]) -> dict[str, Any]:
    """Rows of flattened figures with one column per option (the evidence's ``modes``)."""
    columns = list(options)
    flat = {name: dict(_scalars(value)) for name, value in options.items()}
    rows: list[str] = []
    for name in columns:
        rows += [k for k in flat[name] if k not in rows and not k.endswith(".pid")]
    rows.sort(key=lambda k: not all(k in flat[c] for c in columns))  # shared figures first, stable otherwise
    return {"columns": columns, "rows": [[key, *[flat[c].get(key, "—") for c in columns]] for key in rows]}


def _provenance(data: Any) -> dict[str, Any]:
    d = data if isinstance(data, dict) else {}
    host = d.get("host") or {}
    git = d.get("git") or {}
    return {
        "date": d.get("date"),
        "host": f"{host.get('hostname', '?')} ({host.get('system', '?')} {host.get('release', '')}, "
        f"{host.get('cpu_count', '?')} CPUs)"
        if host
        else None,
        "load": (d.get("load_average_before"), d.get("load_average_after")),
        "commit": (str(git.get("commit") or "unknown")[:12] + ("+dirty" if git.get("dirty") else "")) if git else None,
        "command": d.get("command"),
        "synthetic": d.get("synthetic"),
        "how": d.get("load"),
        "config": d.get("config"),
        "options": _side_by_side(d["modes"]) if isinstance(d.get("modes"), dict) else None,
    }


def phase_facts(roadmap: Any, phase_id: int, layout: Any, repo_root: Path) -> dict[str, Any]:
    """The phase's gate checks and its latest bundle's results (the one place that reads a bundle here)."""
    from montage.ops.bundle import read_manifest
    from montage.ops.status import phase_status

    lp = roadmap.phases[phase_id]
    st = phase_status(lp, layout, repo_root)
    manifest = read_manifest(layout.latest(phase_id)) if st.bundle else None
    results = {c.id: c for c in manifest.checks} if manifest is not None else {}
    checks = []
    for gc in lp.phase.gate:
        r = results.get(gc.id)
        if r is not None and r.kind != gc.check:  # the bundle judged an earlier definition of this check
            checks.append({"id": gc.id, "kind": gc.check, "description": gc.description or "", "verdict": "NOT RUN",
                           "value": "", "expected": "", "reason": f"the latest bundle judged an earlier definition "
                           f"of this check (kind {r.kind}), so it has no result for this one"})  # fmt: skip
            continue
        checks.append(
            {
                "id": gc.id,
                "kind": gc.check,
                "description": gc.description or "",
                "verdict": r.verdict.value if r else "NOT RUN",
                "value": json.dumps(r.value) if r else "",
                "expected": r.expected if r else "",
                "reason": r.reason if r else "no result in the latest bundle",
            }
        )
    return {
        "id": phase_id,
        "title": lp.phase.title,
        "goal": lp.phase.goal,
        "state": st.state,
        "verdict": st.verdict,
        "bundle": st.bundle,
        "commit": (st.commit or "unknown")[:12],
        "dirty": bool(st.dirty),
        "date": st.date,
        "reasons": st.reasons,
        "checks": checks,
    }

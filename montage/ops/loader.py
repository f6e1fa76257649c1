"""Load and validate a roadmap: every ``phases/NN-slug.yaml``, strictly, with cross-file checks.

Errors raise :class:`montage.errors.ValidationFailure` (exit 2) naming ``file:line:col`` and what
was expected.  Loading writes nothing except the listing cache (:mod:`montage.ops.index`) after a
fully valid load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from montage.errors import ValidationFailure, format_location
from montage.ops import index as listing_index
from montage.ops.checks import KINDS, load_kind
from montage.ops.model import Phase, RollbackStep, Step
from montage.ops.yamlstrict import Located, PathKey, load_text

FILENAME = re.compile(r"^(?P<id>\d{2})-(?P<slug>[a-z0-9]+(?:-[a-z0-9]+)*)\.yaml$")


@dataclass(frozen=True)
class LoadedPhase:
    phase: Phase
    path: Path
    located: Located
    raw_sha256: str


@dataclass(frozen=True)
class Roadmap:
    phases_dir: Path
    phases: dict[int, LoadedPhase]

    def get(self, phase_id: int) -> LoadedPhase:
        try:
            return self.phases[phase_id]
        except KeyError:
            known = ", ".join(str(i) for i in sorted(self.phases)) or "none"
            raise ValidationFailure(
                f"there is no phase {phase_id} in {self.phases_dir}; expected one of: {known}"
            ) from None

    def ordered(self) -> list[LoadedPhase]:
        return [self.phases[i] for i in sorted(self.phases)]


def _describe_input(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _raise_validation(located: Located, exc: ValidationError, prefix: PathKey = ()) -> None:
    err = exc.errors(include_url=False)[0]
    loc: PathKey = (*prefix, *(p for p in err["loc"] if not isinstance(p, str) or not p.startswith("function-")))
    # pydantic reports aliases ("with") by their alias; model-level validators have an empty loc.
    where = located.where(loc)
    field = ".".join(str(p) for p in loc) or "(document)"
    kind = err["type"]
    if kind == "extra_forbidden":
        message = (
            f"unknown key {str(loc[-1])!r} at {field}; expected only the keys the schema defines (phases/schema.json)"
        )
    elif kind == "missing":
        message = f"missing required key {field}"
    elif kind == "value_error":
        message = f"{field}: {err['msg'].removeprefix('Value error, ')}"
    else:
        message = f"{field}: {err['msg']}; got {_describe_input(err.get('input'))}"
    raise ValidationFailure(
        message,
        path=str(located.path),
        line=where[0] if where else None,
        column=where[1] if where else None,
    )


def _fail_at(located: Located, key: PathKey, message: str) -> ValidationFailure:
    where = located.where(key)
    return ValidationFailure(
        message, path=str(located.path), line=where[0] if where else None, column=where[1] if where else None
    )


def parse_phase(path: Path, raw: bytes) -> LoadedPhase:
    """Validate one phase file (not its cross-file references)."""
    import hashlib

    match = FILENAME.match(path.name)
    if match is None:
        raise ValidationFailure(
            "the file name must be NN-slug.yaml (two digits, a dash, a lower-case slug)", path=str(path)
        )
    located = load_text(path, raw)
    if not isinstance(located.data, dict):
        raise _fail_at(located, (), f"the document is a {type(located.data).__name__}; expected a mapping")
    try:
        phase = Phase.model_validate(located.data)
    except ValidationError as exc:
        _raise_validation(located, exc)
        raise  # pragma: no cover - _raise_validation always raises
    if phase.id != int(match["id"]):
        raise _fail_at(located, ("id",), f"id is {phase.id} but the file name says {match['id']}; expected them equal")
    if phase.slug != match["slug"]:
        raise _fail_at(
            located, ("slug",), f"slug is {phase.slug!r} but the file name says {match['slug']!r}; expected them equal"
        )
    _check_task_names(located, phase)
    for i, check in enumerate(phase.gate):
        if check.check not in KINDS:
            raise _fail_at(
                located,
                ("gate", i, "check"),
                f"unknown check kind {check.check!r}; expected one of: {', '.join(sorted(KINDS))}",
            )
        kind = load_kind(check.check)
        try:
            kind.Params.model_validate(check.with_)
        except ValidationError as exc:
            _raise_validation(located, exc, prefix=("gate", i, "with"))
    return LoadedPhase(phase=phase, path=path, located=located, raw_sha256=hashlib.sha256(raw).hexdigest())


PHASE_TASKS = {
    "phase.list",
    "phase.status",
    "phase.run",
    "phase.gate",
    "phase.verify",
    "phase.rollback",
    "phase.schema",
}


def _check_task_names(located: Located, phase: Phase) -> None:
    """``nox:`` / ``invoke:`` must name a session / task that exists (montage.ops.sessions)."""
    import shlex

    from montage.ops.sessions import INVOKE_TASKS, NOX_SESSIONS

    entries: list[tuple[str, int, Step | RollbackStep]] = [("steps", i, s) for i, s in enumerate(phase.steps)]
    entries += [("rollback", i, s) for i, s in enumerate(phase.rollback)]
    for label, i, item in entries:
        nox_name = item.nox if isinstance(item, Step) else None
        if nox_name is not None and nox_name not in NOX_SESSIONS and not re.fullmatch(r"phase-\d+", nox_name):
            known = ", ".join([*sorted(NOX_SESSIONS), "phase-N"])
            raise _fail_at(located, (label, i, "nox"), f"unknown nox session {nox_name!r}; expected one of: {known}")
        if item.invoke is not None:
            try:
                words = shlex.split(item.invoke)
            except ValueError as exc:
                raise _fail_at(located, (label, i, "invoke"), f"cannot split {item.invoke!r}: {exc}") from None
            if not words or (words[0] not in INVOKE_TASKS and words[0] not in PHASE_TASKS):
                known = ", ".join(sorted({*INVOKE_TASKS, *PHASE_TASKS}))
                raise _fail_at(
                    located, (label, i, "invoke"), f"unknown invoke task {item.invoke!r}; expected one of: {known}"
                )


def _check_graph(phases: dict[int, LoadedPhase]) -> None:
    slugs: dict[str, LoadedPhase] = {}
    for lp in phases.values():
        if lp.phase.slug in slugs:
            raise _fail_at(
                lp.located, ("slug",), f"slug {lp.phase.slug!r} is also used by {slugs[lp.phase.slug].path.name}"
            )
        slugs[lp.phase.slug] = lp
        for j, dep in enumerate(lp.phase.deps):
            if dep not in phases:
                key: PathKey = ("depends_on", j) if lp.phase.depends_on is not None else ("id",)
                raise _fail_at(
                    lp.located,
                    key,
                    f"depends_on phase {dep}, which does not exist; expected one of: "
                    + (", ".join(str(i) for i in sorted(phases)) or "none"),
                )
    # cycles: depth-first search with colours
    state: dict[int, int] = {}

    def visit(node: int, trail: list[int]) -> None:
        state[node] = 1
        for dep in phases[node].phase.deps:
            if state.get(dep) == 1:
                raise _cycle_error(phases, [*trail[trail.index(dep) :], dep])
            if state.get(dep) is None:
                visit(dep, [*trail, dep])
        state[node] = 2

    for pid in sorted(phases):
        if state.get(pid) is None:
            visit(pid, [pid])


def _edge_key(lp: LoadedPhase, dep: int) -> PathKey:
    """Where phase ``lp`` says it depends on ``dep``: its depends_on entry, or its id (the default)."""
    return ("depends_on", lp.phase.deps.index(dep)) if lp.phase.depends_on is not None else ("id",)


def _cycle_error(phases: dict[int, LoadedPhase], cycle: list[int]) -> ValidationFailure:
    """Name every edge of ``cycle`` with its file and line: the edit that closed it may be in any of them."""
    edges = []
    for node, dep in zip(cycle, cycle[1:], strict=False):
        lp = phases[node]
        where = lp.located.where(_edge_key(lp, dep))
        at = format_location(str(lp.path), *(where or (None, None)))
        how = "" if lp.phase.depends_on is not None else " (by default: the previous phase)"
        edges.append(f"{at}: phase {node} depends on {dep}{how}")
    first = phases[cycle[0]]
    return _fail_at(
        first.located,
        _edge_key(first, cycle[1]),
        "dependency cycle "
        + " -> ".join(str(c) for c in cycle)
        + "; expected an acyclic graph. Its edges: "
        + "; ".join(edges),
    )


def load_roadmap(phases_dir: Path, write_index: bool = True) -> Roadmap:
    """Load every phase file under ``phases_dir``; raise ValidationFailure on the first problem."""
    if not phases_dir.is_dir():
        raise ValidationFailure(f"the phases directory {phases_dir} does not exist; expected phases/NN-slug.yaml files")
    phases: dict[int, LoadedPhase] = {}
    files = sorted(p for p in phases_dir.iterdir() if p.suffix in {".yaml", ".yml"} and not p.name.startswith("."))
    if not files:
        raise ValidationFailure(f"no phase files in {phases_dir}; expected phases/NN-slug.yaml files")
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ValidationFailure(f"cannot read the file ({exc.strerror})", path=str(path)) from None
        lp = parse_phase(path, raw)
        if lp.phase.id in phases:
            raise _fail_at(lp.located, ("id",), f"id {lp.phase.id} is also used by {phases[lp.phase.id].path.name}")
        phases[lp.phase.id] = lp
    _check_graph(phases)
    roadmap = Roadmap(phases_dir=phases_dir, phases=phases)
    if write_index:
        listing_index.write(phases_dir, [(lp.phase.id, lp.phase.slug, lp.phase.title) for lp in roadmap.ordered()])
    return roadmap

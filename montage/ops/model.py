"""The phase model: what ``phases/NN-slug.yaml`` may contain (strict: unknown keys are errors)."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from montage.core.files import canonical_json

Scalar = str | int | float | bool | None
ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Step(_Strict):
    """One thing ``phase.run`` does before judging: exactly one of ``run``, ``nox`` or ``invoke``."""

    id: str = Field(pattern=ID_PATTERN, description="step id, unique within the phase")
    run: list[str] | None = Field(None, min_length=1, description="argv list, run without a shell")
    nox: str | None = Field(None, description="a nox session name (montage.ops.sessions.NOX_SESSIONS or phase-N)")
    invoke: str | None = Field(
        None, description="an invoke task and its arguments, e.g. 'phase.gate 2' (montage.ops.sessions.INVOKE_TASKS)"
    )
    timeout_s: float = Field(gt=0, le=86400, description="seconds before the step is killed and recorded as failed")
    description: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        given = [k for k in ("run", "nox", "invoke") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a step needs exactly one of run, nox or invoke; got {given or 'none'}")
        return self

    def argv(self) -> list[str]:
        """The command this step runs (``{python}`` stands for the current interpreter)."""
        if self.run is not None:
            return list(self.run)
        if self.nox is not None:
            return ["{python}", "-m", "nox", "--no-venv", "-s", self.nox]
        return ["{python}", "-m", "invoke", *shlex.split(str(self.invoke))]


class SetFlag(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.]+$")
    value: Scalar


class RollbackStep(_Strict):
    """A rollback step: a ``run`` / ``invoke`` command (with ``timeout_s``), a ``set_flag``, or a
    ``revert`` of the commit the phase's PASS bundle recorded (see :mod:`montage.ops.rollback`)."""

    id: str = Field(pattern=ID_PATTERN)
    run: list[str] | None = Field(None, min_length=1)
    invoke: str | None = None
    set_flag: SetFlag | None = Field(None, description="written to the flags file with `montage flags set`")
    revert: Literal["bundle_commit"] | None = Field(
        None,
        description="bundle_commit: `git revert` the commit recorded by this phase's PASS bundle (refused when "
        "there is none, it was recorded dirty or forced, or its commit is not in HEAD's history)",
    )
    timeout_s: float | None = Field(None, gt=0, le=86400)
    description: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RollbackStep:
        given = [k for k in ("run", "invoke", "set_flag", "revert") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a rollback step needs exactly one of run, invoke, set_flag or revert; got {given or 'none'}"
            )
        if (self.run is not None or self.invoke is not None) and self.timeout_s is None:
            raise ValueError("a run/invoke rollback step needs timeout_s")
        return self

    def argv(self) -> list[str]:
        """The command this step runs (a ``revert`` names its commit only when executed: ``COMMIT``)."""
        if self.run is not None:
            return list(self.run)
        if self.invoke is not None:
            return ["{python}", "-m", "invoke", *shlex.split(self.invoke)]
        if self.revert is not None:
            return ["git", "revert", "--no-edit", "COMMIT"]
        assert self.set_flag is not None
        value = self.set_flag.value
        rendered = canonical_json(value) if not isinstance(value, str) else value
        return ["{python}", "-m", "montage", "flags", "set", self.set_flag.name, rendered]


ControlVerdict = Literal["FAIL", "INCONCLUSIVE"]
_FAIL: ControlVerdict = "FAIL"


class ControlSpec(_Strict):
    """A negative control a phase file declares for one gate entry (``phase.selftest``): a minimal real
    change to the product, as files written into (or text appended to files of) the throwaway worktree."""

    name: str = Field(pattern=ID_PATTERN, description="a kind's default control of the same name is replaced")
    description: str = Field(min_length=1)
    write: dict[str, str] = Field(default_factory=dict, description="path inside the repository -> its new text")
    append: dict[str, str] = Field(default_factory=dict, description="path of an existing file -> text appended")
    expect: list[ControlVerdict] = Field(default_factory=lambda: [_FAIL], min_length=1)
    fast: bool = Field(False, description="cheap enough for every CI run (selftest --fast)")

    @model_validator(mode="after")
    def _changes_something(self) -> ControlSpec:
        if not self.write and not self.append:
            raise ValueError(f"control {self.name!r} changes nothing; expected files under write: or append:")
        for rel in [*self.write, *self.append]:
            parts = PurePosixPath(rel).parts
            if not parts or rel.startswith("/") or ".." in parts or parts[0] in (".git", "proofs"):
                raise ValueError(
                    f"control {self.name!r}: path {rel!r} must be relative, inside the repository, "
                    "and outside .git/ and proofs/"
                )
        return self


class GateCheck(_Strict):
    """One gate entry: a check kind and its parameters."""

    id: str = Field(pattern=ID_PATTERN)
    check: str = Field(description="the check kind (montage.ops.checks.KINDS)")
    critical: bool = True
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="the kind's parameters")
    description: str | None = None
    controls: list[ControlSpec] = Field(
        default_factory=list, description="negative controls added to the kind's defaults (same name: replaces it)"
    )


class Flag(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.]+$")
    default: Scalar = None
    description: str | None = None


class Phase(_Strict):
    """One roadmap phase."""

    id: int = Field(ge=0, le=99, description="equals NN in the file name")
    slug: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", description="equals the slug in the file name")
    title: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    depends_on: list[int] | None = Field(None, description="phase ids; default: the previous phase")
    inputs: list[str] = Field(default_factory=list, description="globs whose content change makes a result STALE")
    flags: list[Flag] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    gate: list[GateCheck] = Field(default_factory=list, description="checks; an empty gate can only be PARTIAL")
    bundle: list[str] = Field(default_factory=list, description="artifact names the roadmap requires in the bundle")
    rollback: list[RollbackStep] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Phase:
        for label, items in (("steps", self.steps), ("gate", self.gate), ("rollback", self.rollback)):
            seen: set[str] = set()
            for item in items:
                if item.id in seen:
                    raise ValueError(f"{label} id {item.id!r} is used twice; expected unique ids")
                seen.add(item.id)
        return self

    @property
    def deps(self) -> list[int]:
        """Effective dependencies (the default is the previous phase)."""
        if self.depends_on is not None:
            return list(self.depends_on)
        return [self.id - 1] if self.id > 0 else []

    def definition_hash(self) -> str:
        """sha256 of the canonical definition (comments and key order do not count)."""
        data = self.model_dump(mode="json", by_alias=True)
        data["depends_on"] = self.deps
        for step in data["rollback"]:  # added later: absent, it must not change the hash existing bundles hold
            if step.get("revert") is None:
                step.pop("revert", None)
        for check in data["gate"]:  # likewise
            if not check.get("controls"):
                check.pop("controls", None)
        return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def schema() -> dict[str, Any]:
    """JSON schema of a phase file, for editors."""
    out = Phase.model_json_schema(by_alias=True)
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "Montage phase file (phases/NN-slug.yaml)"
    return out


def describe_errors(exc: ValidationError, limit: int = 3) -> str:
    """The first ``limit`` errors of a validation as ``field.path is <input>: message``, joined."""
    shown = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(document)'} is {e.get('input')!r:.80}: {e['msg']}"
        for e in exc.errors()[:limit]
    )
    more = exc.error_count() - limit
    return shown + (f" and {more} more" if more > 0 else "")

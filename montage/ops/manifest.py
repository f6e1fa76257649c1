"""The bundle manifest (``manifest.json``) as typed, strict models: one definition of the evidence.

The runner builds a :class:`Manifest`; status, verify, the ``--json`` output, the summary template
and the ADR generator read it.  The JSON on disk keeps the shape of schema version 1 (the keys of
every model below, nothing more), so bundles written before these models existed still validate.
A manifest is evidence: unknown keys, a verdict a check cannot have, a path that leaves the bundle
are validation errors, which :func:`montage.ops.bundle.load_manifest` reports as TAMPERED.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from montage.core.files import canonical_json
from montage.ops.checks.base import Judgement
from montage.ops.verdict import CHECK_VERDICTS, GATE_VERDICTS, Verdict

SCHEMA_VERSION: Literal[1] = 1


def _inside(value: str) -> str:
    """A path relative to the bundle root that stays inside it (``a/b.txt``; no ``..``, no ``/x``)."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\\" in value or value != path.as_posix():
        raise ValueError(f"{value!r} is not a normalised path inside the bundle")
    return value


BundlePath = Annotated[str, AfterValidator(_inside)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Descriptive(BaseModel):
    """Descriptive fingerprints (host, tools): typed where known, extra keys kept (never judged)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class CheckResult(_Evidence):
    """One gate entry's judgement as stored in a bundle manifest."""

    id: str
    kind: str
    critical: bool
    verdict: Verdict
    value: Any = None
    expected: str
    reason: str
    evidence_dir: BundlePath
    evidence: list[str] = Field(default_factory=list)  # relative to evidence_dir
    duration_s: float = 0.0
    measured: bool = True  # False: the kind raised (tool missing, crash); there is nothing to re-judge

    @model_validator(mode="after")
    def _consistent(self) -> CheckResult:
        if self.verdict not in CHECK_VERDICTS:
            raise ValueError(f"a check's verdict is one of {sorted(CHECK_VERDICTS)}, not {self.verdict.value}")
        if not self.measured and self.verdict is not Verdict.ERROR:
            raise ValueError(f"an unmeasured check can only be ERROR, not {self.verdict.value}")
        for name in self.evidence:
            _inside(f"{self.evidence_dir}/{name}")
        return self

    @classmethod
    def from_judgement(
        cls,
        check_id: str,
        kind: str,
        critical: bool,
        judgement: Judgement,
        evidence_dir: str,
        duration_s: float,
        measured: bool = True,
    ) -> CheckResult:
        return cls(
            id=check_id,
            kind=kind,
            critical=critical,
            evidence_dir=evidence_dir,
            duration_s=round(duration_s, 3),
            measured=measured,
            **judgement.model_dump(),
        )

    def judgement(self) -> Judgement:
        """The judgement part (what ``rejudge`` must reproduce)."""
        return Judgement(
            verdict=self.verdict, value=self.value, expected=self.expected, reason=self.reason, evidence=self.evidence
        )

    def produced(self) -> set[str]:
        """Bundle paths of the evidence files this check names (a required artifact must be one)."""
        return {f"{self.evidence_dir}/{name}" for name in self.evidence}


class GateVerdict(_Evidence):
    """What :func:`montage.ops.gate.judge` decides: PASS / FAIL / PARTIAL and why it is not PASS."""

    verdict: Verdict
    reasons: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _gate_verdict(self) -> GateVerdict:
        if self.verdict not in GATE_VERDICTS:
            raise ValueError(f"a gate's verdict is one of {sorted(GATE_VERDICTS)}, not {self.verdict.value}")
        return self


class StepRecord(_Evidence):
    id: str
    argv: list[str]
    exit_code: int | None  # None: the step could not start
    duration_s: float
    timed_out: bool
    log: BundlePath

    @property
    def failed(self) -> bool:
        return self.exit_code != 0 or self.timed_out


class GitState(_Evidence):
    commit: str | None
    dirty: bool | None


class Host(_Descriptive):
    id: str
    system: str
    release: str
    machine: str
    python_implementation: str
    executable: str
    cpu_count: int | None
    hostname: str


class Tools(_Descriptive):
    python: str
    ffmpeg: str | None
    packages: dict[str, str | None]


class Inputs(_Evidence):
    globs: list[str]
    fingerprint: Sha256
    files: dict[str, Sha256]


class Manifest(_Evidence):
    """``manifest.json``: what ran, on what, what each check judged and the gate's verdict."""

    schema_version: Literal[1] = SCHEMA_VERSION
    mode: Literal["run", "gate", "selftest"]  # selftest: montage/ops/selftest.py
    phase_id: int = Field(ge=0, le=99)
    phase_slug: str
    phase_title: str
    phase_goal: str
    phase_file: str
    definition_sha256: Sha256
    started_at: str
    finished_at: str
    git: GitState
    host: Host
    tools: Tools
    inputs: Inputs
    forced: bool
    forced_reasons: list[str]
    steps: list[StepRecord]
    step_failure: str | None
    checks: list[CheckResult]
    artifacts: dict[str, BundlePath | None]
    verdict: Verdict
    reasons: list[str]
    files: dict[BundlePath, Sha256] = Field(default_factory=dict)  # every other file's sha256 (set on write)

    @model_validator(mode="after")
    def _gate_verdict(self) -> Manifest:
        GateVerdict(verdict=self.verdict, reasons=self.reasons)
        return self

    @property
    def gate(self) -> GateVerdict:
        return GateVerdict(verdict=self.verdict, reasons=self.reasons)

    def to_json(self) -> str:
        """The bytes on disk: canonical JSON (sorted keys, two-space indent) and a newline."""
        return canonical_json(self.model_dump(mode="json"), indent=2) + "\n"

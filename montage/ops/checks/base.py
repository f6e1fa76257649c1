"""The check-kind contract: verdicts, judgements, the run context and the kind protocol."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from montage.core.files import canonical_json
from montage.ops import stats
from montage.ops.verdict import Verdict as Verdict  # re-exported: kinds import it from here


class KindParams(BaseModel):
    """Base of every kind's ``with:`` model: strict, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DecisionParams(KindParams):
    """The shared decision parameters of the statistical kinds (canary, perf_guard), declared once."""

    confidence: float = Field(stats.DEFAULT_CONFIDENCE, gt=0, lt=1, description="confidence of every interval")
    resamples: int = Field(stats.DEFAULT_RESAMPLES, ge=100, le=100_000, description="bootstrap resamples")
    seed: int = Field(0, description="bootstrap seed: the same evidence and seed give the same verdict")
    min_samples: int = Field(stats.DEFAULT_MIN_SAMPLES, ge=3, description="fewer samples per side: INCONCLUSIVE")

    def decision(self) -> stats.DecisionConfig:
        return stats.DecisionConfig(
            confidence=self.confidence, resamples=self.resamples, seed=self.seed, min_samples=self.min_samples
        )


class Judgement(BaseModel):
    """What a kind measured and decided.  ``evidence`` is relative to the evidence directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: Verdict
    value: Any = None
    expected: str
    reason: str
    evidence: list[str] = Field(default_factory=list)


@dataclass
class CheckContext:
    """Everything a kind may use while measuring."""

    repo_root: Path
    bundle_dir: Path  # root of the bundle being built (a temporary directory until it is complete)
    evidence_dir: Path  # this check's own directory inside the bundle; created before ``run``
    phase_id: int
    check_id: str
    timeout_s: float = 1800.0
    env: Mapping[str, str] | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # per-gate cache shared by kinds (e.g. AST parses)
    # A negative control's run (phase.selftest): a kind may stop at the first failure, which already
    # decides FAIL; a run without a failure is the whole run, so this never turns a PASS into a FAIL.
    fail_fast: bool = False

    def write_text(self, name: str, text: str) -> str:
        """Write an evidence file and return its name (relative to the evidence directory)."""
        path = self.evidence_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return name

    def write_json(self, name: str, data: Any) -> str:
        """Write JSON evidence deterministically (sorted keys) and return its name."""
        return self.write_text(name, canonical_json(data, indent=2) + "\n")


class CheckKind(Protocol):
    """What a kind module provides (see :mod:`montage.ops.checks`)."""

    Params: type[KindParams]

    def run(self, params: Any, ctx: CheckContext) -> Judgement: ...

    def rejudge(self, params: Any, evidence_dir: Path) -> Judgement: ...


def read_json(path: Path) -> Any:
    """Load stored JSON evidence; a missing or broken file raises ``EvidenceError``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvidenceError(f"evidence file {path.name} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvidenceError(f"evidence file {path.name} is not valid JSON ({exc})") from None


class EvidenceError(Exception):
    """Stored evidence is missing or unreadable; kinds turn it into an ERROR judgement."""


def present(evidence_dir: Path, names: list[str]) -> list[str]:
    """The evidence files among ``names`` that exist (a judgement lists only what is there)."""
    return [n for n in names if (evidence_dir / n).is_file()]


def error_judgement(expected: str, reason: str, evidence: list[str] | None = None) -> Judgement:
    return Judgement(verdict=Verdict.ERROR, value=None, expected=expected, reason=reason, evidence=evidence or [])


@dataclass(frozen=True)
class NegativeControl:
    """A minimal real change to the product (its code or its files) that must make a check fail.

    ``apply(tree, params)`` edits ``tree`` (a throwaway worktree, never the user's) and returns what it
    changed, or raises :class:`ControlNotApplicable` when this gate entry gives it nothing to change.
    ``expect``: the verdicts that prove the check can fail (FAIL; a kind adds INCONCLUSIVE only where
    that is the honest answer). ``fast``: cheap enough for every CI run (scans, pytest, command,
    file, log). ``built_in``: the kind runs this control itself on every run (stress), so
    ``phase.selftest`` reads the kind's own evidence instead of applying anything.
    """

    name: str
    description: str
    apply: Callable[[Path, Any], str] | None
    expect: tuple[Verdict, ...] = (Verdict.FAIL,)
    fast: bool = False
    built_in: bool = False


class ControlNotApplicable(Exception):
    """A kind's default control has nothing to change for this gate entry (the phase file must add one)."""


def control_file(tree: Path, rel: str, text: str) -> Path:
    """Write a control's file into ``tree`` (creating its directory) and return it."""
    path = tree / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path

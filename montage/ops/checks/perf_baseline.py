"""``perf_baseline``: perf_baseline.json exists and is a valid measured baseline.

The file is copied into the evidence as ``perf_baseline.json`` (the artifact phase 2's bundle
lists); the judgement re-validates the copy: schema, positive figures, at least three raw samples,
and top-level ``fps`` / ``rss_mb`` equal to the median / maximum of those samples (a hand-edited
figure fails). Capture one with ``nox -s perf -- --update-baseline``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import Field

from montage.errors import ValidationFailure
from montage.ops.checks import _controls as _c
from montage.ops.checks.base import CheckContext, Judgement, KindParams, NegativeControl, Verdict

EVIDENCE = "perf_baseline.json"


class Params(KindParams):
    path: str = Field("perf_baseline.json", min_length=1, description="baseline file, relative to the repository")


def run(params: Params, ctx: CheckContext) -> Judgement:
    source = ctx.repo_root / params.path
    if source.is_file():
        shutil.copyfile(source, ctx.evidence_dir / EVIDENCE)
    return rejudge(params, ctx.evidence_dir)


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    from montage.ops.perf import baseline

    expected = f"{params.path} is a valid perf baseline (schema {baseline.SCHEMA_VERSION}, figures match >= 3 raw runs)"
    path = evidence_dir / EVIDENCE
    if not path.is_file():
        return Judgement(
            verdict=Verdict.FAIL,
            value={"exists": False},
            expected=expected,
            reason=f"{params.path} does not exist; capture it with `nox -s perf -- --update-baseline`",
        )
    try:
        data, samples = baseline.load(path)
    except ValidationFailure as exc:
        return Judgement(
            verdict=Verdict.FAIL,
            value={"exists": True},
            expected=expected,
            reason=str(exc).replace(str(path), params.path),
            evidence=[EVIDENCE],
        )
    value = {
        "fps": data["fps"],
        "rss_mb": data["rss_mb"],
        "wall_fps": data["wall_fps"],
        "parent_rss_mb": data["parent_rss_mb"],
        "runs": len(samples),
        "cpu_fps_cv": data["summary"].get("cpu_fps", {}).get("cv"),
        "commit": data["commit"],
        "captured_at": data.get("captured_at"),
        "workload": data["fingerprint"].get("workload_kind"),
    }
    return Judgement(
        verdict=Verdict.PASS,
        value=value,
        expected=expected,
        reason=(
            f"fps {data['fps']:.2f} (CPU time), rss_mb {data['rss_mb']:.1f} from {len(samples)} runs "
            f"at {str(data['commit'])[:12]}"
        ),
        evidence=[EVIDENCE],
    )


CONTROLS = (NegativeControl("missing", "perf_baseline.json is absent", _c.missing_baseline, fast=True),)

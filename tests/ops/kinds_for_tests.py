"""A check kind that crashes: the one failure mode no real kind can be made to produce on demand."""

from __future__ import annotations

from pathlib import Path

from montage.ops.checks.base import CheckContext, Judgement, KindParams


class Params(KindParams):
    message: str = "boom"


def run(params: Params, ctx: CheckContext) -> Judgement:
    raise RuntimeError(params.message)


def rejudge(params: Params, evidence_dir: Path) -> Judgement:
    raise RuntimeError(params.message)

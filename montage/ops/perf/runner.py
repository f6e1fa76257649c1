"""Run a tree's workload: one prepared environment, any number of measured runs."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from montage.ops.perf.fingerprint import fingerprint, git_state
from montage.ops.perf.measure import RunSample, run_once
from montage.ops.perf.workload import Clip, Workload, ensure_clip, find_ffmpeg, find_ffprobe, load_workload


@dataclass(frozen=True)
class Side:
    """A tree whose code is measured, and the commit it holds."""

    name: str
    tree: Path
    commit: str
    dirty: bool
    workload: Workload

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tree": str(self.tree),
            "commit": self.commit,
            "dirty": self.dirty,
            "workload_kind": self.workload.kind,
            "workload": self.workload.spec,
        }


def make_side(name: str, tree: Path) -> Side:
    commit, dirty = git_state(tree)
    return Side(name=name, tree=tree.resolve(), commit=commit, dirty=dirty, workload=load_workload(tree))


@dataclass
class Runner:
    """Shared tools, reference clip and scratch directory for a series of runs."""

    ffmpeg: str
    ffprobe: str
    clip: Clip
    workdir: Path
    timeout: float = 120.0
    python: str = sys.executable

    @classmethod
    def prepare(cls, workdir: Path, *, timeout: float = 120.0) -> Runner:
        ffmpeg = find_ffmpeg()
        workdir = workdir.resolve()
        return cls(
            ffmpeg=ffmpeg,
            ffprobe=find_ffprobe(ffmpeg),
            clip=ensure_clip(workdir, ffmpeg),
            workdir=workdir,
            timeout=timeout,
        )

    def fingerprint(self, side: Side) -> dict[str, Any]:
        return fingerprint(ffmpeg=self.ffmpeg, clip=self.clip, workload=side.workload)

    def run(self, side: Side, *, warmup: bool = False) -> RunSample:
        """Render once with ``side``'s code (cwd and PYTHONPATH at its tree) and measure it."""
        out = self.workdir / f"out-{side.name}.mp4"
        plan = self.workdir / f"plan-{side.name}.json"
        if side.workload.kind == "montage-run":
            side.workload.materialise_plan(self.clip, plan)
        argv, env = side.workload.command(ffmpeg=self.ffmpeg, python=self.python, clip=self.clip, out=out, plan=plan)
        try:
            return run_once(
                argv,
                env=env,
                cwd=side.tree,
                output=out,
                ffprobe=self.ffprobe,
                expected_frames=side.workload.expected_frames,
                frame_tolerance=side.workload.frame_tolerance,
                side=side.name,
                commit=side.commit,
                timeout=self.timeout,
                warmup=warmup,
            )
        finally:
            # the output and what `montage run` writes beside it (timelines)
            for path in self.workdir.glob(f"out-{side.name}*"):
                path.unlink(missing_ok=True)
            plan.unlink(missing_ok=True)

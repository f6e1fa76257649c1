"""Run a tree's workload: one prepared environment, any number of measured runs."""

from __future__ import annotations

import shutil
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

    def run(self, side: Side, *, warmup: bool = False) -> list[RunSample]:
        """Run ``side``'s workload once, stage after stage (cwd and PYTHONPATH at its tree); one sample per stage."""
        stages = side.workload.stages(
            ffmpeg=self.ffmpeg, python=self.python, clip=self.clip, scratch=self.workdir, name=side.name
        )
        samples: list[RunSample] = []
        try:
            for stage in stages:
                samples.append(
                    run_once(
                        stage.argv,
                        env=stage.env,
                        cwd=side.tree,
                        output=stage.output,
                        ffprobe=self.ffprobe,
                        expected_frames=stage.expected_frames,
                        frame_tolerance=stage.frame_tolerance,
                        side=side.name,
                        commit=side.commit,
                        timeout=self.timeout,
                        warmup=warmup,
                        stage=stage.name,
                        count_output=stage.count_output,
                        rss_process=stage.rss_process,
                    )
                )
        finally:
            # outputs, plans, the analysis cache and what `montage run` writes beside its output (timelines)
            for pattern in (f"out-{side.name}*", f"plan-{side.name}*"):
                for path in self.workdir.glob(pattern):
                    path.unlink(missing_ok=True)
            shutil.rmtree(self.workdir / f"cache-{side.name}", ignore_errors=True)
        return samples

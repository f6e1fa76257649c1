"""The edit plan: a versioned JSON document that says exactly what gets rendered.

``montage run --plan-only`` writes it; ``montage run --from-plan PLAN`` renders exactly it (after
checking that every source still has the content hash the plan was made from).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from montage.errors import ValidationFailure

PLAN_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanSource(_Model):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    duration: float = Field(gt=0)
    has_audio: bool
    has_video: bool = True


class PlanSegment(_Model):
    source: int = Field(ge=0)
    start: float = Field(ge=0)
    end: float = Field(gt=0)
    role: Literal["hook", "build", "climax", "resolution"] = "build"
    score: float = 0.0
    reason: str = ""
    crop_x: float = Field(0.5, ge=0.0, le=1.0, description="horizontal centre of the crop window (0..1)")

    @model_validator(mode="after")
    def _ordered(self) -> PlanSegment:
        if self.end <= self.start:
            raise ValueError(f"segment end {self.end} must be after its start {self.start}")
        return self

    @property
    def duration(self) -> float:
        return self.end - self.start


class Caption(_Model):
    start: float = Field(ge=0)
    end: float = Field(gt=0)
    text: str = Field(min_length=1, max_length=500)


class Effects(_Model):
    fade_in: float = Field(0.5, ge=0, le=5)
    fade_out: float = Field(0.8, ge=0, le=5)
    crossfade: float = Field(0.0, ge=0, le=2, description="video/audio crossfade between segments (s)")
    edge_fade: float = Field(0.02, ge=0, le=0.5, description="audio micro-fade at each cut against clicks")
    framing: Literal["centre", "motion"] = "motion"
    captions: list[Caption] = Field(default_factory=list, description="burned-in captions, output timeline")


class Loudness(_Model):
    integrated: float = Field(-16.0, ge=-70, le=-5)
    true_peak: float = Field(-1.5, ge=-9, le=0)

    @model_validator(mode="before")
    @classmethod
    def _drop_lra(cls, data: Any) -> Any:
        # Plans written while loudnorm did the normalisation recorded its LRA target; one constant gain
        # keeps the source's loudness range, so there is no LRA target any more: read, then ignored.
        if isinstance(data, dict) and "lra" in data:
            data = {k: v for k, v in data.items() if k != "lra"}
        return data


class RenderSettings(_Model):
    aspect: Literal["16:9", "9:16"] = "16:9"
    width: int = Field(ge=16, le=7680)
    height: int = Field(ge=16, le=7680)
    fps: str = Field(pattern=r"^\d{1,6}/\d{1,6}$")
    preset: str = Field("veryfast", pattern=r"^(ultrafast|superfast|veryfast|faster|fast|medium|slow|slower|veryslow)$")
    crf: int = Field(23, ge=0, le=51)
    audio_bitrate: str = Field("160k", pattern=r"^\d{2,4}k$")
    loudness: Loudness = Loudness()

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"{value} must be even (H.264 4:2:0)")
        return value

    @property
    def fps_fraction(self) -> Fraction:
        return Fraction(self.fps)


class Selector(_Model):
    name: Literal["scorer", "anthropic", "gemini"] = "scorer"
    model: str | None = None
    fallback_reason: str | None = None
    cost_usd: float = 0.0


class EditPlan(_Model):
    version: Literal[1] = 1
    target_duration: float = Field(gt=0)
    sources: list[PlanSource] = Field(min_length=1)
    segments: list[PlanSegment] = Field(min_length=1)
    effects: Effects = Effects()
    render: RenderSettings
    selector: Selector = Selector()
    tools: dict[str, str | None] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _segments_fit(self) -> EditPlan:
        for i, seg in enumerate(self.segments):
            if seg.source >= len(self.sources):
                raise ValueError(f"segments[{i}].source={seg.source} but the plan has {len(self.sources)} source(s)")
            limit = self.sources[seg.source].duration
            if seg.end > limit + 0.05:
                raise ValueError(f"segments[{i}].end={seg.end} is beyond the source's duration {limit}")
        return self

    @model_validator(mode="after")
    def _crossfade_fits(self) -> EditPlan:
        shortest = min(s.duration for s in self.segments)
        if len(self.segments) > 1 and self.effects.crossfade > shortest / 2:
            raise ValueError(
                f"effects.crossfade={self.effects.crossfade} is longer than half the shortest segment "
                f"({shortest:.3f} s)"
            )
        return self

    @property
    def duration(self) -> float:
        """Duration of the rendered montage."""
        total = sum(s.duration for s in self.segments)
        return total - self.effects.crossfade * (len(self.segments) - 1)

    def dump(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def load_plan(path: Path) -> EditPlan:
    """Read and validate a plan; problems name the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ValidationFailure("edit plan does not exist", path=str(path)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailure(f"cannot read edit plan: {exc}", path=str(path)) from exc
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailure(
            f"not valid JSON: {exc.msg}", path=str(path), line=exc.lineno, column=exc.colno
        ) from exc
    if isinstance(data, dict) and data.get("version") not in (None, PLAN_VERSION):
        raise ValidationFailure(
            f"plan version {data.get('version')!r} is not supported; expected {PLAN_VERSION}", path=str(path)
        )
    try:
        return EditPlan.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()[:5]
        )
        raise ValidationFailure(f"invalid edit plan: {problems}", path=str(path)) from exc

"""Loudness normalisation of the montage's mix: one constant gain, a true-peak limiter only when needed.

ffmpeg's ``loudnorm`` is not used for the gain.  Its ``linear=true`` is a request, not a mode: it
silently runs dynamic (a 3 s AGC) whenever the measured LRA is above the target LRA, is exactly 0
(as it is for any montage of about 3 s: one short-term block), or the gain would push the true
peak over the ceiling; and an input shorter than 3 s takes yet another path whose fallback gain
subtracts linear amplitudes.  On short, quiet, dynamic real recordings those paths missed the
target by 1 to 22 LU (and feeding the first pass's ``target_offset`` into a second pass that took a
different path adds the difference on top).  So:

1. the exact mix the render normalises (segments cut, downmixed to stereo 48 kHz, faded, joined)
   is measured with ``ebur128`` (integrated loudness and true peak, 4x oversampled);
2. the gain is ``target - integrated``; when ``true peak + gain`` stays under the ceiling that gain
   is all there is (one ``volume`` filter: the loudness range is kept, nothing pumps);
3. otherwise the gained signal goes through a lookahead limiter at 192 kHz (so it limits true
   peaks, not only sample peaks) and the chain is measured again: the limiter takes loudness off,
   so the gain is raised by the shortfall and measured once more.  When that does not land within
   :data:`LANDING_LU`, or the limiter would have to take more than :data:`MAX_LIMITING_DB` off the
   peaks, the run is refused before anything is rendered: the target cannot be reached under the
   ceiling without destroying the audio.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from montage.errors import UsageError

SILENT_LUFS = -70.0
LANDING_LU = 0.25  # how close the measured chain must land before rendering (the check allows 1 LU)
MAX_LIMITING_DB = 20.0  # more peak reduction than this is not normalisation any more
LIMITER_RATE = 192000  # limit at 4x oversampling, i.e. true peaks
LIMITER_PASSES = 3  # measurements of the limited chain (each an audio-only pass)

_SUMMARY_RE = re.compile(r"Summary:(?P<body>.*?)(?=\[Parsed_|\Z)", re.S)
_I_RE = re.compile(r"Integrated loudness:\s*\n\s*I:\s*(-?[\d.]+|-inf|nan)\s*LUFS")
_LRA_RE = re.compile(r"Loudness range:\s*\n\s*LRA:\s*(-?[\d.]+|-inf|nan)\s*LU")
_TP_RE = re.compile(r"True peak:\s*\n\s*Peak:\s*(-?[\d.]+|-inf|nan)\s*dBFS")


@dataclass(frozen=True)
class LoudnessMeasurement:
    """``ebur128``'s summary of one signal: integrated LUFS, loudness range LU, true peak dBTP."""

    input_i: float
    input_tp: float
    input_lra: float

    @property
    def silent(self) -> bool:
        return not math.isfinite(self.input_i) or self.input_i <= SILENT_LUFS


@dataclass(frozen=True)
class Normalisation:
    """What the render applies to the mix: ``gain_db``, then the limiter at ``ceiling_db`` if ``limit``."""

    source: LoudnessMeasurement  # the mix before any gain
    gain_db: float
    limit: bool
    ceiling_db: float
    expected: LoudnessMeasurement | None  # the last measurement of the limited chain (None: linear)

    @property
    def silent(self) -> bool:
        return self.source.silent


def _value(pattern: re.Pattern[str], text: str) -> float:
    found = pattern.findall(text)
    if not found or found[-1] in {"-inf", "nan"}:
        return -math.inf
    return float(found[-1])


def parse_ebur128(stderr: str) -> LoudnessMeasurement:
    """The last ``ebur128`` summary in ``stderr`` (ffmpeg may print one per graph configuration)."""
    summaries = _SUMMARY_RE.findall(stderr)
    text = summaries[-1] if summaries else stderr
    return LoudnessMeasurement(
        input_i=_value(_I_RE, text), input_tp=_value(_TP_RE, text), input_lra=max(0.0, _value(_LRA_RE, text))
    )


def apply(audio: Any, gain_db: float, limit: bool, ceiling_db: float) -> Any:
    """The normalisation filters on an ffmpeg-python audio stream (stereo 48 kHz in and out)."""
    audio = audio.filter("volume", f"{gain_db:.2f}dB", precision="double")
    if limit:
        audio = audio.filter("aresample", LIMITER_RATE)
        audio = audio.filter(
            "alimiter", limit=f"{10 ** (ceiling_db / 20):.6f}", attack=5, release=80, level=0, latency=1
        )
        audio = audio.filter("aresample", 48000)
    return audio


Measure = Callable[[float | None, bool], LoudnessMeasurement]
"""Measures the mix after ``gain_db`` (None: untouched) and the limiter (bool)."""


def normalisation(measure: Measure, target_lufs: float, ceiling_db: float) -> Normalisation:
    """Decide the gain (and whether to limit) from measurements of the mix; see the module docstring."""
    source = measure(None, False)
    if source.silent:
        return Normalisation(source, 0.0, False, ceiling_db, None)
    gain = target_lufs - source.input_i
    if source.input_tp + gain <= ceiling_db:
        return Normalisation(source, round(gain, 2), False, ceiling_db, None)
    result = None
    for _ in range(LIMITER_PASSES):
        _refuse_if_crushing(source, gain, target_lufs, ceiling_db)
        result = measure(gain, True)
        miss = target_lufs - result.input_i
        if abs(miss) <= LANDING_LU:
            return Normalisation(source, round(gain, 2), True, ceiling_db, result)
        gain += miss
    _refuse_if_crushing(source, gain, target_lufs, ceiling_db)
    reached = "silence" if result is None or result.silent else f"{result.input_i:.1f} LUFS"
    raise UsageError(
        f"The montage's audio cannot reach {target_lufs:g} LUFS under the {ceiling_db:g} dBTP true-peak ceiling: "
        f"it measures {source.input_i:.1f} LUFS with peaks at {source.input_tp:.1f} dBTP, and with the peaks "
        f"limited it reaches {reached}.",
        hint="Lower the target (--loudness) or raise the ceiling (setting media.true_peak_db).",
    )


def _refuse_if_crushing(source: LoudnessMeasurement, gain: float, target_lufs: float, ceiling_db: float) -> None:
    reduction = source.input_tp + gain - ceiling_db
    if reduction > MAX_LIMITING_DB:
        raise UsageError(
            f"The montage's audio cannot reach {target_lufs:g} LUFS under the {ceiling_db:g} dBTP true-peak ceiling: "
            f"it measures {source.input_i:.1f} LUFS with peaks at {source.input_tp:.1f} dBTP, so its peaks would "
            f"have to be limited by {reduction:.1f} dB (at most {MAX_LIMITING_DB:g} dB is allowed).",
            hint="Lower the target (--loudness) or raise the ceiling (setting media.true_peak_db).",
        )

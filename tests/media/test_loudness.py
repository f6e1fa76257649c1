"""The gain decision of montage.media.loudness on given measurements (the ffmpeg side is in test_loudness_real)."""

from __future__ import annotations

import pytest

from montage.errors import ExitCode, UsageError
from montage.media.loudness import LoudnessMeasurement, normalisation, parse_ebur128

SUMMARY = """[Parsed_ebur128_0 @ 0x1] Summary:

  Integrated loudness:
    I:         -34.0 LUFS
    Threshold: -47.9 LUFS

  Loudness range:
    LRA:         3.0 LU
    Threshold: -57.5 LUFS
    LRA low:   -40.3 LUFS
    LRA high:  -37.3 LUFS

  True peak:
    Peak:      -18.0 dBFS
"""


def test_parse_ebur128_reads_the_last_summary() -> None:
    first = SUMMARY.replace("-34.0 LUFS", "-70.0 LUFS")
    assert parse_ebur128(first + SUMMARY) == LoudnessMeasurement(-34.0, -18.0, 3.0)
    assert parse_ebur128(SUMMARY.replace("-34.0", "-inf")).silent


def _measurer(source: LoudnessMeasurement, limited_loss: float) -> tuple[list[tuple[float | None, bool]], object]:
    """Measurements of a chain whose limiter takes ``limited_loss`` LU off (recorded calls)."""
    calls: list[tuple[float | None, bool]] = []

    def measure(gain: float | None, limit: bool) -> LoudnessMeasurement:
        calls.append((gain, limit))
        if gain is None:
            return source
        return LoudnessMeasurement(source.input_i + gain - (limited_loss if limit else 0.0), -1.5, 2.0)

    return calls, measure


def test_linear_when_the_peaks_stay_under_the_ceiling() -> None:
    calls, measure = _measurer(LoudnessMeasurement(-30.0, -20.0, 4.0), 0.0)
    result = normalisation(measure, -16.0, -1.5)  # type: ignore[arg-type]
    assert (result.gain_db, result.limit) == (14.0, False) and calls == [(None, False)]


def test_limited_chain_is_measured_and_corrected() -> None:
    calls, measure = _measurer(LoudnessMeasurement(-34.0, -10.0, 15.0), 1.2)
    result = normalisation(measure, -16.0, -1.5)  # type: ignore[arg-type]
    assert result.limit and result.gain_db == pytest.approx(18.0 + 1.2)
    assert calls == [(None, False), (18.0, True), (pytest.approx(19.2), True)]


def test_refused_when_the_peaks_would_need_more_than_20_db_of_limiting() -> None:
    _, measure = _measurer(LoudnessMeasurement(-40.0, 0.0, 2.0), 0.0)
    with pytest.raises(UsageError) as info:
        normalisation(measure, -8.0, -1.5)  # type: ignore[arg-type]
    assert "-1.5 dBTP true-peak ceiling" in str(info.value) and "33.5 dB" in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE


def test_silence_gets_no_gain() -> None:
    _, measure = _measurer(LoudnessMeasurement(float("-inf"), float("-inf"), 0.0), 0.0)
    result = normalisation(measure, -16.0, -1.5)  # type: ignore[arg-type]
    assert result.silent and result.gain_db == 0.0

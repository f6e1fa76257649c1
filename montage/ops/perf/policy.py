"""Where the guard's thresholds and on/off switch come from: phase 7's file and the flags file.

* Thresholds: the ``with`` mapping of the ``perf_guard`` entry in the gate of ``phases/07-*.yaml``
  (read by the strict phase loader), validated as the kind's ``Params`` (``max_fps_drop``,
  ``max_rss_growth``, fractions); defaults -10 % fps, +15 % RSS when absent.
* Switch: phase 7's rollback ("disable the perf CI job") is a ``set_flag PERF_GUARD_ENABLED false``
  step; the flags file is what ``nox -s perf`` / ``invoke perf.guard`` read before measuring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from montage.core.flags import file_enabled
from montage.errors import ValidationFailure
from montage.ops.checks.perf_guard import Params
from montage.ops.loader import parse_phase
from montage.ops.model import describe_errors

FLAG = "PERF_GUARD_ENABLED"
PHASE_GLOB = "07-*.yaml"
CHECK_KIND = "perf_guard"


def thresholds_from_params(params: dict[str, Any], where: str) -> Params:
    """Validate a ``with`` mapping as the perf_guard kind's Params (unknown keys, bad values: errors)."""
    try:
        return Params.model_validate(params)
    except ValidationError as exc:
        raise ValidationFailure(
            f"perf_guard: {describe_errors(exc)}; expected the parameters of the perf_guard check kind "
            f"({', '.join(Params.model_fields)}).",
            path=where,
        ) from None


def thresholds_from_phases(phases_dir: Path) -> tuple[Params, str]:
    """Phase 7's perf_guard parameters (read with the strict phase loader) and where they came from."""
    files = sorted(phases_dir.glob(PHASE_GLOB))
    if not files:
        return Params(), f"defaults (no {phases_dir}/{PHASE_GLOB})"
    path = files[0]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValidationFailure(f"cannot be read ({exc.strerror}).", path=str(path)) from None
    phase = parse_phase(path, raw).phase
    for entry in phase.gate:
        if entry.check == CHECK_KIND:
            return thresholds_from_params(entry.with_, str(path)), f"{path} (gate {entry.id})"
    return Params(), f"defaults ({path} has no {CHECK_KIND} gate entry)"


def guard_enabled(flags_file: Path) -> bool:
    """False only when the flags file sets PERF_GUARD_ENABLED to false (phase 7's rollback)."""
    return file_enabled(flags_file, FLAG)

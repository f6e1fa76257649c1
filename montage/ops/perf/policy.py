"""Where the guard's thresholds and on/off switch come from: phase 7's file and the flags file.

* Thresholds: the ``with`` mapping of the ``perf_guard`` entry in the gate of ``phases/07-*.yaml``
  (``max_fps_drop``, ``max_rss_growth``, fractions); defaults -10 % fps, +15 % RSS when absent.
* Switch: phase 7's rollback ("disable the perf CI job") is a ``set_flag PERF_GUARD_ENABLED false``
  step; the flags file is what ``nox -s perf`` / ``invoke perf.guard`` read before measuring.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from montage.core.flags import file_enabled
from montage.errors import ValidationFailure
from montage.ops.perf.guard import Thresholds

FLAG = "PERF_GUARD_ENABLED"
PHASE_GLOB = "07-*.yaml"
CHECK_KIND = "perf_guard"


def thresholds_from_params(params: dict[str, Any], where: str) -> Thresholds:
    """Validate a ``with`` mapping (unknown keys and out-of-range values are errors)."""
    allowed = {"max_fps_drop", "max_rss_growth"}
    # the other keys of the perf_guard check kind's parameters (montage/ops/checks/perf_guard.py)
    others = {"baseline", "baseline_file", "budget_s", "seed", "timeout_s"}
    unknown = sorted(set(params) - allowed - others)
    if unknown:
        raise ValidationFailure(
            f"perf_guard: unknown parameter(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}, "
            f"{', '.join(sorted(others))}.",
            path=where,
        )
    values: dict[str, float] = {}
    for name in sorted(allowed & set(params)):
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValidationFailure(f"perf_guard: {name} is {value!r}; expected a fraction such as 0.10.", path=where)
        if not 0.0 < float(value) < 1.0:
            raise ValidationFailure(f"perf_guard: {name} is {value!r}; expected a fraction in (0, 1).", path=where)
        values[name] = float(value)
    return Thresholds(**values)


def thresholds_from_phases(phases_dir: Path) -> tuple[Thresholds, str]:
    """Phase 7's perf_guard thresholds and where they came from."""
    import yaml

    files = sorted(phases_dir.glob(PHASE_GLOB))
    if not files:
        return Thresholds(), f"defaults (no {phases_dir}/{PHASE_GLOB})"
    path = files[0]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValidationFailure(f"not valid YAML ({exc}).", path=str(path)) from None
    gate = data.get("gate") if isinstance(data, dict) else None
    for entry in gate if isinstance(gate, list) else []:
        if isinstance(entry, dict) and entry.get("check") == CHECK_KIND:
            params = entry.get("with") or {}
            if not isinstance(params, dict):
                raise ValidationFailure("perf_guard: 'with' must be a mapping.", path=str(path))
            return thresholds_from_params(params, str(path)), f"{path} (gate {entry.get('id', CHECK_KIND)!s})"
    return Thresholds(), f"defaults ({path} has no {CHECK_KIND} gate entry)"


def guard_enabled(flags_file: Path) -> bool:
    """False only when the flags file sets PERF_GUARD_ENABLED to false (phase 7's rollback)."""
    return file_enabled(flags_file, FLAG)

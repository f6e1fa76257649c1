"""The one verdict type of the toolkit: statistics, checks, canary SLOs and gates all use it.

A check (and a statistical decision) is PASS / FAIL / INCONCLUSIVE / ERROR; a gate is PASS / FAIL /
PARTIAL.  Never PASS by default: missing data is INCONCLUSIVE.  Stdlib only (imported by
:mod:`montage.ops.stats`).
"""

from __future__ import annotations

import enum


class Verdict(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    PARTIAL = "PARTIAL"  # a gate (or a canary) with something undecided and nothing critical failed
    INCONCLUSIVE = "INCONCLUSIVE"  # nothing could be decided: not measured, too few samples
    ERROR = "ERROR"  # the measurement itself failed (a crash, a missing tool, unreadable evidence)


CHECK_VERDICTS = frozenset({Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.ERROR})
GATE_VERDICTS = frozenset({Verdict.PASS, Verdict.FAIL, Verdict.PARTIAL})

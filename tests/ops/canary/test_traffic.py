"""The canary's request schedule: every job is sent whether time or the request count runs out first."""

from __future__ import annotations

import pytest

from montage.ops.canary.traffic import kind_at


def _schedule(seconds_per_request: float, requests: int = 2000, jobs: int = 4, window_s: float = 35.0) -> list[int]:
    submitted, at = 0, []
    for i in range(requests):
        elapsed = i * seconds_per_request
        if elapsed > window_s:
            break
        if kind_at(i, elapsed, submitted, jobs, window_s, requests) in ("submit", "upload"):
            submitted += 1
            at.append(i)
    return at


@pytest.mark.parametrize("seconds_per_request", [0.002, 0.0175, 0.1])
def test_every_job_is_submitted_on_a_fast_and_on_a_slow_machine(seconds_per_request: float) -> None:
    # a quiet machine answers 2000 requests in 4 s, long before 35 s: the jobs must not wait for the clock
    at = _schedule(seconds_per_request)
    assert len(at) == 4, at
    assert at[0] == 0


def test_submissions_alternate_json_and_upload() -> None:
    kinds = [kind_at(n * 500, 0.0, n, 4, 35.0, 2000) for n in range(4)]
    assert kinds == ["submit", "upload", "submit", "upload"]

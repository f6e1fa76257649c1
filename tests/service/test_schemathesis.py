"""Property-based API runs (schemathesis) against the committed openapi.json, over real HTTP.

The app runs without workers; fixed seed (derandomized Hypothesis), bounded examples, explicit
checks: no 5xx, documented status codes, documented content types, bodies matching the schema, and
negative data (values the schema forbids) rejected with a 4xx.  The stateful run chains calls through
the links schemathesis infers from the schema (create a job, then read it; create a key, then delete it)
and adds the stateful checks (a deleted resource stays gone, a created one is available).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)

from tests.service.conftest import Live

ROOT = Path(__file__).resolve().parents[2]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
STATEFUL_CHECKS = [*CHECKS, use_after_free, ensure_resource_availability]
EXAMPLES = 15
STATEFUL_EXAMPLES = 10

pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_5xx_and_no_schema_violations(live: Live) -> None:
    raw = json.loads((ROOT / "openapi.json").read_text())
    schema = schemathesis.openapi.from_dict(raw)
    (live.tmp_path / "media" / "clip.mp4").write_bytes(b"x" * 100)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 15
    calls = 0
    no_negative_space: set[str] = set()
    for operation in operations:
        spec = raw["paths"][operation.path][operation.method.lower()]
        has_inputs = bool(spec.get("parameters") or spec.get("requestBody"))
        # Negative data needs something to break: operations without inputs only get positive cases.
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_inputs else (GenerationMode.POSITIVE,)
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(base_url=live.base_url, headers=live.admin, checks=CHECKS, timeout=30)

            try:
                run()
            except Unsatisfiable:
                if mode is not GenerationMode.NEGATIVE:
                    raise
                no_negative_space.add(operation.path)
    assert calls >= len(operations) * 3
    # Public routes take anonymous calls (security `{}`), and any string is a valid job id: nothing to break.
    assert no_negative_space <= {f"/v1/public/jobs/{{job_id}}{tail}" for tail in ("", "/plan", "/result")}


def stateful_run(base_url: str, headers: dict[str, str]) -> list[tuple[str, str, int]]:
    """The stateful run against ``base_url``: every (method, path, status) it made; a check's failure raises."""
    raw = json.loads((ROOT / "openapi.json").read_text())
    schema = schemathesis.openapi.from_dict(raw)
    machine = schema.as_state_machine()
    calls: list[tuple[str, str, int]] = []

    class Stateful(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"base_url": base_url, "headers": headers, "timeout": 30}

        def validate_response(self, response: object, case: schemathesis.Case, **kwargs: object) -> None:
            calls.append((case.method, case.path, response.status_code))  # type: ignore[attr-defined]
            case.validate_response(response, checks=STATEFUL_CHECKS, transport_kwargs=kwargs)  # type: ignore[arg-type]

    Stateful.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=6,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    return calls


def test_schemathesis_stateful_run_finds_no_5xx_and_no_schema_violations(live: Live) -> None:
    """In a fresh interpreter: which transitions a derandomized stateful run takes depends on state
    schemathesis keeps across runs in one process (caches, its resource registry). In-process, after
    the module's first test (or within tests/service), the run never read back a created job, every
    time and whatever PYTHONHASHSEED; alone it did. A fresh process makes the run the same in every
    order, so the assertions below are about the product, not about what ran before."""
    import subprocess
    import sys

    (live.tmp_path / "media" / "clip.mp4").write_bytes(b"x" * 100)
    code = (
        "import json, sys\n"
        "from tests.service.test_schemathesis import stateful_run\n"
        "print(json.dumps(stateful_run(sys.argv[1], json.loads(sys.argv[2]))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, live.base_url, json.dumps(live.admin)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    seen = {(method, path, status) for method, path, status in json.loads(done.stdout.strip().splitlines()[-1])}
    # The run followed inferred links: a job it created was read back, a key it created was deleted.
    # Without links every job id is random, and a fault behind an existing resource stays unseen.
    assert ("GET", "/v1/public/jobs/{job_id}", 200) in seen, sorted(seen)
    assert ("DELETE", "/v1/admin/keys/{key_id}", 204) in seen, sorted(seen)
    assert ("POST", "/v1/public/jobs", 202) in seen, sorted(seen)

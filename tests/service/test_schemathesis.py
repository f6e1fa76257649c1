"""Property-based API run (schemathesis) against the committed openapi.json, over real HTTP.

The app runs without workers; fixed seed (derandomized Hypothesis), bounded examples, explicit
checks: no 5xx, documented status codes, documented content types, bodies matching the schema.
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
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.conftest import Live

ROOT = Path(__file__).resolve().parents[2]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 15

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

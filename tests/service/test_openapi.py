"""openapi.json is committed; the app's schema must not drift from it."""

from __future__ import annotations

from pathlib import Path

from montage.service.openapi import REGENERATE, current_schema, render

ROOT = Path(__file__).resolve().parents[2]


def test_committed_openapi_matches_the_app() -> None:
    committed = (ROOT / "openapi.json").read_text(encoding="utf-8")
    assert render(current_schema()) == committed, f"openapi.json is stale; regenerate it with `{REGENERATE}`"


def test_schema_lists_the_issue_routes() -> None:
    paths = current_schema()["paths"]
    expected = {
        ("get", "/v1/public/health"), ("get", "/v1/public/ready"), ("post", "/v1/public/jobs"),
        ("get", "/v1/public/jobs/{job_id}"), ("get", "/v1/public/jobs/{job_id}/result"),
        ("get", "/v1/public/jobs/{job_id}/plan"), ("get", "/v1/admin/jobs"),
        ("post", "/v1/admin/jobs/{job_id}/cancel"), ("post", "/v1/admin/jobs/{job_id}/retry"),
        ("get", "/v1/admin/flags"), ("put", "/v1/admin/flags/{name}"), ("get", "/v1/admin/config"),
        ("get", "/v1/admin/stats"), ("post", "/v1/admin/keys"), ("delete", "/v1/admin/keys/{key_id}"),
    }  # fmt: skip
    assert {(m, p) for p, ops in paths.items() for m in ops} == expected

"""The committed OpenAPI document (openapi.json) and how to regenerate it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REGENERATE = "montage serve --write-openapi openapi.json"


def current_schema() -> dict[str, Any]:
    """The app's OpenAPI schema (built from default settings; no database is opened)."""
    from montage.service.app import create_app
    from montage.settings import load_settings

    # An in-memory URL: building the app creates an engine but never connects (the lifespan does not run).
    loaded = load_settings(
        overrides={"db": {"url": "sqlite+aiosqlite:///:memory:"}},
        environ={"USE_SETTINGS_V2": "true", "MONTAGE_ENV_FILE": "/nonexistent"},
    )
    return create_app(loaded).openapi()


def allow_anonymous(schema: dict[str, Any], prefix: str = "/v1/public/") -> dict[str, Any]:
    """Mark the key on ``prefix`` routes optional: ``{}`` among the requirements means "or no key".

    FastAPI lists the API-key schemes of every route that reads them, so the public routes looked
    key-only although they take anonymous calls unless ``service.require_key_for_public`` is set.
    """
    for path, item in schema.get("paths", {}).items():
        if not path.startswith(prefix):
            continue
        for op in item.values():
            security = op.get("security")
            if isinstance(security, list) and security and {} not in security:
                op["security"] = [{}, *security]
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write(path: Path) -> None:
    from montage.core.files import atomic_write_text

    atomic_write_text(path, render(current_schema()))

"""`montage admin create-key|list-keys|revoke-key` against a real SQLite database, then over HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from montage.cli import main
from tests.service.conftest import Live


def test_create_list_revoke_key(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "--url", live.db_url, "create-key", "--name", "deploy bot", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith("mtg_") and created["name"] == "deploy bot"
    assert live.client.get("/v1/admin/stats", headers={"X-API-Key": created["key"]}).status_code == 200

    assert main(["admin", "--url", live.db_url, "list-keys"]) == 0
    listing = capsys.readouterr().out
    assert created["id"] in listing and "deploy bot" in listing and created["key"] not in listing

    assert main(["admin", "--url", live.db_url, "revoke-key", created["id"]]) == 0
    capsys.readouterr()
    resp = live.client.get("/v1/admin/stats", headers={"Authorization": f"Bearer {created['key']}"})
    assert resp.status_code == 403

    assert main(["admin", "--url", live.db_url, "revoke-key", "nope"]) == 2
    assert "no API key with id 'nope'" in capsys.readouterr().err


def test_create_key_plain_output_shows_key_once(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "--url", live.db_url, "create-key", "--name", "ops"]) == 0
    key, note = capsys.readouterr().out.splitlines()
    assert key.startswith("mtg_") and "shown once" in note
    assert httpx.get(f"{live.base_url}/v1/admin/flags", headers={"X-API-Key": key}).status_code == 200

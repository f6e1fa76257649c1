"""Adversarial input to the HTTP API over real HTTP: a client's mistake is a 4xx, never a 5xx or a leak.

Each case is one an adversarial review found mishandled (issue 12) or a close cousin of one.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from montage.service.openapi import current_schema
from tests.service.conftest import Live, wait_for


def _error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    return dict(resp.json()["error"])


def _no_media_root(live: Live, body: dict[str, Any]) -> None:
    root = str((live.tmp_path / "media").resolve())
    assert root not in body["message"] and str(live.tmp_path) not in body["message"], body


def test_path_component_over_name_max_is_400_not_503(live: Live) -> None:
    body = _error(live.client.post("/v1/public/jobs", json={"path": "a" * 300 + ".mp4", "duration": 5}), 400)
    assert "too long" in body["message"]
    _no_media_root(live, body)
    body = _error(live.client.post("/v1/public/jobs", json={"path": "d/" + "b" * 256 + "/c.mp4", "duration": 5}), 400)
    # The database is fine: /ready must still say so (the old code blamed it).
    assert live.client.get("/v1/public/ready").status_code == 200


def test_symlink_loop_inside_the_media_root_is_400_not_500(live: Live) -> None:
    media = live.tmp_path / "media"
    (media / "loop-a.mp4").symlink_to(media / "loop-b.mp4")
    (media / "loop-b.mp4").symlink_to(media / "loop-a.mp4")
    (media / "self.mp4").symlink_to(media / "self.mp4")
    for name in ("loop-a.mp4", "self.mp4", "self.mp4/x.mp4"):
        body = _error(live.client.post("/v1/public/jobs", json={"path": name, "duration": 5}), 400)
        assert "symlink loop" in body["message"] or "not a file" in body["message"], body
        _no_media_root(live, body)


@pytest.mark.parametrize("path", ["../outside.mp4", "/etc/passwd", "missing.mp4", "."])
def test_path_errors_do_not_name_the_absolute_media_root(live: Live, path: str) -> None:
    body = _error(live.client.post("/v1/public/jobs", json={"path": path, "duration": 5}), 400)
    assert repr(path) in body["message"]
    _no_media_root(live, body)


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"path": "a.mp4", "duration": 5', b"\xff\xfe"])
def test_unparsable_json_is_400(live: Live, raw: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    assert _error(live.client.post("/v1/public/jobs", content=raw, headers=headers), 400)["code"] == "invalid_json"
    resp = live.client.put("/v1/admin/flags/SOME_FLAG", content=raw, headers={**headers, **live.admin})
    assert _error(resp, 400)["code"] == "invalid_json"


def test_valid_json_of_the_wrong_shape_stays_422(live: Live) -> None:
    for body in ([], {"path": "a.mp4"}, {"path": "a.mp4", "duration": "soon"}, {"path": 5, "duration": 5}):
        _error(live.client.post("/v1/public/jobs", json=body), 422)


@pytest.mark.parametrize("duration", [True, False, "NaN", "Infinity"])
def test_duration_must_be_a_real_number(live: Live, duration: Any) -> None:
    (live.tmp_path / "media" / "clip.mp4").write_bytes(b"x")
    raw = '{"path": "clip.mp4", "duration": %s}' % (
        "true" if duration is True else "false" if duration is False else duration
    )
    resp = live.client.post("/v1/public/jobs", content=raw, headers={"Content-Type": "application/json"})
    _error(resp, 422)
    assert live.client.get("/v1/admin/jobs", headers=live.admin).json()["jobs"] == []


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_flag_values_are_rejected_not_stored(live: Live, token: str) -> None:
    headers = {"Content-Type": "application/json", **live.admin}
    resp = live.client.put("/v1/admin/flags/SUBMISSIONS_PAUSED", content='{"value": ' + token + "}", headers=headers)
    _error(resp, 422)
    assert "SUBMISSIONS_PAUSED" not in live.client.get("/v1/admin/flags", headers=live.admin).json()["flags"]
    # control: the same route stores a valid value (every registered flag is a boolean)
    assert (
        live.client.put("/v1/admin/flags/SUBMISSIONS_PAUSED", json={"value": False}, headers=live.admin).status_code
        == 200
    )


def test_public_routes_allow_anonymous_calls_in_the_openapi_document() -> None:
    schema = current_schema()
    for path, item in schema["paths"].items():
        for method, op in item.items():
            security = op.get("security", [])
            if path.startswith("/v1/public/"):
                # Anonymous is allowed (service.require_key_for_public is off by default): `{}` says so.
                assert security == [] or {} in security, (method, path, security)
            elif path.startswith("/v1/admin/"):
                assert security and {} not in security, (method, path, security)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured_logs() -> Iterator[_Capture]:
    handler = _Capture()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "montage.service", "")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


_PARTIAL_BODIES = {
    "application/json": b'{"path": "a.mp4", ',
    "multipart/form-data; boundary=xyz": b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
    b"Content-Type: video/mp4\r\n\r\n" + b"\0" * 2000,
}


def _hang_up_mid_body(base_url: str, path: str, content_type: str) -> None:
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: 100000\r\n\r\n"
        sock.sendall(head.encode() + _PARTIAL_BODIES[content_type])
        time.sleep(0.3)  # let the server start reading the body
    # closed here, tens of kilobytes short


def _status_counts(text: str, route: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("http_request_duration_seconds_count{") and f'route="{route}"' in line:
            status = line.split('status="')[1].split('"')[0]
            counts[status] = counts.get(status, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def test_client_hanging_up_mid_request_is_not_a_5xx_nor_a_traceback(live: Live, captured_logs: _Capture) -> None:
    for content_type in _PARTIAL_BODIES:
        _hang_up_mid_body(live.base_url, "/v1/public/jobs", content_type)
    counts = wait_for(
        lambda: (
            (c := _status_counts(live.client.get("/metrics").text, "/v1/public/jobs")) and sum(c.values()) >= 2 and c
        ),
        10,
        "both hang-ups to be counted",
    )
    assert counts == {"499": 2.0}, counts
    tracebacks = [r for r in captured_logs.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
    assert live.client.get("/v1/public/health").status_code == 200

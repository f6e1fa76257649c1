"""The LLM selector against a real HTTP server on loopback serving the providers' documented shapes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from montage.media import llm
from montage.media.analysis import Analysis
from montage.media.story_beats import select
from montage.settings import LlmSettings

FIXTURES = Path(__file__).parent / "fixtures"


class Provider:
    """Replies queued per test; records each request's path, headers and JSON body."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, Any]] = []
        self.requests: list[dict[str, Any]] = []


@pytest.fixture
def provider() -> Iterator[tuple[Provider, str]]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status, payload = state.replies.pop(0) if state.replies else (500, {"error": "no reply queued"})
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _candidates() -> tuple[list[Any], list[Any]]:
    n = 120
    analysis = Analysis(
        duration=60.0, window_s=0.5, has_audio=True, has_video=True,
        loudness=[-20.0 + (i % 9) for i in range(n)], motion=[float(i % 5) for i in range(n)], scene=[0.0] * n,
        motion_x=[0.5] * n, scene_cuts=[8.0, 16.0, 24.0, 32.0, 40.0, 48.0],
    )  # fmt: skip
    chosen, cands = select([analysis], 12.0)
    return chosen, cands


def _anthropic_reply(segments: Any) -> dict[str, Any]:
    data = json.loads((FIXTURES / "anthropic_messages_tool_use.json").read_text())
    data["content"][0]["input"]["segments"] = segments
    return data


def _gemini_reply(answer: Any) -> dict[str, Any]:
    data = json.loads((FIXTURES / "gemini_generate_content.json").read_text())
    data["candidates"][0]["content"]["parts"][0]["text"] = answer if isinstance(answer, str) else json.dumps(answer)
    return data


def _settings(provider_name: str, base: str, **extra: Any) -> LlmSettings:
    key = {"anthropic_api_key": SecretStr("sk-test")} if provider_name == "anthropic" else {}
    if provider_name == "gemini":
        key = {"gemini_api_key": SecretStr("g-test")}
    return LlmSettings(provider=provider_name, base_url=base, timeout_s=5, max_retries=1, **key, **extra)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm, "BACKOFF_S", 0.0)


def test_anthropic_tool_answer_is_used(provider: tuple[Provider, str]) -> None:
    state, base = provider
    fallback, cands = _candidates()
    shortlist = sorted(sorted(cands, key=lambda c: (-c.score, c.source, c.start))[: llm.MAX_CANDIDATES],
                       key=lambda c: (c.source, c.start))  # fmt: skip
    picks = [{"id": 5, "role": "hook"}, {"id": 1, "role": "build"}, {"id": 3, "role": "climax"},
             {"id": 9, "role": "resolution"}]  # fmt: skip
    state.replies.append((200, _anthropic_reply(picks)))
    chosen, selector = llm.choose_with_llm(_settings("anthropic", base), cands, fallback, 12.0, [])
    assert selector.name == "anthropic" and selector.fallback_reason is None and selector.cost_usd > 0
    for sel, pick in zip(chosen, picks, strict=True):  # in the model's order, each around the candidate it named
        assert sel.start <= shortlist[pick["id"]].start < sel.end and sel.role == pick["role"]
    assert abs(sum(c.duration for c in chosen) - 12.0) < 0.01
    request = state.requests[0]
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == "sk-test" and request["headers"]["anthropic-version"] == "2023-06-01"
    assert request["body"]["tool_choice"] == {"type": "tool", "name": "choose_segments"}
    assert request["body"]["tools"][0]["input_schema"] == llm.ANSWER_SCHEMA


def test_anthropic_overloaded_is_retried(provider: tuple[Provider, str]) -> None:
    state, base = provider
    fallback, cands = _candidates()
    overloaded = json.loads((FIXTURES / "anthropic_error_overloaded.json").read_text())
    state.replies += [(529, overloaded), (200, _anthropic_reply([{"id": i, "role": "build"} for i in range(8)]))]
    chosen, selector = llm.choose_with_llm(_settings("anthropic", base), cands, fallback, 12.0, [])
    assert selector.name == "anthropic" and len(state.requests) == 2


def test_gemini_json_answer(provider: tuple[Provider, str]) -> None:
    state, base = provider
    fallback, cands = _candidates()
    answer = {"segments": [{"id": i, "role": "build"} for i in (2, 4, 6, 8, 10, 12)], "rationale": "ok"}
    state.replies.append((200, _gemini_reply(answer)))
    chosen, selector = llm.choose_with_llm(
        _settings("gemini", base, model="gemini-2.5-flash"), cands, fallback, 12.0, []
    )
    assert selector.name == "gemini" and selector.model == "gemini-2.5-flash"
    request = state.requests[0]
    assert request["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert request["headers"]["x-goog-api-key"] == "g-test"
    assert request["body"]["generationConfig"]["responseMimeType"] == "application/json"
    assert abs(sum(c.duration for c in chosen) - 12.0) < 0.01


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        ((200, "not-json-text"), "not JSON"),
        ((200, {"segments": [{"id": 1, "role": "villain"}], "rationale": ""}), "does not match the schema"),
        ((200, {"segments": [{"id": 1, "role": "hook"}, {"id": 1, "role": "build"}], "rationale": ""}), "repeats"),
        ((200, {"segments": [{"id": 999, "role": "hook"}], "rationale": ""}), "unknown candidate ids"),
        ((200, {"segments": [{"id": 0, "role": "hook"}], "rationale": ""}), "of the 12 s target"),
        ((400, {"error": {"message": "bad request"}}), "HTTP 400"),
        ((500, {"error": "boom"}), "HTTP 500 after 2 attempt(s)"),
        ((200, b"<html>"), "response is not JSON"),
        ((200, {"candidates": []}), "no candidates[0]"),
    ],
)
def test_gemini_bad_answers_fall_back(provider: tuple[Provider, str], reply: tuple[int, Any], needle: str) -> None:
    state, base = provider
    fallback, cands = _candidates()
    status, payload = reply
    if status == 200 and not isinstance(payload, bytes) and "candidates" not in payload:
        payload = _gemini_reply(payload)
    state.replies += [(status, payload), (status, payload)]
    chosen, selector = llm.choose_with_llm(_settings("gemini", base), cands, fallback, 12.0, [])
    assert chosen == fallback and selector.name == "scorer"
    assert selector.fallback_reason is not None and needle in selector.fallback_reason


def test_no_key_and_spend_cap_and_unreachable(provider: tuple[Provider, str]) -> None:
    state, base = provider
    fallback, cands = _candidates()
    no_key = LlmSettings(provider="anthropic", base_url=base)
    chosen, selector = llm.choose_with_llm(no_key, cands, fallback, 12.0, [])
    assert chosen == fallback and "MONTAGE_LLM__ANTHROPIC_API_KEY" in (selector.fallback_reason or "")
    capped = _settings("anthropic", base, spend_cap_usd=0.0001)
    chosen, selector = llm.choose_with_llm(capped, cands, fallback, 12.0, [])
    assert "spend cap" in (selector.fallback_reason or "") and state.requests == []
    dead = _settings("anthropic", "http://127.0.0.1:9")
    chosen, selector = llm.choose_with_llm(dead, cands, fallback, 12.0, [])
    assert "connection failed" in (selector.fallback_reason or "")
    state.replies.append((200, {"content": [{"type": "text", "text": "sure"}], "stop_reason": "end_turn"}))
    chosen, selector = llm.choose_with_llm(_settings("anthropic", base), cands, fallback, 12.0, [])
    assert "no choose_segments tool call" in (selector.fallback_reason or "")


def test_prompt_carries_transcript() -> None:
    from montage.media.rover import Word

    _, cands = _candidates()
    prompt = llm.build_prompt(cands[:3], 12.0, [Word("hello", cands[0].start, cands[0].start + 0.3)])
    assert '"transcript": "hello"' in prompt and "12 seconds" in prompt

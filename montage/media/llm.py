"""Optional LLM highlight selector (Anthropic Messages API or Gemini generateContent, via httpx).

The model chooses among the scorer's candidates and answers with strict JSON (Anthropic: a forced
tool call whose ``input_schema`` is :data:`ANSWER_SCHEMA`; Gemini: ``responseMimeType`` JSON with
``responseSchema``).  Any problem (no key, timeout, HTTP error after retries, an answer that does not
validate, the spend cap) falls back to the deterministic scorer, and the plan records why.

Request/response shapes follow the providers' documentation as of 2025-06:
Anthropic ``POST /v1/messages`` with ``anthropic-version: 2023-06-01``; Gemini
``POST /v1beta/models/{model}:generateContent`` with ``x-goog-api-key``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from montage.media.plan import Selector
from montage.media.rover import Word
from montage.media.story_beats import MIN_SEGMENT_S, Candidate, Selection, _extend, max_segment_for

ANTHROPIC_URL = "https://api.anthropic.com"
GEMINI_URL = "https://generativelanguage.googleapis.com"
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
# USD per million tokens (input, output), list prices as published 2025-06; unknown models are
# charged at the most expensive row so the spend cap errs on the safe side.
PRICES: dict[str, tuple[float, float]] = {
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-opus-4-1": (15.0, 75.0),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-pro": (1.25, 10.0),
}
MAX_OUTPUT_TOKENS = 1024
MAX_CANDIDATES = 60
RETRY_STATUSES = {408, 429, 500, 502, 503, 504, 529}
BACKOFF_S = 0.5

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "segments": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "role": {"type": "string", "enum": ["hook", "build", "climax", "resolution"]},
                },
                "required": ["id", "role"],
            },
        },
        "rationale": {"type": "string"},
    },
    "required": ["segments", "rationale"],
}


class _Pick(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int
    role: Literal["hook", "build", "climax", "resolution"]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    segments: list[_Pick] = Field(min_length=1)
    rationale: str = ""


class SelectorFailed(Exception):
    """The LLM could not decide; the message becomes the plan's ``fallback_reason``."""


@dataclass
class Spend:
    cap_usd: float
    spent_usd: float = 0.0

    def charge(self, model: str, input_tokens: int, output_tokens: int) -> None:
        price_in, price_out = PRICES.get(model, max(PRICES.values()))
        self.spent_usd += input_tokens * price_in / 1e6 + output_tokens * price_out / 1e6

    def allow(self, model: str, prompt: str) -> None:
        price_in, price_out = PRICES.get(model, max(PRICES.values()))
        estimate = (len(prompt) / 3.0) * price_in / 1e6 + MAX_OUTPUT_TOKENS * price_out / 1e6
        if self.spent_usd + estimate > self.cap_usd:
            raise SelectorFailed(
                f"the request could cost up to ${estimate:.4f}, over the spend cap ${self.cap_usd:.2f} "
                f"(already spent ${self.spent_usd:.4f}; setting llm.spend_cap_usd)"
            )


def _text_between(words: list[Word], start: float, end: float) -> str:
    return " ".join(w.text for w in words if start <= w.start < end)[:300]


def build_prompt(cands: list[Candidate], target: float, words: list[Word]) -> str:
    rows = []
    for i, c in enumerate(cands):
        row: dict[str, Any] = {
            "id": i,
            "source": c.source,
            "start": c.start,
            "end": c.end,
            "duration": round(c.duration, 2),
            "score": c.score,
            "features": c.reasons,
        }
        text = _text_between(words, c.start, c.end) if c.source == 0 else ""
        if text:
            row["transcript"] = text
        rows.append(row)
    return (
        f"Pick segments for a highlight montage of about {target:g} seconds. Choose non-overlapping candidates "
        "by id whose durations add up to the target, in the order they should play, each with a story role: "
        "one hook first, build segments, one climax, one resolution last. Answer only with the JSON schema.\n"
        "Candidates:\n" + json.dumps(rows)
    )


SYSTEM_PROMPT = "You are a video editor choosing highlights for a short montage. Be concise."


def _post(client: Any, url: str, headers: dict[str, str], body: dict[str, Any], retries: int) -> dict[str, Any]:
    import httpx

    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        try:
            response = client.post(url, headers=headers, json=body)
        except httpx.TimeoutException:
            last = "the request timed out"
            continue
        except httpx.TransportError as exc:
            last = f"connection failed ({type(exc).__name__})"
            continue
        if response.status_code in RETRY_STATUSES:
            last = f"HTTP {response.status_code}"
            continue
        if response.status_code >= 400:
            raise SelectorFailed(f"the provider refused the request: HTTP {response.status_code} {response.text[:200]}")
        try:
            data = response.json()
        except ValueError as exc:
            raise SelectorFailed("the provider's response is not JSON") from exc
        if not isinstance(data, dict):
            raise SelectorFailed("the provider's response is not a JSON object")
        return data
    raise SelectorFailed(f"{last} after {retries + 1} attempt(s)")


def ask_anthropic(client: Any, base: str, key: str, model: str, prompt: str, retries: int, spend: Spend) -> Any:
    body = {
        "model": model,
        "max_tokens": MAX_OUTPUT_TOKENS,
        "system": SYSTEM_PROMPT,
        "messages": [{"role": "user", "content": prompt}],
        "tools": [{"name": "choose_segments", "description": "The montage's segments.", "input_schema": ANSWER_SCHEMA}],
        "tool_choice": {"type": "tool", "name": "choose_segments"},
    }
    headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
    data = _post(client, base.rstrip("/") + "/v1/messages", headers, body, retries)
    usage = data.get("usage") or {}
    spend.charge(model, int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)))
    for block in data.get("content") or []:
        if isinstance(block, dict) and block.get("type") == "tool_use" and block.get("name") == "choose_segments":
            return block.get("input")
    raise SelectorFailed(f"the answer has no choose_segments tool call (stop_reason {data.get('stop_reason')!r})")


def ask_gemini(client: Any, base: str, key: str, model: str, prompt: str, retries: int, spend: Spend) -> Any:
    body = {
        "systemInstruction": {"parts": [{"text": SYSTEM_PROMPT}]},
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": ANSWER_SCHEMA,
            "temperature": 0,
            "maxOutputTokens": MAX_OUTPUT_TOKENS,
        },
    }
    headers = {"x-goog-api-key": key, "content-type": "application/json"}
    url = f"{base.rstrip('/')}/v1beta/models/{model}:generateContent"
    data = _post(client, url, headers, body, retries)
    usage = data.get("usageMetadata") or {}
    spend.charge(model, int(usage.get("promptTokenCount", 0)), int(usage.get("candidatesTokenCount", 0)))
    try:
        text = data["candidates"][0]["content"]["parts"][0]["text"]
        return json.loads(text)
    except (KeyError, IndexError, TypeError) as exc:
        raise SelectorFailed("the answer has no candidates[0].content.parts[0].text") from exc
    except json.JSONDecodeError as exc:
        raise SelectorFailed(f"the answer text is not JSON: {exc.msg}") from exc


def to_selections(raw: Any, cands: list[Candidate], target: float) -> list[Selection]:
    """Validate the model's answer against the schema and the candidates; fit it to the target."""
    try:
        answer = Answer.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SelectorFailed(f"the answer does not match the schema: {where}: {first['msg']}") from exc
    ids = [p.id for p in answer.segments]
    if len(set(ids)) != len(ids):
        raise SelectorFailed(f"the answer repeats a candidate id: {ids}")
    unknown = [i for i in ids if not 0 <= i < len(cands)]
    if unknown:
        raise SelectorFailed(f"the answer names unknown candidate ids {unknown} (valid: 0..{len(cands) - 1})")
    picked: list[tuple[Candidate, str]] = []
    total = 0.0
    for pick in answer.segments:
        c = cands[pick.id]
        remaining = target - total
        if remaining < MIN_SEGMENT_S:
            break
        end = round(min(c.end, c.start + remaining), 3)
        picked.append((Candidate(c.source, c.start, end, c.score, c.energy, ["chosen by LLM", *c.reasons]), pick.role))
        total += end - c.start
    if target - total > 0:
        # Same rule as the scorer: grow picks into the footage next to them until the target is met.
        _extend([c for c, _ in picked], cands, round(target - total, 3), max_segment_for(target))
        total = sum(c.duration for c, _ in picked)
    available = sum(c.duration for c in cands)
    if total < min(target, available) - 1.0:
        raise SelectorFailed(f"the chosen segments cover {total:.1f} s of the {target:g} s target")
    return [Selection(c.source, c.start, c.end, role, c.score, "; ".join(c.reasons)) for c, role in picked]


def choose_with_llm(
    llm: Any, cands: list[Candidate], fallback: list[Selection], target: float, words: list[Word]
) -> tuple[list[Selection], Selector]:
    """Ask the configured provider; on any problem return ``fallback`` with the reason recorded."""
    provider: str = llm.provider
    secret = llm.anthropic_api_key if provider == "anthropic" else llm.gemini_api_key
    model = llm.model or DEFAULT_MODELS[provider]
    if secret is None or not secret.get_secret_value():
        variable = f"MONTAGE_LLM__{provider.upper()}_API_KEY"
        return fallback, Selector(fallback_reason=f"no API key for {provider} ({variable} is not set)")
    shortlist = sorted(cands, key=lambda c: (-c.score, c.source, c.start))[:MAX_CANDIDATES]
    shortlist.sort(key=lambda c: (c.source, c.start))
    prompt = build_prompt(shortlist, target, words)
    spend = Spend(cap_usd=llm.spend_cap_usd)
    import httpx

    try:
        spend.allow(model, prompt)
        with httpx.Client(timeout=llm.timeout_s) as client:
            if provider == "anthropic":
                raw = ask_anthropic(
                    client,
                    llm.base_url or ANTHROPIC_URL,
                    secret.get_secret_value(),
                    model,
                    prompt,
                    llm.max_retries,
                    spend,
                )
            else:
                raw = ask_gemini(
                    client,
                    llm.base_url or GEMINI_URL,
                    secret.get_secret_value(),
                    model,
                    prompt,
                    llm.max_retries,
                    spend,
                )
        selections = to_selections(raw, shortlist, target)
    except SelectorFailed as exc:
        reason = f"{provider} {model}: {exc}"
        return fallback, Selector(fallback_reason=reason, cost_usd=round(spend.spent_usd, 6))
    return selections, Selector(name=provider, model=model, cost_usd=round(spend.spent_usd, 6))

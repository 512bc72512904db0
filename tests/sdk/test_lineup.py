"""Today's models through the gateway with the official google-genai SDK: a Gemini 4 chat with a
long system instruction is never explicitly cached (implicit caching only) yet answers exactly as
the emulator does directly, a 3.8 Flash chat is cached from its second turn, and every response
says what it cost and where the price came from."""

from __future__ import annotations

import uuid

from google.genai import types

from test_caching import long_instruction


def headers_of(response) -> dict:
    http = getattr(response, "sdk_http_response", None)
    return {k.lower(): v for k, v in (getattr(http, "headers", None) or {}).items()}


def chat(client, model: str, tag: str):
    config = types.GenerateContentConfig(system_instruction=long_instruction(tag))
    c = client.chats.create(model=model, config=config)
    return [c.send_message(q) for q in ("Hello.", "Which clause applies?", "Thanks, once more.")]


def test_gemini_4_chat_makes_no_cache_and_answers_as_direct(client, direct, ledger):
    tag = uuid.uuid4().hex[:8]
    via = chat(client, "gemini-4-carbon", tag)
    ref = chat(direct, "gemini-4-carbon", tag)
    for a, b in zip(via, ref):
        assert a.candidates[0].content == b.candidates[0].content
        assert a.response_id == b.response_id
        h = headers_of(a)
        if h:  # older SDKs do not expose response headers
            assert float(h["x-gemgate-cost-usd"]) > 0
            assert h["x-gemgate-price-source"] == "table"
            assert h["x-gemgate-cache"] != "hit"
    assert ledger.total()["cache_creations"] == 0


def test_flash_3_8_chat_is_cached_from_the_second_turn(client, ledger):
    via = chat(client, "gemini-3.8-flash", uuid.uuid4().hex[:8])
    for r in via[1:]:
        assert (r.usage_metadata.cached_content_token_count or 0) >= 6000, r.usage_metadata
    assert ledger.total()["cache_creations"] >= 1

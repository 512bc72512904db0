"""Automatic caching seen through the official google-genai SDK: a chat with a long system
instruction and tools goes through the gateway, later turns are served from a gateway-made cache
(billed at the cache rate in the emulator's ledger), streaming works the same way, and tool calls
still round-trip because the declarations now come from the cache."""

from __future__ import annotations

import uuid

from google.genai import types

MODEL = "gemini-2.5-flash"


def long_instruction(tag: str, tokens: int = 6000) -> str:
    # The emulator counts UTF-8 bytes / 4 per text part.
    words = []
    i = 0
    while sum(len(w) + 1 for w in words) < tokens * 4:
        words.append(f"rule-{tag}-{i} keep answers short and cite clause {i}.")
        i += 1
    return " ".join(words)


def weather_tool() -> types.Tool:
    return types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                description="Current weather for a city",
                parameters=types.Schema(
                    type="OBJECT",
                    properties={"city": types.Schema(type="STRING")},
                    required=["city"],
                ),
            )
        ]
    )


def chat_config(tag: str) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        system_instruction=long_instruction(tag),
        tools=[weather_tool()],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        temperature=0.3,
    )


def cache_header(response, name: str = "x-gemgate-cache") -> str | None:
    http = getattr(response, "sdk_http_response", None)
    headers = getattr(http, "headers", None) or {}
    return {k.lower(): v for k, v in headers.items()}.get(name)


def run_chat(client, tag: str):
    """Three user turns with a tool round trip in the middle; returns the responses."""
    chat = client.chats.create(model=MODEL, config=chat_config(tag))
    out = [chat.send_message("Good morning. Please greet me in one sentence.")]
    call_reply = chat.send_message("What is the weather in Paris?")
    out.append(call_reply)
    calls = call_reply.function_calls or []
    assert calls and calls[0].name == "get_weather", call_reply
    out.append(
        chat.send_message(
            types.Part.from_function_response(name="get_weather", response={"temp_c": 21, "sky": "clear"})
        )
    )
    out.append(chat.send_message("Thanks. One more sentence, please."))
    return out


def test_chat_with_long_system_instruction_and_tools_is_served_from_a_cache(client, direct, ledger):
    tag = uuid.uuid4().hex[:8]
    via = run_chat(client, tag)
    ref = run_chat(direct, tag)
    # The model saw exactly what it would have seen: same texts, same tool call, same ids.
    for a, b in zip(via, ref):
        assert a.candidates[0].content == b.candidates[0].content
        assert a.response_id == b.response_id
    # The first turn is new; from the second on the shared prefix (instruction + tools) is hot.
    assert via[0].usage_metadata.cached_content_token_count in (None, 0)
    for r in via[1:]:
        assert (r.usage_metadata.cached_content_token_count or 0) >= 6000, r.usage_metadata
    headers = [cache_header(r) for r in via]
    if headers[0] is not None:  # older SDKs do not expose response headers
        assert headers[0] == "miss" and headers[1] == "created" and set(headers[2:]) == {"hit"}, headers
        # Why: the first turn's prefix was new, the second made the cache, the rest read it.
        reasons = [cache_header(r, "x-gemgate-cache-reason") for r in via]
        assert reasons == ["first-sight", "created", "hit", "hit"], reasons
    total = ledger.total()
    assert total["cache_creations"] >= 1
    assert total["cached_tokens"] >= 3 * 6000, total


def streamed_chat(client, config):
    chat = client.chats.create(model=MODEL, config=config)
    out = []
    for question in ("Say hello.", "Say it again, differently.", "And once more."):
        chunks = list(chat.send_message_stream(question))
        assert chunks
        out.append(("".join(ch.text or "" for ch in chunks), chunks[-1].usage_metadata))
    return out


def test_streaming_chat_turns_are_served_from_the_cache_too(client, direct, ledger):
    config = chat_config(uuid.uuid4().hex[:8])
    via = streamed_chat(client, config)
    ref = streamed_chat(direct, config)
    assert [t for t, _ in via] == [t for t, _ in ref], "streamed texts differ from direct"
    for _, usage in via[1:]:
        assert (usage.cached_content_token_count or 0) >= 6000, usage
    assert ledger.total()["cache_creations"] >= 1


def test_the_usage_annotation_does_not_break_sdk_parsing(client):
    config = chat_config(uuid.uuid4().hex[:8])
    for _ in range(3):
        r = client.models.generate_content(model=MODEL, contents="Ping?", config=config)
        # With tools declared the emulator answers with a function call; either way the SDK must
        # have parsed a full response around the extra usageMetadata.gemgate object.
        assert r.candidates and r.candidates[0].content.parts, r
    assert (r.usage_metadata.cached_content_token_count or 0) >= 6000

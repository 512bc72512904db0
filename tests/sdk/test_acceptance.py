"""Acceptance: the official google-genai SDK pointed at the gateway works exactly as against the
Gemini API (here: the emulator), for both API versions the SDKs use (`v1`, `v1beta`).

"direct" means the same SDK call sent straight to the emulator; since the emulator's output is a
deterministic function of the effective prompt, gateway and direct answers must be identical.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from google.genai import errors, types

from conftest import API_KEY, DIRECT
from sdkhelpers import (
    MODEL,
    big_document,
    drop_gemgate,
    parse_sse,
    tag,
    text_of_response_dict,
    wait_for_batch,
)

HEADERS = {"x-goog-api-key": API_KEY, "content-type": "application/json"}


def user_content(text: str) -> dict:
    return {"parts": [{"text": text}], "role": "user"}


# ---------------------------------------------------------------------------------------------
# generateContent / streamGenerateContent / countTokens


def test_generate_content_matches_direct(client, direct):
    prompt = tag("Explain photosynthesis in one sentence")
    via_gateway = client.models.generate_content(model=MODEL, contents=prompt)
    straight = direct.models.generate_content(model=MODEL, contents=prompt)
    assert via_gateway.text, "the gateway returned no text"
    assert via_gateway.text == straight.text
    assert via_gateway.response_id == straight.response_id
    assert via_gateway.candidates[0].finish_reason == types.FinishReason.STOP
    um, dm = via_gateway.usage_metadata, straight.usage_metadata
    assert um.prompt_token_count == dm.prompt_token_count > 0
    assert um.candidates_token_count == dm.candidates_token_count > 0
    assert um.total_token_count == dm.total_token_count


def test_generate_content_raw_body_identical(gateway_url, emulator_url, api_version):
    body = {
        "contents": [user_content(tag("Name three rivers"))],
        "systemInstruction": {"parts": [{"text": "be terse"}], "role": "user"},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 200},
    }
    path = f"/{api_version}/models/{MODEL}:generateContent"
    g = requests.post(gateway_url + path, json=body, headers=HEADERS, timeout=30)
    d = requests.post(emulator_url + path, json=body, headers=HEADERS, timeout=30)
    assert g.status_code == d.status_code == 200, g.text
    assert g.headers["content-type"].startswith("application/json")
    gj, dj = g.json(), d.json()
    assert text_of_response_dict(gj)
    assert drop_gemgate(gj) == drop_gemgate(dj)
    assert drop_gemgate(dj) == dj, "the emulator itself must not carry a gemgate annotation"


def test_generate_content_snake_case_body_passes_through(gateway_url, emulator_url, api_version):
    # The REST docs' own examples use snake_case; the gateway must not reject or mangle them.
    body = {
        "contents": [user_content(tag("List two colours"))],
        "system_instruction": {"parts": [{"text": "answer in English"}]},
        "generation_config": {"max_output_tokens": 100},
    }
    path = f"/{api_version}/models/{MODEL}:generateContent"
    g = requests.post(gateway_url + path, json=body, headers=HEADERS, timeout=30)
    d = requests.post(emulator_url + path, json=body, headers=HEADERS, timeout=30)
    assert g.status_code == d.status_code == 200, g.text
    assert drop_gemgate(g.json()) == drop_gemgate(d.json())


def test_generate_content_stream(client, direct):
    prompt = tag("Write a short poem about the sea")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents=prompt))
    whole = client.models.generate_content(model=MODEL, contents=prompt)
    assert len(chunks) >= 2, f"expected several chunks, got {len(chunks)}"
    streamed = "".join(c.text or "" for c in chunks)
    assert streamed == whole.text
    assert len({c.response_id for c in chunks}) == 1
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])
    assert last.usage_metadata is not None
    assert last.usage_metadata.candidates_token_count == whole.usage_metadata.candidates_token_count
    assert last.usage_metadata.prompt_token_count == whole.usage_metadata.prompt_token_count
    direct_chunks = list(direct.models.generate_content_stream(model=MODEL, contents=prompt))
    assert [c.text for c in chunks] == [c.text for c in direct_chunks]


def test_stream_raw_sse_identical(gateway_url, emulator_url, api_version):
    body = {"contents": [user_content(tag("Describe a mountain"))]}
    path = f"/{api_version}/models/{MODEL}:streamGenerateContent?alt=sse"
    g = requests.post(gateway_url + path, json=body, headers=HEADERS, timeout=30)
    d = requests.post(emulator_url + path, json=body, headers=HEADERS, timeout=30)
    assert g.status_code == d.status_code == 200, g.text
    assert g.headers["content-type"].startswith("text/event-stream")
    g_events, d_events = parse_sse(g.content), parse_sse(d.content)
    assert len(g_events) >= 2
    assert [drop_gemgate(e) for e in g_events] == [drop_gemgate(e) for e in d_events]
    # Google's framing: `data: <json>` events separated by CRLF CRLF.
    assert g.content.startswith(b"data: ") and b"\r\n\r\n" in g.content


def test_count_tokens(client, direct):
    prompt = tag("How many tokens is this sentence made of?")
    counted = client.models.count_tokens(model=MODEL, contents=prompt)
    assert counted.total_tokens and counted.total_tokens > 0
    assert counted.total_tokens == direct.models.count_tokens(model=MODEL, contents=prompt).total_tokens
    generated = client.models.generate_content(model=MODEL, contents=prompt)
    assert generated.usage_metadata.prompt_token_count == counted.total_tokens


# ---------------------------------------------------------------------------------------------
# models


def test_models_list_and_get(client, direct):
    names = [m.name for m in client.models.list()]
    assert f"models/{MODEL}" in names
    assert names == [m.name for m in direct.models.list()]
    model = client.models.get(model=MODEL)
    assert model.name == f"models/{MODEL}"
    assert model.input_token_limit and model.input_token_limit > 0
    assert model.display_name
    assert model.model_dump() == direct.models.get(model=MODEL).model_dump()


def test_unknown_model_is_an_sdk_error(client):
    with pytest.raises(errors.ClientError) as exc:
        client.models.generate_content(model="gemini-does-not-exist", contents="hi")
    assert exc.value.code == 404
    assert exc.value.status == "NOT_FOUND"


# ---------------------------------------------------------------------------------------------
# cachedContents


def test_cache_lifecycle(client, ledger):
    cache = client.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            contents=[big_document("lifecycle")],
            system_instruction="Answer only from the document.",
            display_name="sdk-lifecycle",
            ttl="300s",
        ),
    )
    assert cache.name.startswith("cachedContents/")
    assert cache.model == f"models/{MODEL}"
    assert cache.display_name == "sdk-lifecycle"
    tokens = cache.usage_metadata.total_token_count
    assert tokens >= 1024
    assert abs((cache.expire_time - cache.create_time) - timedelta(seconds=300)) < timedelta(seconds=5)

    got = client.caches.get(name=cache.name)
    assert (got.name, got.model, got.expire_time) == (cache.name, cache.model, cache.expire_time)
    assert got.usage_metadata.total_token_count == tokens

    assert cache.name in [c.name for c in client.caches.list(config={"page_size": 100})]

    updated = client.caches.update(name=cache.name, config=types.UpdateCachedContentConfig(ttl="1200s"))
    assert updated.name == cache.name
    assert updated.expire_time > cache.expire_time
    assert abs((updated.expire_time - updated.update_time) - timedelta(seconds=1200)) < timedelta(seconds=5)

    client.caches.delete(name=cache.name)
    with pytest.raises(errors.ClientError) as exc:
        client.caches.get(name=cache.name)
    assert exc.value.code in (403, 404)
    assert cache.name not in [c.name for c in client.caches.list(config={"page_size": 100})]

    billed = ledger.total()
    assert billed["cache_creations"] == 1
    assert billed["cache_creation_tokens"] == tokens
    assert billed["cache_ttl_updates"] == 1
    assert billed["cache_deletions"] == 1


def test_cache_too_small_is_rejected_with_googles_error(client):
    with pytest.raises(errors.ClientError) as exc:
        client.caches.create(model=MODEL, config={"contents": ["far too short"], "ttl": "60s"})
    assert exc.value.code == 400
    assert exc.value.status == "INVALID_ARGUMENT"
    assert "Cached content is too small" in exc.value.message
    assert "min_total_token_count=1024" in exc.value.message


def test_generate_with_cached_content(client, direct, ledger):
    cache = client.caches.create(
        model=MODEL,
        config={"contents": [big_document("use")], "ttl": "300s", "display_name": "sdk-use"},
    )
    try:
        cache_tokens = cache.usage_metadata.total_token_count
        ledger.reset()
        question = tag("What does section 3 say?")
        config = types.GenerateContentConfig(cached_content=cache.name)
        resp = client.models.generate_content(model=MODEL, contents=question, config=config)
        um = resp.usage_metadata
        assert resp.text
        assert um.cached_content_token_count == cache_tokens
        assert um.prompt_token_count > um.cached_content_token_count

        billed = ledger.total()
        assert billed["cached_tokens"] == cache_tokens
        assert billed["input_tokens"] == um.prompt_token_count - cache_tokens

        straight = direct.models.generate_content(model=MODEL, contents=question, config=config)
        assert straight.text == resp.text
        assert straight.usage_metadata.cached_content_token_count == cache_tokens

        streamed = list(client.models.generate_content_stream(model=MODEL, contents=question, config=config))
        assert "".join(c.text or "" for c in streamed) == resp.text
        assert streamed[-1].usage_metadata.cached_content_token_count == cache_tokens
    finally:
        client.caches.delete(name=cache.name)


def test_cached_content_with_system_instruction_conflict(client):
    cache = client.caches.create(model=MODEL, config={"contents": [big_document("conflict")], "ttl": "120s"})
    try:
        with pytest.raises(errors.ClientError) as exc:
            client.models.generate_content(
                model=MODEL,
                contents="hi",
                config={"cached_content": cache.name, "system_instruction": "be brief"},
            )
        assert exc.value.code == 400
        assert "CachedContent can not be used with GenerateContent request setting system_instruction" in (
            exc.value.message
        )
    finally:
        client.caches.delete(name=cache.name)


# ---------------------------------------------------------------------------------------------
# files


def test_file_upload_from_path_get_list_delete(client, tmp_path):
    data = ("line of notes " + tag("file")).encode() * 50
    path = tmp_path / "notes.txt"
    path.write_bytes(data)
    uploaded = client.files.upload(file=path, config={"display_name": "sdk notes"})
    assert uploaded.name.startswith("files/")
    assert uploaded.size_bytes == len(data)
    assert uploaded.mime_type == "text/plain"
    assert uploaded.display_name == "sdk notes"
    assert uploaded.state == types.FileState.ACTIVE

    got = client.files.get(name=uploaded.name)
    assert (got.name, got.size_bytes, got.mime_type) == (uploaded.name, len(data), "text/plain")
    assert got.sha256_hash == uploaded.sha256_hash
    assert uploaded.name in [f.name for f in client.files.list(config={"page_size": 100})]

    client.files.delete(name=uploaded.name)
    with pytest.raises(errors.ClientError) as exc:
        client.files.get(name=uploaded.name)
    assert exc.value.code == 403
    assert uploaded.name not in [f.name for f in client.files.list(config={"page_size": 100})]


def test_file_upload_from_bytesio(client):
    data = json.dumps({"note": tag("in-memory upload"), "n": list(range(100))}).encode()
    uploaded = client.files.upload(
        file=io.BytesIO(data), config={"mime_type": "application/json", "display_name": "mem"}
    )
    try:
        assert uploaded.name.startswith("files/")
        assert uploaded.size_bytes == len(data)
        assert uploaded.mime_type == "application/json"
        assert client.files.get(name=uploaded.name).size_bytes == len(data)
    finally:
        client.files.delete(name=uploaded.name)


def test_file_used_in_generate(client, direct, tmp_path):
    path = tmp_path / "facts.txt"
    path.write_text("The capital of Atlantis is " + tag("Poseidonia"))
    uploaded = client.files.upload(file=path)
    try:
        contents = [uploaded, "What is the capital of Atlantis?"]
        resp = client.models.generate_content(model=MODEL, contents=contents)
        assert resp.text
        assert resp.text == direct.models.generate_content(model=MODEL, contents=contents).text
    finally:
        client.files.delete(name=uploaded.name)


def test_upload_url_points_back_at_the_gateway(gateway, emulator, api_version):
    """The Python SDK follows X-Goog-Upload-URL verbatim: it must name the gateway, never the
    upstream, or the file bytes would bypass the gateway."""
    data = b"bytes that must travel through the gateway\n" * 20
    start = requests.post(
        f"{gateway.url}/upload/{api_version}/files",
        headers={
            **HEADERS,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(data)),
            "X-Goog-Upload-Header-Content-Type": "text/plain",
        },
        json={"file": {"display_name": "raw upload", "mime_type": "text/plain", "size_bytes": len(data)}},
        timeout=30,
    )
    assert start.status_code == 200, start.text
    assert start.headers.get("x-goog-upload-status") == "active"
    upload_url = start.headers["x-goog-upload-url"]
    parts = urlsplit(upload_url)
    assert parts.netloc == gateway.netloc, f"upload URL {upload_url} does not point at the gateway"
    assert parts.path == f"/upload/{api_version}/files"
    assert "upload_id=" in parts.query
    if not DIRECT:
        assert emulator.netloc not in upload_url

    # Finish the upload the way the Python SDK does: POST, no API key.
    final = requests.post(
        upload_url,
        headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
        data=data,
        timeout=30,
    )
    assert final.status_code == 200, final.text
    assert final.headers.get("x-goog-upload-status") == "final"
    file = final.json()["file"]
    assert file["sizeBytes"] == str(len(data))
    r = requests.delete(f"{gateway.url}/{api_version}/{file['name']}", headers=HEADERS, timeout=30)
    assert r.status_code == 200 and r.json() == {}


@pytest.mark.skipif(DIRECT, reason="gateway metrics only exist with the real gateway")
def test_sdk_upload_chunks_go_through_the_gateway(client, gateway_url):
    def upload_requests() -> float:
        text = requests.get(f"{gateway_url}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("gemgate_requests_total{") and 'route="upload/files"' in line
        )

    before = upload_requests()
    uploaded = client.files.upload(file=io.BytesIO(b"x" * 4096), config={"mime_type": "text/plain"})
    client.files.delete(name=uploaded.name)
    # One start request plus at least one upload/finalize chunk.
    assert upload_requests() - before >= 2


# ---------------------------------------------------------------------------------------------
# batches


def test_batch_inline_dicts(client, direct, ledger):
    prompts = [tag("Batch question one"), tag("Batch question two")]
    src = [{"contents": [user_content(p)]} for p in prompts]
    job = client.batches.create(model=MODEL, src=src, config={"display_name": "sdk-inline"})
    assert job.name.startswith("batches/")
    assert job.display_name == "sdk-inline"
    assert job.state in (types.JobState.JOB_STATE_PENDING, types.JobState.JOB_STATE_RUNNING)

    done = wait_for_batch(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.done is True
    responses = done.dest.inlined_responses
    assert len(responses) == len(prompts)
    billed = ledger.total()
    assert billed["batch_jobs_submitted"] == 1
    assert billed["batch_requests"] == len(prompts)
    for prompt, item in zip(prompts, responses):
        assert item.error is None
        assert item.response.text
        assert item.response.text == direct.models.generate_content(model=MODEL, contents=prompt).text


def test_batch_inlined_request_objects(client, direct):
    prompts = [tag("Typed batch one"), tag("Typed batch two"), tag("Typed batch three")]
    config = types.GenerateContentConfig(temperature=0.1)
    src = [
        types.InlinedRequest(model=MODEL, contents=p, metadata={"key": f"k{i}"}, config=config)
        for i, p in enumerate(prompts)
    ]
    job = client.batches.create(model=MODEL, src=src)
    done = wait_for_batch(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    responses = done.dest.inlined_responses
    assert [r.metadata for r in responses] == [{"key": f"k{i}"} for i in range(len(prompts))]
    for prompt, item in zip(prompts, responses):
        assert item.response.text == direct.models.generate_content(model=MODEL, contents=prompt, config=config).text


def test_batch_from_jsonl_file(client, direct, tmp_path):
    prompts = {f"r{i}": tag(f"File batch question {i}") for i in range(3)}
    lines = [{"key": k, "request": {"contents": [user_content(p)]}} for k, p in prompts.items()]
    path = tmp_path / "batch-in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    src_file = client.files.upload(file=path, config={"mime_type": "jsonl", "display_name": "batch in"})

    job = client.batches.create(model=MODEL, src=src_file.name, config={"display_name": "sdk-file"})
    assert job.name.startswith("batches/")
    done = wait_for_batch(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest.file_name == "files/batch-" + job.name.removeprefix("batches/")

    data = client.files.download(file=done.dest.file_name)
    results = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    by_key = {r["key"]: r for r in results}
    assert set(by_key) == set(prompts)
    for key, prompt in prompts.items():
        assert "error" not in by_key[key]
        expected = direct.models.generate_content(model=MODEL, contents=prompt).text
        assert text_of_response_dict(by_key[key]["response"]) == expected
    client.files.delete(name=src_file.name)


def test_batch_list_cancel_delete(client):
    keep = client.batches.create(model=MODEL, src=[{"contents": [user_content(tag("to cancel"))]}])
    client.batches.cancel(name=keep.name)
    cancelled = wait_for_batch(client, keep.name)
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED

    doomed = client.batches.create(model=MODEL, src=[{"contents": [user_content(tag("to delete"))]}])
    listed = [j.name for j in client.batches.list(config={"page_size": 100})]
    assert keep.name in listed and doomed.name in listed

    client.batches.delete(name=doomed.name)
    assert doomed.name not in [j.name for j in client.batches.list(config={"page_size": 100})]
    with pytest.raises(errors.ClientError) as exc:
        client.batches.get(name=doomed.name)
    assert exc.value.code in (403, 404)

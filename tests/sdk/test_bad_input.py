"""Bad input and upstream failures through the gateway: the gateway's own errors look like Gemini's,
and the upstream's errors reach the client untouched (raw HTTP and the official SDK)."""

from __future__ import annotations

import re
import socket

import pytest
import requests
from google.genai import errors

from conftest import API_KEY, BIN, DIRECT, make_client, spawn
from sdkhelpers import MODEL, drop_gemgate, parse_sse, tag

HEADERS = {"x-goog-api-key": API_KEY, "content-type": "application/json"}
FAULT = "x-emulator-fault"


def body(text: str) -> dict:
    return {"contents": [{"parts": [{"text": text}], "role": "user"}]}


def assert_gemini_error(resp: requests.Response, code: int, status: str | None) -> dict:
    """Checks Google's error shape; `status=None` accepts any canonical status name."""
    assert resp.status_code == code, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["code"] == code
    if status is None:
        assert re.fullmatch(r"[A-Z_]+", err["status"]), err
    else:
        assert err["status"] == status
    assert isinstance(err["message"], str) and err["message"]
    return err


@pytest.mark.parametrize("method", ["generateContent", "streamGenerateContent?alt=sse"])
def test_malformed_json_is_a_gemini_400(gateway_url, api_version, method):
    resp = requests.post(
        f"{gateway_url}/{api_version}/models/{MODEL}:{method}",
        data=b'{"contents": [{"parts": [{"text": "unterminated',
        headers=HEADERS,
        timeout=30,
    )
    assert_gemini_error(resp, 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/v1beta/nonexistent/thing"),
        ("POST", "/v1/models/gemini-2.5-flash:frobnicate"),
        ("GET", "/v1beta/models/gemini-does-not-exist"),
    ],
)
def test_unknown_paths_pass_through_unchanged(gateway_url, emulator_url, method, path):
    g = requests.request(method, gateway_url + path, headers=HEADERS, json={}, timeout=30)
    d = requests.request(method, emulator_url + path, headers=HEADERS, json={}, timeout=30)
    assert g.status_code == d.status_code == 404, (g.status_code, g.text)
    assert g.json() == d.json()
    assert g.json()["error"]["status"] == "NOT_FOUND"


def test_missing_api_key_error_passes_through(gateway_url, emulator_url, api_version):
    path = f"/{api_version}/models/{MODEL}:generateContent"
    g = requests.post(gateway_url + path, json=body("hi"), timeout=30)
    d = requests.post(emulator_url + path, json=body("hi"), timeout=30)
    assert g.status_code == d.status_code == 403
    assert g.json() == d.json()
    assert "unregistered callers" in g.json()["error"]["message"]


@pytest.mark.parametrize(
    "fault,code,status",
    [("500", 500, "INTERNAL"), ("429", 429, "RESOURCE_EXHAUSTED"), ("503", 503, "UNAVAILABLE")],
)
def test_upstream_errors_pass_through_untouched(gateway_url, emulator_url, api_version, fault, code, status):
    path = f"/{api_version}/models/{MODEL}:generateContent"
    headers = {**HEADERS, FAULT: fault}
    prompt = body(tag("fault"))
    g = requests.post(gateway_url + path, json=prompt, headers=headers, timeout=30)
    d = requests.post(emulator_url + path, json=prompt, headers=headers, timeout=30)
    err = assert_gemini_error(g, code, status)
    assert g.json() == d.json()
    if code == 429:
        retry = [x for x in err.get("details", []) if x.get("@type", "").endswith("google.rpc.RetryInfo")]
        assert retry and retry[0]["retryDelay"].endswith("s")


def test_upstream_errors_reach_the_sdk(gateway_url, api_version):
    throttled = make_client(gateway_url, api_version, headers={FAULT: "429"})
    with pytest.raises(errors.ClientError) as exc:
        throttled.models.generate_content(model=MODEL, contents=tag("throttle me"))
    assert exc.value.code == 429
    assert exc.value.status == "RESOURCE_EXHAUSTED"

    broken = make_client(gateway_url, api_version, headers={FAULT: "500"})
    with pytest.raises(errors.ServerError) as exc:
        broken.models.generate_content(model=MODEL, contents=tag("break me"))
    assert exc.value.code == 500

    with pytest.raises(errors.ServerError) as exc:
        list(broken.models.generate_content_stream(model=MODEL, contents=tag("break my stream")))
    assert exc.value.code == 500


def test_midstream_error_reaches_the_sdk_after_some_chunks(gateway_url, api_version):
    client = make_client(gateway_url, api_version, headers={FAULT: "midstream-error"})
    received = []
    with pytest.raises(errors.ServerError) as exc:
        for chunk in client.models.generate_content_stream(model=MODEL, contents=tag("stream then fail")):
            received.append(chunk)
    assert len(received) >= 1, "the error should come after at least one chunk"
    assert received[0].text
    assert exc.value.code == 503
    assert exc.value.status == "UNAVAILABLE"


def test_midstream_error_event_passes_through_raw(gateway_url, emulator_url, api_version):
    path = f"/{api_version}/models/{MODEL}:streamGenerateContent?alt=sse"
    headers = {**HEADERS, FAULT: "midstream-error"}
    prompt = body(tag("raw stream then fail"))
    g = requests.post(gateway_url + path, json=prompt, headers=headers, timeout=30)
    d = requests.post(emulator_url + path, json=prompt, headers=headers, timeout=30)
    assert g.status_code == d.status_code == 200
    g_events = parse_sse(g.content)
    assert len(g_events) >= 2
    assert "candidates" in g_events[0]
    assert g_events[-1]["error"]["code"] == 503
    assert [drop_gemgate(e) for e in g_events] == [drop_gemgate(e) for e in parse_sse(d.content)]


@pytest.mark.skipif(DIRECT, reason="needs the real gateway")
def test_unreachable_upstream_is_a_gemini_502(workdir, api_version):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    # Nothing listens on dead_port any more: connections are refused.
    gw = spawn(
        f"gateway-dead-upstream-{api_version}",
        [str(BIN), "serve", "--listen", "127.0.0.1:0", "--upstream", f"http://127.0.0.1:{dead_port}"],
        "gateway listening on",
        workdir,
        # Its own store: the session's gateway holds the SQLite file in this directory.
        env={"GEMGATE_STORE__BACKEND": "memory"},
    )
    try:
        resp = requests.post(
            f"{gw.url}/{api_version}/models/{MODEL}:generateContent",
            json=body("hello"),
            headers=HEADERS,
            timeout=30,
        )
        assert_gemini_error(resp, 502, None)
        client = make_client(gw.url, api_version)
        with pytest.raises(errors.ServerError) as exc:
            client.models.generate_content(model=MODEL, contents="hello")
        assert exc.value.code == 502
    finally:
        gw.stop()

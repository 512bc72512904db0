"""Deferred execution seen from the official google-genai SDK.

An application that adds two headers (`x-gemgate-defer: batch`, `x-gemgate-wait: 60s`) gets an
ordinary GenerateContentResponse object, identical to a direct call, while the emulator's billing
ledger shows the tokens billed at the batch rate. Self-contained: its own fixtures spawn
`gemgate emulator` and `gemgate serve` on port 0 (binary: $GEMGATE_BIN or target/debug/gemgate).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
from google import genai

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("GEMGATE_BIN") or REPO / "target" / "debug" / "gemgate")
KEY = "deferral-sdk-key"
MODEL = "gemini-2.5-flash"


def _spawn(argv: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Starts argv and reads its `… listening on http://ADDR` stdout line."""
    if not BIN.is_file():
        pytest.skip(f"gemgate binary not found at {BIN}: run cargo build first")
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on " not in line:
        proc.kill()
        raise RuntimeError(f"{argv[1]} did not announce its address: {line!r}")
    return proc, line.strip().split("listening on ", 1)[1]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def _stack(processing_delay, max_age):
    """(emulator URL, gateway URL): the emulator takes `processing_delay` per batch, the gateway
    flushes deferred requests after `max_age`."""
    with tempfile.TemporaryDirectory() as tmp:
        emu_cfg = Path(tmp) / "emulator.toml"
        emu_cfg.write_text(f'[batch]\nprocessing_delay = "{processing_delay}"\n')
        emu, emu_url = _spawn(
            [str(BIN), "emulator", "--listen", "127.0.0.1:0", "--config", str(emu_cfg)]
        )
        env = {
            "GEMGATE_STORE__SQLITE_PATH": str(Path(tmp) / "gemgate.sqlite"),
            "GEMGATE_CACHING__ENABLED": "false",
            "GEMGATE_DEFERRAL__TICK": "50ms",
            "GEMGATE_DEFERRAL__MAX_AGE": max_age,
            "GEMGATE_DEFERRAL__POLL_INITIAL": "200ms",
            "GEMGATE_DEFERRAL__POLL_MAX": "1s",
        }
        gw, gw_url = _spawn(
            [str(BIN), "serve", "--listen", "127.0.0.1:0", "--upstream", emu_url], env
        )
        try:
            yield emu_url, gw_url
        finally:
            _stop(gw)
            _stop(emu)


@pytest.fixture(scope="module")
def deferral_stack():
    """A batch takes 500 ms in the emulator; the gateway flushes after 200 ms."""
    with _stack("500ms", "200ms") as urls:
        yield urls


def _ledger(emu_url: str) -> dict:
    with urllib.request.urlopen(f"{emu_url}/emulator/ledger") as r:
        return json.load(r)["total"]


def _reset_ledger(emu_url: str) -> None:
    req = urllib.request.Request(f"{emu_url}/emulator/ledger/reset", method="POST")
    urllib.request.urlopen(req).close()


def _client(base_url: str, headers: dict[str, str] | None = None) -> genai.Client:
    opts: dict = {"base_url": base_url, "timeout": 120_000}
    if headers:
        opts["headers"] = headers
    return genai.Client(api_key=KEY, http_options=opts)


def test_batch_deferred_call_returns_an_ordinary_response_billed_at_batch_rates(deferral_stack):
    emu_url, gw_url = deferral_stack
    _reset_ledger(emu_url)
    deferred = _client(gw_url, {"x-gemgate-defer": "batch", "x-gemgate-wait": "60s"})
    prompt = "Summarise in one line: the parcel left the depot on Monday."
    resp = deferred.models.generate_content(model=MODEL, contents=prompt)
    assert resp.text
    assert resp.usage_metadata.prompt_token_count > 0
    ledger = _ledger(emu_url)
    assert ledger["batch_jobs_submitted"] == 1
    assert ledger["batch_requests"] == 1
    assert ledger["batch_input_tokens"] > 0
    assert ledger["input_tokens"] == 0, "nothing billed at the standard rate"

    direct_client = _client(emu_url)
    direct = direct_client.models.generate_content(model=MODEL, contents=prompt)
    assert resp.text == direct.text
    assert resp.usage_metadata.prompt_token_count == direct.usage_metadata.prompt_token_count
    assert resp.usage_metadata.candidates_token_count == direct.usage_metadata.candidates_token_count


def test_flex_deferred_call_returns_an_ordinary_response_billed_at_flex_rates(deferral_stack):
    emu_url, gw_url = deferral_stack
    _reset_ledger(emu_url)
    flex = _client(gw_url, {"x-gemgate-defer": "flex"})
    resp = flex.models.generate_content(model=MODEL, contents="Name one colour.")
    assert resp.text
    ledger = _ledger(emu_url)
    assert ledger["flex_input_tokens"] > 0
    assert ledger["input_tokens"] == 0


@pytest.fixture(scope="module")
def cache_aware_stack():
    """For cache-aware jobs: requests flushed together after 1 s, batches take 300 ms."""
    with _stack("300ms", "1s") as urls:
        yield urls


def test_batch_questions_over_one_document_share_one_cache(cache_aware_stack):
    """Eight SDK calls over the same ~12k-token system instruction, deferred to batch: one job,
    one cache made for it and deleted at its end, every answer as a direct call's, and each
    response's usageMetadata says what it cost against the standard tier."""
    from concurrent.futures import ThreadPoolExecutor

    from google.genai import types

    emu_url, gw_url = cache_aware_stack
    _reset_ledger(emu_url)
    document = " ".join(f"Clause {i}: deliveries in zone {i % 17} take {i % 5 + 1} days." for i in range(900))
    config = types.GenerateContentConfig(system_instruction=document)
    questions = [f"Question {i}: how long do deliveries in zone {i} take?" for i in range(8)]
    clients = [_client(gw_url, {"x-gemgate-defer": "batch", "x-gemgate-wait": "60s"}) for _ in questions]

    def ask(pair):
        c, q = pair
        return c.models.generate_content(model=MODEL, contents=q, config=config)

    with ThreadPoolExecutor(len(questions)) as pool:
        answers = list(pool.map(ask, zip(clients, questions)))
    ledger = _ledger(emu_url)
    assert ledger["batch_jobs_submitted"] == 1, ledger
    assert ledger["batch_requests"] == len(questions), ledger
    assert ledger["cache_creations"] == 1 and ledger["cache_deletions"] == 1, ledger
    assert ledger["input_tokens"] == 0, "nothing billed at the standard rate"

    direct_client = _client(emu_url)
    for q, resp in zip(questions, answers):
        assert resp.usage_metadata.cached_content_token_count > 10_000
        direct = direct_client.models.generate_content(model=MODEL, contents=q, config=config)
        assert resp.text == direct.text
        assert resp.usage_metadata.prompt_token_count == direct.usage_metadata.prompt_token_count
        # The gateway's dollar figures arrive as headers the SDK keeps on the response.
        headers = {k.lower(): v for k, v in (resp.sdk_http_response.headers or {}).items()}
        assert headers["x-gemgate-tier"] == "batch", headers
        assert headers["x-gemgate-cache"] == "hit", headers
        assert float(headers["x-gemgate-net-saving-usd"]) > 0, headers
        assert float(headers["x-gemgate-cost-usd"]) < float(headers["x-gemgate-cost-as-sent-usd"]), headers

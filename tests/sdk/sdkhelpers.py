"""Shared helpers of the SDK acceptance tests (imported by the test modules)."""

from __future__ import annotations

import copy
import json
import time
import uuid

MODEL = "gemini-2.5-flash"
TERMINAL_BATCH_STATES = {
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_EXPIRED",
}


def tag(label: str) -> str:
    """A prompt fragment unique to this test run, so tests never see each other's state."""
    return f"{label} [{uuid.uuid4().hex[:12]}]"


def drop_gemgate(body):
    """A copy of a GenerateContentResponse-like dict without `usageMetadata.gemgate`, the one place
    the gateway may annotate a body."""
    body = copy.deepcopy(body)
    if isinstance(body, dict) and isinstance(body.get("usageMetadata"), dict):
        body["usageMetadata"].pop("gemgate", None)
    return body


def big_document(label: str, chars: int = 6000) -> str:
    """Text comfortably above gemini-2.5-flash's 1024-token cache minimum (~utf8 bytes / 4)."""
    head = f"Reference document {tag(label)}.\n"
    para = (
        "Section {n}: the quarterly report lists revenue, costs, headcount and the risks the "
        "board discussed, with a short note on each of the regional offices. "
    )
    out = [head]
    n = 0
    while sum(len(s) for s in out) < chars:
        n += 1
        out.append(para.format(n=n))
    return "".join(out)


def parse_sse(raw: bytes) -> list[dict]:
    """The JSON payloads of an SSE body; every non-empty line must be a `data: ` line."""
    events = []
    for line in raw.decode("utf-8").splitlines():
        if not line.strip():
            continue
        assert line.startswith("data: "), f"not an SSE data line: {line[:120]!r}"
        events.append(json.loads(line[len("data: ") :]))
    return events


def wait_for_batch(client, name: str, timeout: float = 60.0):
    """Polls batches.get until the job reaches a terminal state."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.batches.get(name=name)
        state = job.state.value if job.state is not None else None
        if state in TERMINAL_BATCH_STATES:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {name} still {state} after {timeout}s")
        time.sleep(0.25)


def text_of_response_dict(resp: dict) -> str:
    """The concatenated text parts of the first candidate of a raw GenerateContentResponse dict."""
    parts = resp["candidates"][0]["content"]["parts"]
    return "".join(p.get("text", "") for p in parts if not p.get("thought"))

"""Fixtures for the official-SDK acceptance suite.

One emulator and one gateway (``gemgate serve --upstream <emulator>``) are spawned per session on
port 0; the announce line on stdout gives the address. Their stderr goes to temp files that are
attached to the report of any failing test.

Environment:
  GEMGATE_BIN            the gemgate binary (default: <repo>/target/debug/gemgate; never built here)
  GEMGATE_EMULATOR_BIN   a different binary for the emulator only (development aid)
  GEMGATE_SDK_DIRECT=1   point the "gateway" fixtures at the emulator itself (development aid,
                         for iterating before the gateway exists; the default is the real gateway)
"""

from __future__ import annotations

import os
import queue
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from google import genai

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(os.environ.get("GEMGATE_BIN") or REPO / "target" / "debug" / "gemgate")
EMULATOR_BIN = Path(os.environ.get("GEMGATE_EMULATOR_BIN") or BIN)
DIRECT = os.environ.get("GEMGATE_SDK_DIRECT") == "1"
EMULATOR_CONFIG = HERE / "emulator-test.toml"
API_KEY = "test-key"
ANNOUNCE_TIMEOUT = 30.0
API_VERSIONS = ["v1", "v1beta"]

_processes: list["Proc"] = []


@dataclass
class Proc:
    """A spawned gemgate process and where it listens."""

    name: str
    popen: subprocess.Popen
    url: str
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc

    def stderr_tail(self, limit: int = 8000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError as e:
            return f"<stderr unavailable: {e}>"
        return text[-limit:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def spawn(name: str, argv: list[str], announce_prefix: str, workdir: Path, env: dict | None = None) -> Proc:
    """Starts argv and waits for the stdout line `<announce_prefix> http://HOST:PORT`."""
    if not Path(argv[0]).is_file():
        pytest.exit(
            f"gemgate binary not found at {argv[0]}: build it first (cargo build) or set GEMGATE_BIN",
            returncode=2,
        )
    stderr_path = workdir / f"{name}.stderr"
    stderr_file = open(stderr_path, "wb")
    popen = subprocess.Popen(
        argv,
        cwd=workdir,  # the gateway's SQLite file lands here, not in the repo
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},  # plain logs in failure reports
    )
    stderr_file.close()
    lines: "queue.Queue[str | None]" = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        # Keeps draining stdout for the whole life of the process so it never blocks on a full pipe.
        assert popen.stdout is not None
        for line in popen.stdout:
            seen.append(line.rstrip("\n"))
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name=f"{name}-stdout", daemon=True).start()
    deadline = time.monotonic() + ANNOUNCE_TIMEOUT
    url = None
    while url is None:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.01)) if remaining > 0 else None
        except queue.Empty:
            line = None
        if line is None:
            popen.kill()
            popen.wait()
            raise RuntimeError(
                f"{name} did not announce '{announce_prefix} http://…' within {ANNOUNCE_TIMEOUT}s "
                f"(exit code {popen.returncode}).\nstdout: {seen}\nstderr:\n{stderr_path.read_text(errors='replace')}"
            )
        line = line.strip()
        if line.startswith(announce_prefix):
            url = line[len(announce_prefix) :].strip().rstrip("/")
    proc = Proc(name=name, popen=popen, url=url, stderr_path=stderr_path, stdout_lines=seen)
    _processes.append(proc)
    return proc


@pytest.fixture(scope="session")
def workdir():
    with tempfile.TemporaryDirectory(prefix="gemgate-sdk-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def emulator(workdir):
    argv = [str(EMULATOR_BIN), "emulator", "--listen", "127.0.0.1:0"]
    if EMULATOR_CONFIG.is_file():
        argv += ["--config", str(EMULATOR_CONFIG)]
    proc = spawn("emulator", argv, "emulator listening on", workdir)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def gateway(emulator, workdir):
    """The gateway under test (the emulator itself when GEMGATE_SDK_DIRECT=1)."""
    if DIRECT:
        yield emulator
        return
    argv = [str(BIN), "serve", "--listen", "127.0.0.1:0", "--upstream", emulator.url]
    # The emulator caches implicitly only when configured to, so the gateway need not first
    # measure how much implicit caching serves (caching.cost.implicit_probes) before caching.
    proc = spawn("gateway", argv, "gateway listening on", workdir, env={"GEMGATE_CACHING__COST__IMPLICIT_PROBES": "0"})
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def gateway_url(gateway) -> str:
    return gateway.url


@pytest.fixture(scope="session")
def emulator_url(emulator) -> str:
    return emulator.url


@pytest.fixture(params=API_VERSIONS)
def api_version(request) -> str:
    return request.param


def make_client(base_url: str, api_version: str, **http_options) -> genai.Client:
    opts = {"base_url": base_url, "api_version": api_version, **http_options}
    return genai.Client(api_key=API_KEY, http_options=opts)


@pytest.fixture
def client(gateway_url, api_version) -> genai.Client:
    """The official SDK pointed at the gateway."""
    return make_client(gateway_url, api_version)


@pytest.fixture
def direct(emulator_url, api_version) -> genai.Client:
    """The official SDK pointed straight at the emulator, for comparisons."""
    return make_client(emulator_url, api_version)


class Ledger:
    """The emulator's billing ledger (what the real API would have billed)."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def reset(self) -> None:
        r = requests.post(f"{self.base_url}/emulator/ledger/reset", timeout=10)
        assert r.status_code == 200, r.text

    def get(self) -> dict:
        r = requests.get(f"{self.base_url}/emulator/ledger", timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def total(self) -> dict:
        return self.get()["total"]


@pytest.fixture
def ledger(emulator_url) -> Ledger:
    """The emulator ledger, reset at the start of the test."""
    led = Ledger(emulator_url)
    led.reset()
    return led


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for proc in _processes:
            status = proc.popen.poll()
            state = "running" if status is None else f"exited with {status}"
            rep.sections.append((f"{proc.name} stderr ({state}, {proc.url})", proc.stderr_tail()))

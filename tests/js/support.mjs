// Spawns the emulator and the gateway on port 0 for the JS SDK suite, the same way the Python
// suite does: read the announce line from stdout, keep stderr in a temp file for failure reports.
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, "..", "..");
export const BIN = process.env.GEMGATE_BIN || join(REPO, "target", "debug", "gemgate");
export const EMULATOR_BIN = process.env.GEMGATE_EMULATOR_BIN || BIN;
export const DIRECT = process.env.GEMGATE_SDK_DIRECT === "1";
export const EMULATOR_CONFIG = join(REPO, "tests", "sdk", "emulator-test.toml");
const ANNOUNCE_TIMEOUT_MS = 30_000;

/** Starts `argv` in `workdir` and resolves once stdout says `<prefix> http://HOST:PORT`. */
export function spawnGemgate(name, argv, prefix, workdir) {
  if (!existsSync(argv[0])) {
    throw new Error(`gemgate binary not found at ${argv[0]}: run cargo build or set GEMGATE_BIN`);
  }
  const stderrPath = join(workdir, `${name}.stderr`);
  const stderr = createWriteStream(stderrPath);
  const child = spawn(argv[0], argv.slice(1), {
    cwd: workdir,
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stderr.pipe(stderr);
  const proc = {
    name,
    child,
    url: null,
    stderrTail: () => {
      try {
        return readFileSync(stderrPath, "utf8").slice(-8000);
      } catch (e) {
        return `<stderr unavailable: ${e}>`;
      }
    },
    stop: () =>
      new Promise((done) => {
        if (child.exitCode !== null || child.signalCode !== null) return done();
        child.once("exit", () => done());
        child.kill("SIGTERM");
        setTimeout(() => child.kill("SIGKILL"), 10_000).unref();
      }),
  };
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      fail(new Error(`${name} did not announce within ${ANNOUNCE_TIMEOUT_MS} ms\n${proc.stderrTail()}`));
    }, ANNOUNCE_TIMEOUT_MS);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (proc.url === null) fail(new Error(`${name} exited with ${code} before announcing\n${proc.stderrTail()}`));
    });
    // Reading every line keeps the pipe drained for the life of the process.
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (proc.url === null && line.startsWith(prefix)) {
        proc.url = line.slice(prefix.length).trim().replace(/\/$/, "");
        clearTimeout(timer);
        ok(proc);
      }
    });
  });
}

/** Emulator + gateway (the emulator twice when GEMGATE_SDK_DIRECT=1), and a way to stop both. */
export async function startStack() {
  const workdir = mkdtempSync(join(tmpdir(), "gemgate-js-"));
  const emuArgv = [EMULATOR_BIN, "emulator", "--listen", "127.0.0.1:0"];
  if (existsSync(EMULATOR_CONFIG)) emuArgv.push("--config", EMULATOR_CONFIG);
  const emulator = await spawnGemgate("emulator", emuArgv, "emulator listening on", workdir);
  let gateway = emulator;
  if (!DIRECT) {
    try {
      gateway = await spawnGemgate(
        "gateway",
        [BIN, "serve", "--listen", "127.0.0.1:0", "--upstream", emulator.url],
        "gateway listening on",
        workdir,
      );
    } catch (e) {
      await emulator.stop();
      throw e;
    }
  }
  const stop = async () => {
    if (gateway !== emulator) await gateway.stop();
    await emulator.stop();
    rmSync(workdir, { recursive: true, force: true });
  };
  const logs = () =>
    [emulator, gateway !== emulator ? gateway : null]
      .filter(Boolean)
      .map((p) => `--- ${p.name} stderr (${p.url}) ---\n${p.stderrTail()}`)
      .join("\n");
  return { emulator, gateway, stop, logs };
}

/** A prompt fragment unique to this run. */
export function tag(label) {
  return `${label} [${Math.random().toString(36).slice(2, 14)}]`;
}

/** Text comfortably above gemini-2.5-flash's 1024-token cache minimum (~utf8 bytes / 4). */
export function bigDocument(label, chars = 6000) {
  let out = `Reference document ${tag(label)}.\n`;
  for (let n = 1; out.length < chars; n++) {
    out += `Section ${n}: the quarterly report lists revenue, costs, headcount and the risks the board discussed. `;
  }
  return out;
}

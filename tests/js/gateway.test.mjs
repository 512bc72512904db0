// Acceptance: the official @google/genai JS SDK pointed at the gateway behaves as against the
// Gemini API (the emulator), for both API versions. "direct" = the same call to the emulator.
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { GoogleGenAI } from "@google/genai";
import { bigDocument, startStack, tag } from "./support.mjs";

const MODEL = "gemini-2.5-flash";
let stack;

before(async () => {
  stack = await startStack();
});

after(async () => {
  if (stack) await stack.stop();
});

/** Runs `fn`, printing the processes' stderr when it fails. */
async function withLogs(fn) {
  try {
    await fn();
  } catch (e) {
    console.error(stack.logs());
    throw e;
  }
}

const client = (baseUrl, apiVersion) => new GoogleGenAI({ apiKey: "test-key", httpOptions: { baseUrl, apiVersion } });

for (const apiVersion of ["v1", "v1beta"]) {
  describe(`@google/genai through the gateway (${apiVersion})`, () => {
    const ai = () => client(stack.gateway.url, apiVersion);
    const direct = () => client(stack.emulator.url, apiVersion);

    test("generateContent gives the emulator's own answer", () =>
      withLogs(async () => {
        const contents = tag("Explain tides in one sentence");
        const res = await ai().models.generateContent({ model: MODEL, contents });
        const ref = await direct().models.generateContent({ model: MODEL, contents });
        assert.ok(res.text, "no text");
        assert.equal(res.text, ref.text);
        assert.equal(res.responseId, ref.responseId);
        assert.equal(res.usageMetadata.promptTokenCount, ref.usageMetadata.promptTokenCount);
        assert.equal(res.candidates[0].finishReason, "STOP");
      }));

    test("generateContentStream: several chunks adding up to the non-stream text", () =>
      withLogs(async () => {
        const contents = tag("Write a haiku about rain");
        const chunks = [];
        for await (const chunk of await ai().models.generateContentStream({ model: MODEL, contents })) {
          chunks.push(chunk);
        }
        const whole = await ai().models.generateContent({ model: MODEL, contents });
        assert.ok(chunks.length >= 2, `expected several chunks, got ${chunks.length}`);
        assert.equal(chunks.map((c) => c.text ?? "").join(""), whole.text);
        const last = chunks.at(-1);
        assert.equal(last.candidates[0].finishReason, "STOP");
        assert.equal(last.usageMetadata.candidatesTokenCount, whole.usageMetadata.candidatesTokenCount);
      }));

    test("files.upload from a temp file and from a Blob", () =>
      withLogs(async () => {
        const text = `notes ${tag("js upload")}\n`.repeat(40);
        const path = join(tmpdir(), `gemgate-js-${process.pid}-${apiVersion}.txt`);
        writeFileSync(path, text);
        let fromPath;
        try {
          fromPath = await ai().files.upload({ file: path, config: { mimeType: "text/plain", displayName: "js notes" } });
        } finally {
          rmSync(path, { force: true });
        }
        assert.match(fromPath.name, /^files\//);
        assert.equal(Number(fromPath.sizeBytes), Buffer.byteLength(text));
        assert.equal(fromPath.displayName, "js notes");
        assert.equal(fromPath.state, "ACTIVE");

        const json = JSON.stringify({ note: tag("blob"), n: [1, 2, 3] });
        const blob = new Blob([json], { type: "application/json" });
        const fromBlob = await ai().files.upload({ file: blob, config: { mimeType: "application/json" } });
        assert.equal(Number(fromBlob.sizeBytes), Buffer.byteLength(json));
        assert.equal(fromBlob.mimeType, "application/json");

        const got = await ai().files.get({ name: fromPath.name });
        assert.equal(got.name, fromPath.name);
        assert.equal(Number(got.sizeBytes), Buffer.byteLength(text));
        for (const f of [fromPath, fromBlob]) await ai().files.delete({ name: f.name });
        await assert.rejects(ai().files.get({ name: fromPath.name }), (e) => e.status === 403);
      }));

    test("caches.create, then generateContent with cachedContent", () =>
      withLogs(async () => {
        const cache = await ai().caches.create({
          model: MODEL,
          config: { contents: [bigDocument("js cache")], ttl: "300s", displayName: "js-cache" },
        });
        try {
          assert.match(cache.name, /^cachedContents\//);
          assert.equal(cache.model, `models/${MODEL}`);
          const cached = cache.usageMetadata.totalTokenCount;
          assert.ok(cached >= 1024, `cache of ${cached} tokens`);
          const contents = tag("Summarise section 2");
          const res = await ai().models.generateContent({ model: MODEL, contents, config: { cachedContent: cache.name } });
          assert.ok(res.text);
          assert.equal(res.usageMetadata.cachedContentTokenCount, cached);
          assert.ok(res.usageMetadata.promptTokenCount > cached);
          const ref = await direct().models.generateContent({ model: MODEL, contents, config: { cachedContent: cache.name } });
          assert.equal(res.text, ref.text);
        } finally {
          await ai().caches.delete({ name: cache.name });
        }
        await assert.rejects(ai().caches.get({ name: cache.name }), (e) => e.status === 403 || e.status === 404);
      }));
  });
}

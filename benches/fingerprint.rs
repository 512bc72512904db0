//! Canonical form + prefix-chain fingerprint of large generate requests (8k and 128k tokens at
//! ~4 characters per token), as the gateway runs it on every intercepted generate call. The body
//! is parsed once before fingerprinting on the request path, so parsing is benched separately.

use criterion::{Criterion, criterion_group, criterion_main};
use gemgate::caching::fingerprint;
use gemgate::gemini::canonical;
use serde_json::{Value, json};
use std::hint::black_box;

/// Deterministic prose of about `chars` characters, with some characters JSON must escape.
fn text(chars: usize, seed: u64) -> String {
    const WORDS: [&str; 16] = [
        "the", "contract", "says", "payment", "is", "due", "within", "thirty", "days", "of", "delivery", "\"net\"",
        "terms", "apply", "unless", "agreed\n",
    ];
    let mut s = String::with_capacity(chars + 16);
    let mut x = seed;
    while s.len() < chars {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        s.push_str(WORDS[(x >> 60) as usize]);
        s.push(' ');
    }
    s.truncate(chars);
    s
}

/// A chat request of about `tokens` tokens: half in the system instruction, the rest over ten
/// earlier turns, plus a short last user turn.
fn request(tokens: usize) -> Value {
    let chars = tokens * 4;
    let mut contents: Vec<Value> = (0..10)
        .map(|i| {
            json!({
                "role": if i % 2 == 0 { "user" } else { "model" },
                "parts": [{"text": text(chars / 20, i as u64 + 1)}]
            })
        })
        .collect();
    contents.push(json!({"role": "user", "parts": [{"text": "And the penalties?"}]}));
    json!({
        "systemInstruction": {"role": "user", "parts": [{"text": text(chars / 2, 99)}]},
        "tools": [{"functionDeclarations": [{"name": "lookup", "description": "Finds a clause",
            "parameters": {"type": "OBJECT", "properties": {"clause_id": {"type": "STRING"}}}}]}],
        "contents": contents,
        "generationConfig": {"temperature": 0.2, "max_output_tokens": 512}
    })
}

const SCOPE: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const MODEL: &str = "models/gemini-2.5-flash";

fn benches(c: &mut Criterion) {
    for (label, tokens) in [("8k-tokens", 8_000), ("128k-tokens", 128_000)] {
        let body = request(tokens);
        let bytes = serde_json::to_vec(&body).expect("json");
        let map = body.as_object().expect("object").clone();
        let fp = fingerprint(SCOPE, MODEL, &map);
        assert_eq!(fp.boundaries.len(), 11, "boundary 0 plus ten earlier turns");

        let mut g = c.benchmark_group("fingerprint");
        g.throughput(criterion::Throughput::Bytes(bytes.len() as u64));
        g.bench_function(label, |b| b.iter(|| fingerprint(black_box(SCOPE), black_box(MODEL), black_box(&map))));
        g.finish();

        let mut g = c.benchmark_group("canonical-to-vec");
        g.throughput(criterion::Throughput::Bytes(bytes.len() as u64));
        g.bench_function(label, |b| b.iter(|| canonical::to_vec(black_box(&body))));
        g.finish();

        let mut g = c.benchmark_group("parse-then-fingerprint");
        g.throughput(criterion::Throughput::Bytes(bytes.len() as u64));
        g.bench_function(label, |b| {
            b.iter(|| {
                let v: Value = serde_json::from_slice(black_box(&bytes)).expect("json");
                fingerprint(SCOPE, MODEL, v.as_object().expect("object"))
            })
        });
        g.finish();
    }
}

criterion_group!(fingerprint_benches, benches);
criterion_main!(fingerprint_benches);

//! Synthetic workload shapes for tests and benchmarks of the caching policy, each a deterministic
//! function of a seed: documents with Zipf popularity (RAG), agent sessions sharing a
//! system+tools prefix, bursts after idle gaps, a Poisson mix of prefixes, and no reuse at all.
//! `docs/cost-policy.md` shows how gemgate, the hindsight baseline and the other rows fare on them.

use super::trace::SimRequest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Every shape, in the order tables list them.
pub const WORKLOADS: [&str; 5] = ["rag", "agents", "bursts", "poisson-mix", "no-reuse"];

/// The seed tables and tests use unless told otherwise.
pub const DEFAULT_SEED: u64 = crate::cli::WORKLOAD_SEED;

const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

/// The requests of workload `name` (see [`WORKLOADS`]) for `model`, sorted by time; `None` for an
/// unknown name.
pub fn generate(name: &str, seed: u64, model: &str) -> Option<Vec<SimRequest>> {
    let mut g = Gen { rng: StdRng::seed_from_u64(seed), model: model.to_string(), out: Vec::new() };
    match name {
        "rag" => g.rag(),
        "agents" => g.agents(),
        "bursts" => g.bursts(),
        "poisson-mix" => g.poisson_mix(),
        "no-reuse" => g.no_reuse(),
        _ => return None,
    }
    let mut out = g.out;
    out.sort_by_key(|r| r.t_ms);
    Some(out)
}

struct Gen {
    rng: StdRng,
    model: String,
    out: Vec<SimRequest>,
}

impl Gen {
    /// An exponential gap with this mean (a Poisson process's inter-arrival time).
    fn exp(&mut self, mean_ms: f64) -> i64 {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        (-u.ln() * mean_ms).round() as i64
    }

    fn uniform(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.random_range(lo..=hi)
    }

    /// Log-uniform in `[lo, hi]`: as many small values per decade as large ones.
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.rng.random::<f64>() * (hi / lo).ln()).exp()
    }

    fn push(&mut self, t_ms: i64, boundaries: Vec<(String, u64)>, tail: u64) {
        let prompt = boundaries.last().map_or(0, |b| b.1) + tail;
        let output_tokens = self.uniform(100, 600) as u64;
        self.out.push(SimRequest {
            t_ms,
            model: self.model.clone(),
            prompt_tokens: prompt,
            output_tokens,
            boundaries,
            implicit_cached_tokens: 0,
        });
    }

    /// 400 documents of 6k–40k tokens, chosen with Zipf popularity (exponent 1) by questions
    /// arriving as a Poisson process (one every 15 s on average) for 3 hours; each prompt is a
    /// 1.5k-token system instruction, the document, and a short question.
    fn rag(&mut self) {
        const DOCS: usize = 400;
        let sizes: Vec<u64> = (0..DOCS).map(|_| self.uniform(6_000, 40_000) as u64).collect();
        let weights: Vec<f64> = (1..=DOCS).map(|rank| 1.0 / rank as f64).collect();
        let total: f64 = weights.iter().sum();
        let cdf: Vec<f64> = weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w / total;
                Some(*acc)
            })
            .collect();
        let mut t = 0;
        while t < 3 * HOUR {
            t += self.exp(15_000.0);
            let u: f64 = self.rng.random();
            let doc = cdf.partition_point(|&c| c < u).min(DOCS - 1);
            let b = vec![("rag:system".into(), 1_500), (format!("rag:doc{doc}"), 1_500 + sizes[doc])];
            let tail = self.uniform(50, 300) as u64;
            self.push(t, b, tail);
        }
    }

    /// Agent sessions starting as a Poisson process (one a minute on average) for 3 hours; all
    /// share an 8k-token system+tools prefix; each runs 4–20 turns 20–90 s apart, and every turn
    /// adds 0.8k–3k tokens (the last answer and a tool result) to the history the next one sends.
    fn agents(&mut self) {
        let mut start = 0;
        let mut session = 0;
        while start < 3 * HOUR {
            start += self.exp(60_000.0);
            session += 1;
            let turns = self.uniform(4, 20);
            let mut chain: Vec<(String, u64)> = vec![("agents:system+tools".into(), 8_000)];
            let mut t = start;
            for turn in 0..turns {
                let grow = self.uniform(800, 3_000) as u64;
                self.push(t, chain.clone(), grow);
                let last = chain.last().map_or(0, |b| b.1);
                chain.push((format!("agents:s{session}:t{turn}"), last + grow));
                t += self.uniform(20 * SEC, 90 * SEC);
            }
        }
    }

    /// 12 prefixes of 8k–60k tokens, each used in bursts of 5–15 requests (a few seconds to a
    /// minute apart) separated by idle gaps of 40–180 minutes, for 12 hours.
    fn bursts(&mut self) {
        for p in 0..12 {
            let tokens = self.uniform(8_000, 60_000) as u64;
            let mut t = self.uniform(0, 60 * MIN);
            while t < 12 * HOUR {
                for _ in 0..self.uniform(5, 15) {
                    let tail = self.uniform(100, 800) as u64;
                    self.push(t, vec![(format!("bursts:p{p}"), tokens)], tail);
                    t += self.uniform(3 * SEC, 60 * SEC);
                }
                t += self.uniform(40 * MIN, 180 * MIN);
            }
        }
    }

    /// 40 prefixes of 4k–50k tokens (log-uniform), each asked as its own Poisson process with a
    /// mean gap between 30 s and 40 min (log-uniform), for 3 hours.
    fn poisson_mix(&mut self) {
        for p in 0..40 {
            let tokens = self.log_uniform(4_000.0, 50_000.0) as u64;
            let mean = self.log_uniform(30_000.0, 40.0 * MIN as f64);
            let mut t = self.exp(mean);
            while t < 3 * HOUR {
                let tail = self.uniform(100, 800) as u64;
                self.push(t, vec![(format!("mix:p{p}"), tokens)], tail);
                t += self.exp(mean);
            }
        }
    }

    /// 1,500 requests, one every 6 s on average, each with a 4k–30k-token prompt in two
    /// boundaries that no other request shares.
    fn no_reuse(&mut self) {
        let mut t = 0;
        for i in 0..1_500 {
            t += self.exp(6_000.0);
            let first = self.uniform(2_000, 15_000) as u64;
            let second = first + self.uniform(2_000, 15_000) as u64;
            let b = vec![(format!("once:{i}:a"), first), (format!("once:{i}:b"), second)];
            let tail = self.uniform(100, 800) as u64;
            self.push(t, b, tail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_same_seed_gives_the_same_trace_and_another_seed_another() {
        for name in WORKLOADS {
            let a = generate(name, 7, "gemini-2.5-flash").unwrap();
            assert_eq!(a, generate(name, 7, "gemini-2.5-flash").unwrap(), "{name}");
            assert_ne!(a, generate(name, 8, "gemini-2.5-flash").unwrap(), "{name}");
            assert!(a.windows(2).all(|w| w[0].t_ms <= w[1].t_ms), "{name} sorted");
            assert!(a.iter().all(|r| r.boundaries.last().is_some_and(|b| b.1 < r.prompt_tokens)), "{name}");
        }
        assert!(generate("nope", 1, "m").is_none());
    }

    /// How many requests reach each boundary key.
    fn uses(reqs: &[SimRequest]) -> HashMap<&str, usize> {
        let mut n = HashMap::new();
        for r in reqs {
            for (k, _) in &r.boundaries {
                *n.entry(k.as_str()).or_default() += 1;
            }
        }
        n
    }

    #[test]
    fn each_shape_has_the_reuse_it_claims() {
        let make = |name| generate(name, DEFAULT_SEED, "gemini-2.5-flash").unwrap();
        let none = make("no-reuse");
        assert!(uses(&none).values().all(|&n| n == 1));
        let rag = make("rag");
        let n = uses(&rag);
        assert!(n["rag:doc0"] > 10 * n.get("rag:doc99").copied().unwrap_or(1), "Zipf: the top document dominates");
        let agents = make("agents");
        let n = uses(&agents);
        assert_eq!(n["agents:system+tools"], agents.len(), "every turn shares the system+tools prefix");
        assert!(agents.iter().any(|r| r.boundaries.len() >= 15), "histories grow");
        let bursts = make("bursts");
        let idle = bursts
            .iter()
            .fold(HashMap::new(), |mut last: HashMap<&str, (i64, usize)>, r| {
                let e = last.entry(r.boundaries[0].0.as_str()).or_insert((r.t_ms, 0));
                e.1 += usize::from(r.t_ms - e.0 >= 40 * MIN);
                e.0 = r.t_ms;
                last
            })
            .values()
            .map(|e| e.1)
            .sum::<usize>();
        assert!(idle >= 12 * 3, "every prefix goes idle for 40+ minutes several times: {idle}");
    }
}

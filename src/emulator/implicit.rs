//! Implicit caching, as Gemini 2.5+ does it: a request whose leading turns repeat a prompt the
//! same caller sent to the same model a short while ago has those tokens billed at the cached
//! rate, with no cache object and no storage fee, and reported as `cachedContentTokenCount`. Off
//! unless `caching.implicit_window` is set: Google documents neither the window nor the matching,
//! so this is a model (a prefix of whole turns, seen within the window, at least the model's
//! explicit-cache minimum), not a replica.

use super::auth::Caller;
use super::prompt::Prompt;
pub use super::records::ImplicitPrefixes;
use super::tokens;
use crate::gemini::canonical;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

impl ImplicitPrefixes {
    /// Marks `p`'s part served from recently seen prefixes as cached (the longest such prefix of
    /// at least `min_tokens`), then records its prefixes as seen at `now`. A prompt that already
    /// reads an explicit cache is left alone.
    pub fn apply(
        &mut self,
        p: &mut Prompt,
        caller: &Caller,
        now: DateTime<Utc>,
        window: chrono::Duration,
        min_tokens: u64,
    ) {
        if p.cached.total() > 0 {
            return;
        }
        if self.swept.is_none_or(|t| now - t > window) {
            self.seen.retain(|_, t| now - *t <= window);
            self.swept = Some(now);
        }
        let keys = prefix_keys(p, caller);
        let hit = keys.iter().rposition(|k| self.seen.get(k).is_some_and(|t| now - *t <= window));
        if let Some(i) = hit {
            let counts =
                tokens::prompt_counts(p.system.as_ref(), p.tools.as_ref(), p.tool_config.as_ref(), &p.contents[..=i]);
            if counts.total() >= min_tokens {
                p.cached = counts;
            }
        }
        for k in keys {
            self.seen.insert(k, now);
        }
    }
}

/// One key per prefix that ends before the last turn: caller, model, system instruction, tools,
/// tool config and the turns up to it, in canonical form.
fn prefix_keys(p: &Prompt, caller: &Caller) -> Vec<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"gemgate-emulator/implicit/v1\0");
    h.update(caller.0.as_bytes());
    h.update(b"\0");
    h.update(p.model.as_bytes());
    for v in [&p.system, &p.tools, &p.tool_config] {
        h.update(b"\0section\0");
        if let Some(v) = v {
            canonical::write(v, &mut h);
        }
    }
    let turns = p.contents.len().saturating_sub(1);
    p.contents[..turns]
        .iter()
        .map(|c| {
            h.update(b"\0content\0");
            canonical::write(c, &mut h);
            h.clone().finalize().into()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prompt(turns: &[&str]) -> Prompt {
        Prompt {
            model: "models/gemini-2.5-flash".into(),
            system: None,
            tools: None,
            tool_config: None,
            generation_config: None,
            contents: turns.iter().map(|t| json!({"role": "user", "parts": [{"text": t}]})).collect(),
            counts: Default::default(),
            cached: Default::default(),
        }
    }

    #[test]
    fn a_repeated_prefix_inside_the_window_is_cached_and_outside_it_is_not() {
        let long = "word ".repeat(2_000);
        let caller = Caller("k".into());
        let window = chrono::Duration::seconds(60);
        let t0 = Utc::now();
        let mut seen = ImplicitPrefixes::default();
        let mut first = prompt(&[&long, "question one"]);
        seen.apply(&mut first, &caller, t0, window, 1_024);
        assert_eq!(first.cached.total(), 0, "nothing seen yet");
        let mut again = prompt(&[&long, "answer", "question two"]);
        seen.apply(&mut again, &caller, t0 + chrono::Duration::seconds(30), window, 1_024);
        let expected = tokens::prompt_counts(None, None, None, &again.contents[..1]).total();
        assert!(expected >= 1_024);
        assert_eq!(again.cached.total(), expected);
        let mut other = prompt(&[&long, "question three"]);
        seen.apply(&mut other, &Caller("someone else".into()), t0 + chrono::Duration::seconds(31), window, 1_024);
        assert_eq!(other.cached.total(), 0, "callers do not share implicit caches");
        let mut late = prompt(&[&long, "question four"]);
        seen.apply(&mut late, &caller, t0 + chrono::Duration::seconds(200), window, 1_024);
        assert_eq!(late.cached.total(), 0, "outside the window");
        let mut small = prompt(&["short", "question"]);
        seen.apply(&mut small, &caller, t0, window, 1_024);
        seen.apply(&mut small, &caller, t0, window, 1_024);
        assert_eq!(small.cached.total(), 0, "below the minimum");
    }
}

//! The caching decision: a pure function of (observations, clock, config) so it can be tested on
//! virtual time, replaced, and replayed by a simulator.
//!
//! The rule here is deliberately simple: a prefix becomes a cache once it has been seen
//! `min_hits` times within `window`, is large enough for the model, and is not cooling down after
//! a failed creation.

use std::collections::VecDeque;

/// What the gateway has seen of one prefix boundary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Recent arrival times (ms), oldest first; at most `min_hits` are kept.
    pub arrivals: VecDeque<i64>,
    /// No creation before this time (ms) after a failure.
    pub cooldown_until: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub min_hits: u32,
    pub window_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Make a cache for this prefix now.
    Create,
    /// Not yet (or not now): send the request as it came.
    Observe,
}

impl Observed {
    /// Records an arrival at `now`, keeping only what the rule needs.
    pub fn record(&mut self, now: i64, rule: &Rule) {
        self.arrivals.push_back(now);
        while self.arrivals.len() > rule.min_hits.max(1) as usize {
            self.arrivals.pop_front();
        }
    }
}

/// Decides for one eligible boundary (its size already checked against the model's minimum),
/// after the current arrival has been recorded.
pub fn decide(obs: &Observed, now: i64, rule: &Rule) -> Decision {
    if now < obs.cooldown_until {
        return Decision::Observe;
    }
    let recent = obs.arrivals.iter().filter(|&&t| now - t <= rule.window_ms).count();
    if recent >= rule.min_hits as usize { Decision::Create } else { Decision::Observe }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Rule = Rule { min_hits: 3, window_ms: 60_000 };

    fn after(times: &[i64]) -> Observed {
        let mut o = Observed::default();
        for &t in times {
            o.record(t, &RULE);
        }
        o
    }

    #[test]
    fn creates_on_the_kth_arrival_within_the_window() {
        assert_eq!(decide(&after(&[0]), 0, &RULE), Decision::Observe);
        assert_eq!(decide(&after(&[0, 10]), 10, &RULE), Decision::Observe);
        assert_eq!(decide(&after(&[0, 10, 20]), 20, &RULE), Decision::Create);
    }

    #[test]
    fn arrivals_outside_the_window_do_not_count() {
        assert_eq!(decide(&after(&[0, 10, 70_000]), 70_000, &RULE), Decision::Observe);
        assert_eq!(decide(&after(&[0, 10, 70_000, 70_001, 70_002]), 70_002, &RULE), Decision::Create);
    }

    #[test]
    fn cooldown_blocks_creation_until_it_ends() {
        let mut o = after(&[0, 1, 2]);
        o.cooldown_until = 5_000;
        assert_eq!(decide(&o, 2, &RULE), Decision::Observe);
        o.record(5_000, &RULE);
        assert_eq!(decide(&o, 5_000, &RULE), Decision::Create);
    }

    #[test]
    fn only_what_the_rule_needs_is_kept() {
        let o = after(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(o.arrivals, VecDeque::from(vec![4, 5, 6]));
    }
}

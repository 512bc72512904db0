//! First-sight creation for conversations. In chat traffic each turn's prompt is the previous
//! turn's prompt plus two new turns, so a request's own prefix (its longest cacheable boundary) is
//! new every time and the regret rule, which waits for a second arrival, never caches it. Yet the
//! next turn will read exactly that prefix if it comes. This rule learns, per tenant and model,
//! how often a request's own prefix comes back (`p`) and after how long, and creates the cache at
//! first sight when the expected saving pays for it:
//!
//! `p × d × (1 − q) ≥ margin × (C − d + S·ttl)`, where `d` is what one hit saves, `C` the
//! creation price (`C − d` because the creating request reads its own cache at once), `S` storage
//! per ms, `ttl` a high quantile of the observed return gaps, and `q` the share of a returning
//! prefix that the upstream's implicit caching already serves for this tenant (learned from
//! `cachedContentTokenCount` on requests sent without a gateway cache): on Gemini 2.5+ a quick
//! return is often cached for free, and a first-sight cache would then only add its own cost.
//!
//! Worst case: a wrong guess costs `C − d + S·ttl` (on Flash about 11 % of the prefix's input
//! price plus storage for the TTL), and guesses are made only while the measured return rate says
//! they pay on average. A tenant whose prefixes never return stops speculating once its rate is
//! measured (`speculate_min_evidence` first sightings).

use super::cost_policy::{CostPolicy, Decision, PrefixStats, learn_gap};
use super::reason::Reason;

/// One request arriving on a boundary of `tokens`, as `CostPolicy::on_arrival` needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Arrival {
    pub now_ms: i64,
    pub tokens: u64,
    /// Tokens a shorter gateway cache in use serves.
    pub covered: u64,
    /// What the upstream served implicitly on the last request through the boundary sent
    /// without a gateway cache.
    pub last_implicit: u64,
    /// The boundary is the request's own (longest eligible) prefix.
    pub own_prefix: bool,
    /// When the request continues a prefix seen before (a shorter boundary of it had
    /// arrivals): how long before this request that prefix was last seen. With the size of the
    /// gap, this is the request's first-sight class.
    pub since_shared_ms: Option<i64>,
}

impl Arrival {
    pub fn new(now_ms: i64, tokens: u64, covered: u64) -> Self {
        Arrival { now_ms, tokens, covered, ..Arrival::default() }
    }
}

/// How often, and after how long, the own prefixes of one class of requests came back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Returns {
    /// Decayed count of requests' own prefixes seen for the first time.
    pub firsts: f64,
    /// Decayed count of those that came back.
    pub returns: f64,
    /// Undecayed number of first sightings (for the evidence threshold).
    pub seen: u64,
    pub gap_mean_ms: f64,
    pub gap_dev_ms: f64,
    pub gaps: u64,
}

impl Returns {
    pub fn rate(&self) -> f64 {
        if self.firsts <= 0.0 { 0.0 } else { (self.returns / self.firsts).min(1.0) }
    }
}

/// First-sight classes: requests that open a new prefix, that continue one seen a while ago,
/// and that continue one seen within `first_sight_quick` (a conversation or agent loop in full
/// flow).
pub const CLASSES: usize = 3;

/// What the rule learns per (tenant, model).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReturnStats {
    /// Per first-sight class (only the first is used when `first_sight_classes` is off).
    pub classes: [Returns; CLASSES],
    /// Moving share of a request's previously seen prefix that the upstream's implicit caching
    /// served anyway, on requests sent without a gateway cache: what a first-sight cache would
    /// have saved is only the rest.
    pub implicit_share: f64,
    pub implicit_seen: u64,
}

/// Memory of the return rate: each new first sighting discounts the past by this factor.
const DECAY: f64 = 1.0 / 500.0;

/// Weight of one request in the moving implicit share.
const IMPLICIT_WEIGHT: f64 = 1.0 / 50.0;

impl ReturnStats {
    /// The return rate of class 0 (all requests when classes are off).
    pub fn rate(&self) -> f64 {
        self.classes[0].rate()
    }

    /// A request sent without a gateway cache shared `shared` tokens of prefix with earlier
    /// traffic and the upstream reported `cached` of its tokens cached (implicit caching).
    pub fn note_implicit(&mut self, shared: u64, cached: u64) {
        if shared == 0 {
            return;
        }
        let share = cached.min(shared) as f64 / shared as f64;
        self.implicit_share = if self.implicit_seen == 0 {
            share
        } else {
            (1.0 - IMPLICIT_WEIGHT) * self.implicit_share + IMPLICIT_WEIGHT * share
        };
        self.implicit_seen += 1;
    }
}

impl CostPolicy {
    /// One arrival on a boundary, for callers that drive both rules (the live engine and the
    /// simulator): `on_request` with the implicit coverage this request can expect, then
    /// `note_return`. `covered` is what a shorter gateway cache in use serves; `last_implicit`
    /// what the upstream served implicitly on the last request through this boundary sent
    /// without a gateway cache (known only from responses, so it lags by one request and says
    /// nothing before the second arrival). At least the tenant's implicit share `q` of the
    /// boundary is expected to be served implicitly. (Using `q` only on second arrivals cost
    /// more on Mooncake with implicit caching modelled: 46.28 against 45.57 USD at 3 minutes.)
    /// On a return, `Create` waits until `implicit_probes` returns were measured without a
    /// gateway cache (a first arrival cannot be served implicitly, so it does not wait). For the
    /// request's own (longest) boundary, an `Observe` is handed to `on_first_sight`.
    pub fn on_arrival(&self, rs: &mut ReturnStats, st: &mut PrefixStats, a: Arrival) -> Decision {
        let expected = (rs.implicit_share * a.tokens as f64) as u64;
        let implicit = a.covered.max(a.last_implicit).max(expected);
        let mut d = self.on_request(st, a.now_ms, a.tokens, implicit);
        self.note_return(rs, st, a.tokens);
        // Supersede guard: a longer cache that adds little to the one in use makes this request
        // pay its whole prefix again, and leaves the shorter cache unread.
        let adds = a.tokens.saturating_sub(a.covered) as f64;
        let guarded = a.covered > 0 && adds < self.cfg.supersede_share * a.tokens as f64;
        if guarded && matches!(d, Decision::Create { .. }) {
            d = Decision::Observe;
        }
        let d = match d {
            // Only a return can be served implicitly, so only returns wait (and are the probes).
            Decision::Create { .. } if st.arrivals >= 2 && self.measuring_implicit(rs) => {
                st.reason = Reason::ProbingImplicit;
                return Decision::Observe;
            }
            Decision::Observe if a.own_prefix => match self.on_first_sight(rs, st, a) {
                Decision::Create { .. } if guarded => Decision::Observe,
                d => d,
            },
            d => d,
        };
        st.reason = Reason::of(&d, st, a.now_ms);
        d
    }

    /// Whether too few returns were seen without a gateway cache to know what implicit caching
    /// serves for this tenant and model.
    pub fn measuring_implicit(&self, rs: &ReturnStats) -> bool {
        rs.implicit_seen < self.cfg.implicit_probes
    }

    /// Called after every `on_request`: the second arrival of a boundary first seen as a
    /// request's own prefix is a return, with its gap. With `first_sight_classes` only a return
    /// that a first-sight cache would still have served (within the TTL it would have had) counts:
    /// a later one pays nothing back for it.
    pub fn note_return(&self, rs: &mut ReturnStats, st: &mut PrefixStats, tokens: u64) {
        if st.arrivals != 2 || !st.first_as_longest || st.gaps == 0 {
            return;
        }
        st.first_as_longest = false;
        let ttl = self.first_sight_ttl_ms(&rs.classes[usize::from(st.first_class)], tokens);
        let c = &mut rs.classes[usize::from(st.first_class)];
        if !self.cfg.first_sight_classes || c.gaps == 0 || st.gap_mean_ms <= ttl as f64 {
            c.returns += 1.0;
        }
        // The prefix's first gap is the time it took to come back.
        learn_gap(&mut c.gap_mean_ms, &mut c.gap_dev_ms, &mut c.gaps, st.gap_mean_ms, self.cfg.gap_weight);
    }

    /// The TTL of a first-sight cache: a high quantile of the class's return gaps, within the
    /// policy's bounds.
    fn first_sight_ttl_ms(&self, c: &Returns, tokens: u64) -> i64 {
        let min = self.cfg.min_ttl.as_millis() as f64;
        (c.gap_mean_ms + 2.0 * c.gap_dev_ms).clamp(min, self.ttl_cap_ms(tokens, 1).max(min)).round() as i64
    }

    /// Called after `on_request` for the request's own (longest eligible) boundary: on its first
    /// sighting, `Create` when the tenant's return rate says a cache pays.
    pub fn on_first_sight(&self, rs: &mut ReturnStats, st: &mut PrefixStats, a: Arrival) -> Decision {
        let Arrival { now_ms, tokens, covered, .. } = a;
        if st.arrivals != 1 || st.cache.is_some() || st.first_as_longest {
            return Decision::Observe;
        }
        st.first_as_longest = true;
        let quick = self.cfg.first_sight_quick.as_millis() as i64;
        st.first_class = match a.since_shared_ms {
            _ if !self.cfg.first_sight_classes => 0,
            None => 0,
            Some(g) if g > quick => 1,
            Some(_) => 2,
        };
        let implicit_share = rs.implicit_share;
        let rs = &mut rs.classes[usize::from(st.first_class)];
        rs.firsts = rs.firsts * (1.0 - DECAY) + 1.0;
        rs.returns *= 1.0 - DECAY;
        rs.seen += 1;
        if !self.cfg.speculate
            || rs.seen < self.cfg.speculate_min_evidence
            || rs.gaps == 0
            || rs.rate() < self.cfg.speculate_min_rate
            || now_ms < st.cooldown_until_ms
        {
            return Decision::Observe;
        }
        let d = self.hit_saving_usd(tokens, covered);
        if d <= 0.0 {
            return Decision::Observe;
        }
        let ttl = self.first_sight_ttl_ms(rs, tokens);
        let cost = self.creation_usd(tokens) - d + self.storage_per_ms(tokens) * ttl as f64;
        // Expected reads: one return with probability p; with `speculate_reads`, a chain that
        // continues with probability p each time (a session that keeps going reads the cache at
        // every later turn), at most that many.
        let p = rs.rate();
        let reads =
            if self.cfg.speculate_reads > 0.0 { (p / (1.0 - p).max(1e-9)).min(self.cfg.speculate_reads) } else { p };
        // A return that implicit caching would have served saves nothing more through a cache.
        if reads * d * (1.0 - implicit_share) >= self.cfg.speculate_margin * cost.max(0.0) {
            Decision::Create { ttl_ms: ttl }
        } else {
            Decision::Observe
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::PriceTable;
    use crate::caching::cost_policy::CostPolicyConfig;

    fn policy() -> CostPolicy {
        CostPolicy::new(CostPolicyConfig::default(), &PriceTable::builtin(), "gemini-2.5-flash").0
    }

    /// Drives a conversation-like stream: each request's own prefix is new; a share `returning`
    /// of them come back `gap_ms` later. Returns how many first-sight creations were made.
    fn drive(returning: f64, n: usize, gap_ms: i64) -> usize {
        let p = policy();
        let mut rs = ReturnStats::default();
        let mut created = 0;
        for i in 0..n {
            let now = i as i64 * 1_000;
            let mut st = PrefixStats::default();
            p.on_request(&mut st, now, 8_000, 0);
            if matches!(p.on_first_sight(&mut rs, &mut st, Arrival::new(now, 8_000, 0)), Decision::Create { .. }) {
                created += 1;
                st.on_gone(now); // the test only counts decisions
            }
            if (i as f64 * returning).fract() + returning >= 1.0 {
                // Sent without a gateway cache (the test drops the ones it made); the upstream
                // served none of it implicitly.
                p.on_arrival(&mut rs, &mut st, Arrival::new(now + gap_ms, 8_000, 0));
                rs.note_implicit(8_000, 0);
            }
        }
        created
    }

    #[test]
    fn prefixes_that_usually_return_are_cached_at_first_sight() {
        // Four in five come back (the rule needs at least `speculate_min_rate` of them).
        let n = drive(0.8, 200, 30_000);
        assert!(n > 150, "{n}");
    }

    #[test]
    fn prefixes_that_never_return_are_never_cached_at_first_sight() {
        assert_eq!(drive(0.0, 500, 30_000), 0);
    }

    #[test]
    fn returns_that_implicit_caching_serves_are_not_worth_a_cache() {
        let p = policy();
        let mut rs = ReturnStats::default();
        for _ in 0..200 {
            rs.note_implicit(8_000, 8_000);
        }
        let mut created = 0;
        for i in 0..200 {
            let now = i * 1_000;
            let mut st = PrefixStats::default();
            p.on_request(&mut st, now, 8_000, 0);
            created +=
                usize::from(p.on_first_sight(&mut rs, &mut st, Arrival::new(now, 8_000, 0)) != Decision::Observe);
            p.on_request(&mut st, now + 30_000, 8_000, 8_000);
            p.note_return(&mut rs, &mut st, 8_000);
        }
        assert!(rs.rate() > 0.9, "every prefix came back");
        assert_eq!(created, 0);
    }

    #[test]
    fn a_low_return_rate_does_not_pay() {
        // On Flash a first-sight cache costs about 11 % of the prefix's input price plus storage;
        // one return in ten saves less than that.
        assert_eq!(drive(0.1, 400, 30_000), 0);
    }

    /// A tenant whose returns have been measured (`implicit_probes` of them) with `share` of
    /// the shared prefix served implicitly each time.
    fn measured(share: f64) -> ReturnStats {
        let mut rs = ReturnStats::default();
        (0..CostPolicyConfig::default().implicit_probes)
            .for_each(|_| rs.note_implicit(1_000, (share * 1_000.0) as u64));
        rs
    }

    #[test]
    fn no_cache_is_made_before_implicit_caching_was_measured() {
        let p = policy();
        let arrive = |rs: &mut ReturnStats| {
            let mut st = PrefixStats::default();
            [0, 10_000].map(|t| p.on_arrival(rs, &mut st, Arrival::new(t, 50_000, 0)))[1]
        };
        let mut rs = ReturnStats::default();
        assert_eq!(arrive(&mut rs), Decision::Observe, "a prefix back after 10 s, nothing measured yet");
        assert!(matches!(arrive(&mut measured(0.0)), Decision::Create { .. }), "measured: none served implicitly");
    }

    #[test]
    fn returns_implicit_caching_serves_build_no_regret() {
        let p = policy();
        let mut rs = measured(1.0);
        let mut st = PrefixStats::default();
        // Back every 30 s for an hour: each return already came back cached from the upstream.
        for i in 0..120 {
            assert_eq!(
                p.on_arrival(&mut rs, &mut st, Arrival::new(i * 30_000, 50_000, 0)),
                Decision::Observe,
                "arrival {i}"
            );
        }
    }
}

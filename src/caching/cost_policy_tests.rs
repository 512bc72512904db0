//! Tests of the cost policy on synthetic arrival patterns, with costs compared to never caching.

use super::*;
use std::time::Duration;

const T: u64 = 100_000; // flash: C = $0.03, one hit saves $0.027, storage $0.10 per hour
const MIN: i64 = 60_000;

fn policy() -> CostPolicy {
    CostPolicy::new(CostPolicyConfig::default(), &PriceTable::builtin(), "gemini-2.5-flash").0
}

/// The tuning before v2 (no rewarm, TTL from every gap up to the break-even).
fn policy_v1() -> CostPolicy {
    CostPolicy::new(CostPolicyConfig::v1(), &PriceTable::builtin(), "gemini-2.5-flash").0
}

#[derive(Debug, Default)]
struct Run {
    decisions: Vec<Decision>,
    deletes: usize,
    creations: usize,
    cost: f64,
    never: f64,
    /// Token-ms of storage paid.
    storage: f64,
}

/// Replays arrivals of one prefix through the policy with a 10 s sweeper, billing like Gemini.
fn drive(p: &CostPolicy, arrivals: &[i64], implicit: u64) -> Run {
    let (input, cached) = (0.30e-6, 0.03e-6);
    let mut st = PrefixStats::default();
    let mut run = Run::default();
    let mut live: Option<(i64, i64)> = None;
    let bill = |run: &mut Run, live: &mut Option<(i64, i64)>, until: i64| {
        if let Some((start, expire)) = live.take() {
            let ms = (until.min(expire) - start).max(0) as f64;
            run.storage += T as f64 * ms;
            run.cost += p.storage_per_ms(T) * ms;
        }
    };
    let end = arrivals.last().unwrap() + 3 * 3_600_000;
    let mut tick = arrivals[0];
    for &t in arrivals.iter().chain(std::iter::once(&end)) {
        while tick <= t {
            if live.is_some_and(|(_, e)| e <= tick) {
                bill(&mut run, &mut live, tick);
                st.on_gone(tick);
            }
            if p.on_tick(&st, tick, T) == Decision::Delete {
                bill(&mut run, &mut live, tick);
                st.on_gone(tick);
                run.deletes += 1;
            }
            tick += 10_000;
        }
        if t == end {
            break;
        }
        let miss = implicit.min(T) as f64 * cached + (T - implicit.min(T)) as f64 * input;
        run.never += miss;
        let d = p.on_request(&mut st, t, T, implicit);
        if st.cache.is_none() && live.is_some() {
            bill(&mut run, &mut live, i64::MAX); // lapsed in the policy's eyes: runs to expiry
        }
        run.decisions.push(d);
        match d {
            Decision::Create { ttl_ms } => {
                run.creations += 1;
                run.cost += p.creation_usd(T) + T as f64 * cached;
                live = Some((t, t + ttl_ms));
                st.on_created(t, t + ttl_ms);
            }
            Decision::Renew { ttl_ms } => {
                live = live.map(|(s, _)| (s, t + ttl_ms));
                st.on_renewed(t + ttl_ms);
                run.cost += T as f64 * cached;
            }
            Decision::Use => run.cost += T as f64 * cached,
            Decision::Observe => run.cost += miss,
            other => panic!("on_request never says {other:?}"),
        }
    }
    bill(&mut run, &mut live, i64::MAX);
    run
}

fn count(run: &Run, f: impl Fn(&Decision) -> bool) -> usize {
    run.decisions.iter().filter(|d| f(d)).count()
}

#[test]
fn steady_hot_prefix_creates_renews_and_saves() {
    let arrivals: Vec<i64> = (0..=60).map(|i| i * MIN).collect();
    let run = drive(&policy(), &arrivals, 0);
    // Second arrival: one miss lost $0.027 − $0.0017 storage ≥ 2 × (C − d + S·ttl) ≈ $0.014.
    assert_eq!(run.decisions[0], Decision::Observe);
    assert!(matches!(run.decisions[1], Decision::Create { .. }), "{:?}", run.decisions);
    assert_eq!(run.creations, 1, "kept alive by renewals: {:?}", run.decisions);
    assert!(count(&run, |d| matches!(d, Decision::Renew { .. })) >= 5);
    assert_eq!(count(&run, |d| *d == Decision::Observe), 1);
    // never: 61 × $0.03 = $1.83; cached: 1 miss, one creation, 60 reads, about 1 h of storage.
    assert!((run.never - 1.83).abs() < 1e-9);
    assert!(run.cost < 0.25 * run.never, "{} vs {}", run.cost, run.never);
}

#[test]
fn one_off_prefixes_never_create_and_cost_exactly_passthrough() {
    let p = policy();
    for arrivals in [vec![0], vec![0, 20 * MIN], vec![0, 30 * MIN, 90 * MIN]] {
        let run = drive(&p, &arrivals, 0);
        assert!(run.decisions.iter().all(|d| *d == Decision::Observe), "{arrivals:?}");
        assert_eq!(run.cost, run.never);
    }
}

#[test]
fn burst_creates_then_lets_it_go_cheaply() {
    let mut arrivals: Vec<i64> = (0..10).map(|i| i * 500).collect();
    arrivals.push(5 * 3_600_000); // long after the burst: the cache must be gone by then
    let run = drive(&policy_v1(), &arrivals, 0);
    assert!(matches!(run.decisions[1], Decision::Create { .. }));
    assert_eq!(run.creations, 1);
    assert_eq!(*run.decisions.last().unwrap(), Decision::Observe);
    // Storage paid: at most the TTL after the burst (gaps of 0.5 s → the 60 s minimum TTL).
    assert!(run.storage <= T as f64 * 70_000.0, "{}", run.storage);
    assert!(run.cost < 0.5 * run.never, "{} vs {}", run.cost, run.never);
}

#[test]
fn diurnal_gap_lets_the_cache_lapse_instead_of_paying_storage() {
    let day: Vec<i64> = (0..30).map(|i| i * MIN).collect();
    let night = 8 * 3_600_000;
    let arrivals: Vec<i64> = day.iter().copied().chain(day.iter().map(|t| t + night)).collect();
    let run = drive(&policy(), &arrivals, 0);
    assert_eq!(run.creations, 2, "one per active period: {:?}", run.decisions);
    // Active 2 × 30 min plus at most the break-even TTL (16.2 min) twice; never the 8 h night.
    let hours = run.storage / T as f64 / 3_600_000.0;
    assert!(hours < 1.6, "stored {hours} h");
    assert!(run.cost < 0.3 * run.never);
}

#[test]
fn prefix_served_by_implicit_caching_is_not_cached_explicitly() {
    let arrivals: Vec<i64> = (0..=60).map(|i| i * MIN).collect();
    let run = drive(&policy(), &arrivals, T);
    assert_eq!(run.creations, 0);
    assert_eq!(run.cost, run.never);
    // Mostly implicit (90 %): the leftover saving cannot pay for a cache of the whole prefix.
    let run = drive(&policy(), &arrivals, T * 9 / 10);
    assert_eq!(run.creations, 0, "{:?}", run.decisions);
}

#[test]
fn ttl_follows_gaps_within_bounds_and_break_even() {
    let p = policy_v1();
    let mut st = PrefixStats::default();
    assert_eq!(p.ttl_ms(&st, T), 300_000, "first_ttl before any gap");
    st.gaps = 1;
    st.gap_mean_ms = 1_000.0;
    assert_eq!(p.ttl_ms(&st, T), 60_000, "clamped up to min_ttl");
    st.gap_mean_ms = 100_000.0;
    st.gap_dev_ms = 60_000.0;
    assert_eq!(p.ttl_ms(&st, T), 340_000, "mean + 4 deviations");
    st.gap_dev_ms = 10_000.0;
    assert_eq!(p.ttl_ms(&st, T), 200_000, "at least twice the mean");
    st.gap_mean_ms = 7_200_000.0;
    // Break-even: one hit saves $0.27/M; storage is $1/M per hour → 0.27 h = 972 s.
    assert_eq!(p.ttl_ms(&st, T), 972_000);
}

#[test]
fn sweeper_deletes_an_idle_cache_with_paid_time_left_and_lets_others_expire() {
    let p = policy_v1();
    let mut st = PrefixStats { gaps: 3, gap_mean_ms: 10_000.0, gap_dev_ms: 1_000.0, ..PrefixStats::default() };
    assert_eq!(p.on_tick(&st, 0, T), Decision::Observe);
    st.on_created(0, 600_000);
    assert_eq!(p.on_tick(&st, 30_000, T), Decision::LetExpire, "idle less than a TTL");
    assert_eq!(p.on_tick(&st, 61_000, T), Decision::Delete);
    assert_eq!(p.on_tick(&st, 590_000, T), Decision::LetExpire, "little left to save");
    st.on_gone(61_000);
    assert_eq!(st.paid_until_ms, 61_000);
    assert_eq!(st.cache, None);
}

#[test]
fn cooldown_after_failed_creation_blocks_creating_until_it_ends() {
    let p = policy();
    let mut st = PrefixStats::default();
    let decisions: Vec<Decision> = [0, 1].map(|t| p.on_request(&mut st, t, T, 0)).into();
    assert!(matches!(decisions[1], Decision::Create { .. }));
    st.on_create_failed(2, 300_000);
    assert_eq!(p.on_request(&mut st, 3, T, 0), Decision::Observe);
    assert_eq!(p.on_request(&mut st, 299_999, T, 0), Decision::Observe);
    // The evidence is kept (less the storage a cache would have cost meanwhile).
    assert!(matches!(p.on_request(&mut st, 300_002, T, 0), Decision::Create { .. }));
}

#[test]
fn config_parses_humantime_and_rejects_unknown_keys() {
    let c: CostPolicyConfig = toml::from_str("min_ttl = \"2m\"\ncreate_margin = 1.5").unwrap();
    assert_eq!(c.min_ttl, Duration::from_secs(120));
    assert_eq!(c.create_margin, 1.5);
    assert_eq!(c.max_ttl, CostPolicyConfig::default().max_ttl);
    assert!(toml::from_str::<CostPolicyConfig>("min_tll = \"2m\"").is_err());
}

#[test]
fn a_burst_after_an_idle_gap_is_rewarmed_at_its_first_request() {
    // Two bursts of ten requests two hours apart: v2 caches the second from its first request
    // (the first burst's cache was read eight times), v1 waits for the regret to build again.
    let burst: Vec<i64> = (0..10).map(|i| i * 5_000).collect();
    let arrivals: Vec<i64> = burst.iter().copied().chain(burst.iter().map(|t| t + 2 * 3_600_000)).collect();
    let v2 = drive(&policy(), &arrivals, 0);
    assert!(matches!(v2.decisions[10], Decision::Create { .. }), "{:?}", v2.decisions);
    let v1 = drive(&policy_v1(), &arrivals, 0);
    assert_eq!(v1.decisions[10], Decision::Observe);
    assert!(v2.cost < v1.cost, "{} vs {}", v2.cost, v1.cost);
}

#[test]
fn idle_gaps_do_not_teach_the_ttl_and_the_cap_grows_with_evidence() {
    let p = policy();
    let mut st = PrefixStats::default();
    for t in [0, 10_000, 20_000, 3 * 3_600_000, 3 * 3_600_000 + 10_000] {
        p.on_request(&mut st, t, T, T); // served implicitly: nothing is created
    }
    assert_eq!(st.gaps, 3, "the three-hour gap is an idle period");
    assert!((st.gap_mean_ms - 10_000.0).abs() < 1e-6);
    // The cap: sqrt(break-even 972 s × 40 s × arrivals), at most the break-even.
    assert_eq!(p.ttl_cap_ms(T, 1).round(), (972_000.0f64 * 40_000.0).sqrt().round());
    assert!(p.ttl_cap_ms(T, 4) > p.ttl_cap_ms(T, 1));
    assert!((p.ttl_cap_ms(T, 1_000) - 972_000.0).abs() < 1e-3);
}

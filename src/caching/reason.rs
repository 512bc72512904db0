//! Why a request was or was not served from a gateway cache: the `x-gemgate-cache-reason` header,
//! `usageMetadata.gemgate.cacheReason`, and the reason beside each prefix in the admin listings.
//! A small fixed set (metric- and log-friendly); docs/cost-policy.md explains each value.

/// One reason. `as_str` is the wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reason {
    /// Served through a live gateway cache.
    Hit,
    /// A cache was created for the request's prefix and served it.
    Created,
    /// The policy asked for a cache, but its creation (by this request or another) did not finish
    /// within `caching.create_wait`: sent uncached.
    Creating,
    /// A cache was tried and failed (creation failed, or the upstream refused it): sent as it came.
    FailedOpen,
    /// No prefix of the request reaches the model's minimum cache size (with the size margin).
    BelowMinimum,
    /// The model has no explicit caching (for this tenant).
    NoExplicitCaching,
    /// The prefix is new, and first-sight creation does not pay for this kind of request (yet).
    FirstSight,
    /// The policy would cache this repeat, but first measures what the upstream's implicit
    /// caching already serves for the tenant and model.
    ProbingImplicit,
    /// Seen before, but what a cache would save does not yet cover its creation and storage.
    #[default]
    NotWorthIt,
    /// A creation for this prefix failed recently; none is tried until the cooldown ends.
    Cooldown,
    /// Caching is turned off (`caching.enabled = false`).
    CachingOff,
    /// The request names its own `cachedContent`.
    ClientCache,
    /// Not a caching candidate: no credential, not a model call, or no cacheable boundary.
    NotEligible,
}

impl Reason {
    /// Every reason, in documentation order.
    pub const ALL: [Reason; 13] = [
        Reason::Hit,
        Reason::Created,
        Reason::Creating,
        Reason::FailedOpen,
        Reason::BelowMinimum,
        Reason::NoExplicitCaching,
        Reason::FirstSight,
        Reason::ProbingImplicit,
        Reason::NotWorthIt,
        Reason::Cooldown,
        Reason::CachingOff,
        Reason::ClientCache,
        Reason::NotEligible,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Hit => "hit",
            Reason::Created => "created",
            Reason::Creating => "creating",
            Reason::FailedOpen => "failed-open",
            Reason::BelowMinimum => "below-minimum",
            Reason::NoExplicitCaching => "no-explicit-caching",
            Reason::FirstSight => "first-sight",
            Reason::ProbingImplicit => "probing-implicit",
            Reason::NotWorthIt => "not-worth-it",
            Reason::Cooldown => "cooldown",
            Reason::CachingOff => "caching-off",
            Reason::ClientCache => "client-cache",
            Reason::NotEligible => "not-eligible",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The reason for a rule's decision on a boundary, from the boundary's state after it.
    pub fn of(d: &super::cost_policy::Decision, st: &super::cost_policy::PrefixStats, now_ms: i64) -> Reason {
        use super::cost_policy::Decision;
        match d {
            Decision::Use | Decision::Renew { .. } => Reason::Hit,
            Decision::Create { .. } => Reason::Created,
            _ if now_ms < st.cooldown_until_ms => Reason::Cooldown,
            _ if st.arrivals <= 1 => Reason::FirstSight,
            _ => Reason::NotWorthIt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_from_its_wire_form() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        let names: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        assert_eq!(Reason::parse("made-up"), None);
    }
}

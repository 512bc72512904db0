//! Which tier a generate request goes to: the `x-gemgate-defer` / `x-gemgate-deadline` /
//! `x-gemgate-wait` headers first, then the config rules; streams never go to the Batch API.

use crate::config::{DeferralConfig, DeferralRule};
use crate::error::GatewayError;
use http::HeaderMap;
use std::time::Duration;

pub const DEFER_HEADER: &str = "x-gemgate-defer";
pub const DEADLINE_HEADER: &str = "x-gemgate-deadline";
pub const WAIT_HEADER: &str = "x-gemgate-wait";
pub const TIER_HEADER: &str = "x-gemgate-tier";

/// The tier a request is served at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Standard,
    Flex,
    Batch,
    /// `serviceTier: priority`: dearer, faster; the upstream serves it standard when the account
    /// is over its priority limit (and says so in `usageMetadata.serviceTier`).
    Priority,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Flex => "flex",
            Tier::Batch => "batch",
            Tier::Priority => "priority",
        }
    }
    /// Price discount against standard (the upstream's published 50 % for batch and flex;
    /// negative for priority's surcharge, 80 % by the default price table).
    pub fn discount(self) -> f64 {
        match self {
            Tier::Standard => 0.0,
            Tier::Flex | Tier::Batch => 0.5,
            Tier::Priority => -0.8,
        }
    }

    /// The service tier the request is priced at.
    pub fn service(self) -> crate::accounting::Service {
        match self {
            Tier::Standard => crate::accounting::Service::Standard,
            Tier::Flex => crate::accounting::Service::Flex,
            Tier::Batch => crate::accounting::Service::Batch,
            Tier::Priority => crate::accounting::Service::Priority,
        }
    }
}

/// What the marking says about one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Marking {
    pub tier: Tier,
    /// Batch only: hold the connection this long for the result (None: answer 202 at once).
    pub wait: Option<Duration>,
}

/// What the marking looks at.
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub path: &'a str,
    /// `models/…`
    pub model: &'a str,
    pub scope: Option<&'a str>,
    pub stream: bool,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, GatewayError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => {
            v.to_str().map(|s| Some(s.trim())).map_err(|_| GatewayError::InvalidArgument(format!("{name} is not text")))
        }
    }
}

fn duration(name: &str, v: &str) -> Result<Duration, GatewayError> {
    humantime::parse_duration(v).map_err(|_| {
        GatewayError::InvalidArgument(format!("{name} must be a duration such as 30s, 10m or 24h, not {v:?}"))
    })
}

fn rule_matches(r: &DeferralRule, req: &Request<'_>) -> bool {
    let model_id = req.model.split_once('/').map_or(req.model, |(_, id)| id);
    let rule_model = r.model.strip_prefix("models/").unwrap_or(&r.model);
    (r.scope.is_empty() || req.scope == Some(r.scope.as_str()))
        && (rule_model.is_empty() || model_id.starts_with(rule_model))
        && (r.path.is_empty() || req.path.starts_with(&r.path))
        && (r.header.is_empty() || {
            let (name, value) = match r.header.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (r.header.trim(), None),
            };
            match (req.headers.get(name).and_then(|v| v.to_str().ok()), value) {
                (Some(_), None) => true,
                (Some(got), Some(want)) => got.trim() == want,
                (None, _) => false,
            }
        })
}

/// Decides the tier. `Ok(None)`: not marked at all (the ordinary path). A malformed header is a
/// client error (400), never silently ignored.
pub fn decide(cfg: &DeferralConfig, req: &Request<'_>) -> Result<Option<Marking>, GatewayError> {
    let h = req.headers;
    let (mode, mut deadline) = match header(h, DEFER_HEADER)? {
        Some(m) => (m.to_ascii_lowercase(), None),
        None => match cfg.rules.iter().find(|r| rule_matches(r, req)) {
            Some(r) => {
                (r.defer.clone(), (!r.deadline.is_empty()).then(|| duration("deadline", &r.deadline)).transpose()?)
            }
            None => return Ok(None),
        },
    };
    if let Some(d) = header(h, DEADLINE_HEADER)? {
        deadline = Some(duration(DEADLINE_HEADER, d)?);
    }
    let wait = match header(h, WAIT_HEADER)? {
        Some(w) => Some(duration(WAIT_HEADER, w)?.min(cfg.max_wait)),
        None => None,
    };
    let tier = match mode.as_str() {
        "batch" => Tier::Batch,
        "flex" => Tier::Flex,
        "priority" => Tier::Priority,
        "standard" | "none" | "off" => Tier::Standard,
        "auto" => match deadline {
            Some(d) if d >= cfg.auto_batch_min_deadline => Tier::Batch,
            Some(d) if d >= cfg.auto_flex_min_deadline => Tier::Flex,
            Some(_) => Tier::Standard,
            None => Tier::Flex,
        },
        other => {
            return Err(GatewayError::InvalidArgument(format!(
                "{DEFER_HEADER} must be batch, flex, priority, auto or standard, not {other:?}"
            )));
        }
    };
    let tier = match tier {
        Tier::Batch if req.stream => match cfg.stream_batch_as.as_str() {
            "standard" => Tier::Standard,
            _ => Tier::Flex,
        },
        t => t,
    };
    Ok(Some(Marking { tier, wait }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(h: &'a HeaderMap, stream: bool) -> Request<'a> {
        Request {
            headers: h,
            path: "/v1beta/models/gemini-2.5-flash:generateContent",
            model: "models/gemini-2.5-flash",
            scope: Some("abc"),
            stream,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn headers_mark_and_auto_follows_the_deadline() {
        let cfg = DeferralConfig::default();
        let t = |pairs: &[(&'static str, &'static str)], stream| {
            decide(&cfg, &req(&headers(pairs), stream)).unwrap().map(|m| m.tier)
        };
        assert_eq!(t(&[], false), None);
        assert_eq!(t(&[("x-gemgate-defer", "batch")], false), Some(Tier::Batch));
        assert_eq!(t(&[("x-gemgate-defer", "FLEX")], false), Some(Tier::Flex));
        assert_eq!(t(&[("x-gemgate-defer", "priority")], true), Some(Tier::Priority));
        let auto = |d| [("x-gemgate-defer", "auto"), ("x-gemgate-deadline", d)];
        assert_eq!(t(&auto("2days"), false), Some(Tier::Batch));
        assert_eq!(t(&auto("1h"), false), Some(Tier::Flex));
        assert_eq!(t(&auto("30s"), false), Some(Tier::Standard));
        // Streams are never batched.
        assert_eq!(t(&[("x-gemgate-defer", "batch")], true), Some(Tier::Flex));
    }

    #[test]
    fn wait_is_capped_and_bad_values_are_client_errors() {
        let cfg = DeferralConfig::default();
        let h = headers(&[("x-gemgate-defer", "batch"), ("x-gemgate-wait", "9999h")]);
        assert_eq!(decide(&cfg, &req(&h, false)).unwrap().unwrap().wait, Some(cfg.max_wait));
        let h = headers(&[("x-gemgate-defer", "later")]);
        assert_eq!(decide(&cfg, &req(&h, false)).unwrap_err().http_status(), 400);
        let h = headers(&[("x-gemgate-defer", "auto"), ("x-gemgate-deadline", "soon")]);
        assert_eq!(decide(&cfg, &req(&h, false)).unwrap_err().http_status(), 400);
    }

    #[test]
    fn rules_mark_unmodified_requests_and_headers_win() {
        let cfg = DeferralConfig {
            rules: vec![
                DeferralRule { model: "gemini-2.5-pro".into(), defer: "batch".into(), ..Default::default() },
                DeferralRule {
                    header: "x-team=analytics".into(),
                    defer: "auto".into(),
                    deadline: "3days".into(),
                    ..Default::default()
                },
                DeferralRule { scope: "abc".into(), defer: "flex".into(), ..Default::default() },
            ],
            ..Default::default()
        };
        let tier = |h: &HeaderMap| decide(&cfg, &req(h, false)).unwrap().map(|m| m.tier);
        assert_eq!(tier(&headers(&[("x-team", "analytics")])), Some(Tier::Batch));
        assert_eq!(tier(&headers(&[])), Some(Tier::Flex));
        assert_eq!(tier(&headers(&[("x-gemgate-defer", "standard")])), Some(Tier::Standard));
        let empty = HeaderMap::new();
        let mut other = req(&empty, false);
        other.scope = Some("zzz");
        assert_eq!(decide(&cfg, &other).unwrap(), None);
        // The rule form of priority.
        let cfg = DeferralConfig {
            rules: vec![DeferralRule { model: "gemini-2.5".into(), defer: "priority".into(), ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(decide(&cfg, &req(&empty, false)).unwrap().map(|m| m.tier), Some(Tier::Priority));
    }
}

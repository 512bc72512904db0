//! Semantic checks run after parsing; every problem is collected and named by its key.

use super::Config;
use std::fmt;

/// All problems found in a configuration, each naming its key.
#[derive(Debug, Default)]
pub struct ConfigErrors(pub Vec<(String, String)>);

impl ConfigErrors {
    pub fn push(&mut self, key: impl Into<String>, problem: String) {
        self.0.push((key.into(), problem));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for (k, p) in &self.0 {
            writeln!(f, "  {k}: {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    pub(super) fn validate(&self, errors: &mut ConfigErrors) {
        self.spend.validate(errors);
        match url::Url::parse(&self.upstream.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(_) => errors.push("upstream.url", "must be an http(s) URL with a host".into()),
            Err(e) => errors.push("upstream.url", format!("not a URL: {e}")),
        }
        if !self.server.public_url.is_empty() && url::Url::parse(&self.server.public_url).is_err() {
            errors.push("server.public_url", "not a URL".into());
        }
        if self.server.worker_threads > 1024 {
            errors.push("server.worker_threads", "must be at most 1024 (0: one per CPU core)".into());
        }
        if self.server.max_json_body_bytes == 0 {
            errors.push("server.max_json_body_bytes", "must be greater than 0".into());
        }
        if self.server.max_json_body_bytes > self.server.max_body_bytes {
            errors.push("server.max_json_body_bytes", "must not exceed server.max_body_bytes".into());
        }
        if self.server.header_read_timeout.is_zero() {
            errors.push("server.header_read_timeout", "must be greater than 0".into());
        }
        if self.server.admin_token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push("server.admin_token", "must not contain spaces or control characters".into());
        }
        if self.caching.create_timeout.is_zero() {
            errors.push("caching.create_timeout", "must be greater than 0".into());
        }
        if self.upstream.timeout.is_zero() {
            errors.push("upstream.timeout", "must be greater than 0".into());
        }
        if self.upstream.connect_timeout.is_zero() {
            errors.push("upstream.connect_timeout", "must be greater than 0".into());
        }
        if !matches!(self.telemetry.log_format.as_str(), "text" | "json") {
            errors.push("telemetry.log_format", "must be `text` or `json`".into());
        }
        if tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_level).is_err() {
            errors.push("telemetry.log_level", "not a valid tracing filter".into());
        }
        if !matches!(self.store.backend.as_str(), "sqlite" | "memory" | "redis") {
            errors.push("store.backend", "must be `sqlite`, `redis` or `memory`".into());
        }
        if self.store.backend == "redis" && redis::Client::open(self.store.redis_url.as_str()).is_err() {
            errors.push("store.redis_url", "not a valid redis:// URL".into());
        }
        if self.store.redis_timeout.is_zero() {
            errors.push("store.redis_timeout", "must be greater than 0".into());
        }
        if !(self.clock.speed > 0.0 && self.clock.speed <= 10_000.0) {
            errors.push("clock.speed", "must be greater than 0 and at most 10000".into());
        }
        let c = &self.caching;
        if !matches!(c.policy.as_str(), "cost" | "hits") {
            errors.push("caching.policy", "must be `cost` or `hits`".into());
        }
        if let Err(e) = self.price_table() {
            let key = if self.pricing.file.as_os_str().is_empty() { "caching.pricing_file" } else { "pricing.file" };
            errors.push(key, format!("{e:#}"));
        }
        if self.catalog.max_entries == 0 {
            errors.push("catalog.max_entries", "must be greater than 0".into());
        }
        if self.catalog.ttl.is_zero() {
            errors.push("catalog.ttl", "must be greater than 0".into());
        }
        if c.cost.min_ttl > c.cost.max_ttl {
            errors.push("caching.cost.min_ttl", "must not exceed caching.cost.max_ttl".into());
        }
        if c.cost.create_margin < 1.0 {
            errors.push("caching.cost.create_margin", "must be at least 1".into());
        }
        if c.min_hits == 0 {
            errors.push("caching.min_hits", "must be at least 1".into());
        }
        if c.ttl.as_secs() < 60 {
            errors.push("caching.ttl", "must be at least 60s".into());
        }
        if c.renew_before >= c.ttl {
            errors.push("caching.renew_before", "must be shorter than caching.ttl".into());
        }
        if !(c.initial_bytes_per_token > 0.5 && c.initial_bytes_per_token < 64.0) {
            errors.push("caching.initial_bytes_per_token", "must be between 0.5 and 64".into());
        }
        if !(1.0..=4.0).contains(&c.size_margin) {
            errors.push("caching.size_margin", "must be between 1.0 and 4.0".into());
        }
        if !c.min_tokens.contains_key("default") {
            errors.push("caching.min_tokens", "must have a `default` entry".into());
        }
        self.deferral.validate(errors);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CliOverrides, Config};

    #[test]
    fn defaults_are_valid() {
        Config::load(None, Vec::<(String, String)>::new(), &CliOverrides::default()).unwrap();
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let vars = [
            ("GEMGATE_UPSTREAM__URL", "not a url"),
            ("GEMGATE_TELEMETRY__LOG_FORMAT", "xml"),
            ("GEMGATE_CACHING__MIN_HITS", "0"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()));
        let err = Config::load(None, vars, &CliOverrides::default()).unwrap_err();
        let text = err.to_string();
        for key in ["upstream.url", "telemetry.log_format", "caching.min_hits"] {
            assert!(text.contains(key), "{text}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let vars = [("GEMGATE_UPSTREAM__NOPE".to_string(), "1".to_string())];
        let err = Config::load(None, vars, &CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}

#[cfg(test)]
mod documented_file {
    use super::super::{CliOverrides, Config};
    use std::collections::BTreeSet;

    fn keys(t: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
        for (k, v) in t {
            let name = format!("{prefix}{k}");
            match v {
                toml::Value::Table(inner) if prefix.is_empty() => keys(inner, &format!("{name}."), out),
                _ => {
                    out.insert(name);
                }
            }
        }
    }

    /// config/gemgate.toml documents every key with its default: loading it gives exactly the
    /// built-in defaults, and it names every key the code knows.
    #[test]
    fn documented_file_equals_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gemgate.toml");
        let from_file = Config::load(Some(&path), Vec::<(String, String)>::new(), &CliOverrides::default()).unwrap();
        let defaults = Config::load(None, Vec::<(String, String)>::new(), &CliOverrides::default()).unwrap();
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
        let documented: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let known = toml::Table::try_from(&defaults).unwrap();
        let (mut a, mut b) = (BTreeSet::new(), BTreeSet::new());
        keys(&documented, "", &mut a);
        keys(&known, "", &mut b);
        assert_eq!(a, b, "documented keys differ from the code's keys");
    }
}

//! Fault injection: configured rates (seeded RNG) plus per-request forcing with the
//! `x-emulator-fault` header (`429`, `500`, `503`, `midstream-error`, `drop`, `delay-ms=N`,
//! comma-separated). Never applied to `/emulator/*`.

use super::state::EmulatorState;
use crate::gemini::GeminiError;
use http::HeaderMap;
use serde_json::json;
use std::time::Duration;

pub const FAULT_HEADER: &str = "x-emulator-fault";
pub const OVERLOADED: &str = "The model is overloaded. Please try again later.";
pub const EXHAUSTED: &str = "Resource has been exhausted (e.g. check quota).";
pub const INTERNAL: &str = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting";

/// What to do to one request.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub delay: Duration,
    pub error: Option<GeminiError>,
    /// Streams: an error event after the first event.
    pub midstream_error: bool,
    /// Abort the connection (after the first event for streams).
    pub drop: bool,
}

/// The error Google sends for `code`, with RetryInfo on 429.
pub fn error_for(code: u16, retry_delay: Duration) -> GeminiError {
    match code {
        429 => GeminiError::new(429, EXHAUSTED).with_details(json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{}s", retry_delay.as_secs()),
        }])),
        503 => GeminiError::new(503, OVERLOADED),
        _ => GeminiError::new(500, INTERNAL),
    }
}

/// Decides the faults for one request from the header and the configured rates.
pub fn plan(state: &EmulatorState, headers: &HeaderMap) -> Result<Plan, GeminiError> {
    let f = &state.config().faults;
    let mut p = Plan {
        delay: Duration::from_millis(f.latency_ms + state.uniform(f.jitter_ms)),
        ..Plan::default()
    };
    for (rate, code) in [(f.rate_429, 429), (f.rate_500, 500), (f.rate_503, 503)] {
        if p.error.is_none() && state.chance(rate) {
            p.error = Some(error_for(code, f.retry_delay));
        }
    }
    p.midstream_error = state.chance(f.midstream_error_rate);
    p.drop = state.chance(f.drop_rate);
    let forced = headers
        .get_all(FAULT_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for item in forced.map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "429" | "500" | "503" => {
                p.error = Some(error_for(item.parse().unwrap_or(500), f.retry_delay))
            }
            "midstream-error" => p.midstream_error = true,
            "drop" => p.drop = true,
            other => match other
                .strip_prefix("delay-ms=")
                .and_then(|n| n.parse::<u64>().ok())
            {
                Some(ms) => p.delay = Duration::from_millis(ms),
                None => {
                    return Err(GeminiError::invalid_argument(format!(
                        "Unknown {FAULT_HEADER} value {other:?}; expected 429, 500, 503, midstream-error, drop or delay-ms=N"
                    )));
                }
            },
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::config::EmulatorConfig;

    #[test]
    fn header_forces_faults_and_defaults_are_off() {
        let state = EmulatorState::new(EmulatorConfig::default());
        let p = plan(&state, &HeaderMap::new()).unwrap();
        assert!(p.error.is_none() && !p.drop && !p.midstream_error && p.delay.is_zero());
        let mut h = HeaderMap::new();
        h.insert(FAULT_HEADER, "429, delay-ms=15".parse().unwrap());
        let p = plan(&state, &h).unwrap();
        let e = p.error.unwrap();
        assert_eq!(e.code, 429);
        assert_eq!(e.to_json()["error"]["details"][0]["retryDelay"], "9s");
        assert_eq!(p.delay, Duration::from_millis(15));
        h.insert(FAULT_HEADER, "bogus".parse().unwrap());
        assert!(plan(&state, &h).is_err());
    }

    #[test]
    fn configured_rates_are_applied() {
        let mut cfg = EmulatorConfig::default();
        cfg.faults.rate_503 = 1.0;
        let state = EmulatorState::new(cfg);
        assert_eq!(
            plan(&state, &HeaderMap::new()).unwrap().error.unwrap().code,
            503
        );
    }
}

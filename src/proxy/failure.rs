//! One story for "a call to the upstream failed", whoever made the call: the gateway's cache
//! operations, its batch and file calls, and the fail-open check of a cache-rewritten request.
//! It says where the failure came from and whether trying again can help.

use crate::gemini::error as wire;

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The upstream refused the request itself (a 4xx but 429): sending it again changes nothing.
    Client,
    /// The upstream answered but could not serve (429, 5xx).
    Upstream,
    /// No complete answer (connect, timeout, reset): whether the call took effect is unknown.
    Transport,
    /// The gateway's own side (its queue, a lost claim) failed around the call.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamFailure {
    /// The upstream answered with this status; `message` is its `error.message` (the raw body
    /// when there was none).
    #[error("status {status}: {}", message.chars().take(300).collect::<String>())]
    Status { status: u16, message: String },
    #[error("transport: {0}")]
    Transport(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl UpstreamFailure {
    /// The failure an upstream answer with a non-success `status` and `body` stands for.
    pub fn from_answer(status: u16, body: &[u8]) -> Self {
        Self::Status { status, message: wire::message_of(body) }
    }

    pub fn transport(e: reqwest::Error) -> Self {
        Self::Transport(e.without_url().to_string())
    }

    pub fn source(&self) -> Source {
        match self {
            Self::Status { status, .. } if *status == 429 || *status >= 500 => Source::Upstream,
            Self::Status { .. } => Source::Client,
            Self::Transport(_) => Source::Transport,
            Self::Internal(_) => Source::Internal,
        }
    }

    /// 429 and 5xx answers, transport failures and the gateway's own hiccups are worth another
    /// try; any other refusal is final.
    pub fn retryable(&self) -> bool {
        self.source() != Source::Client
    }

    /// The upstream's status, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The upstream's message, or what went wrong on the way.
    pub fn detail(&self) -> &str {
        match self {
            Self::Status { message, .. } => message,
            Self::Transport(m) | Self::Internal(m) => m,
        }
    }

    fn answer(&self) -> Option<(u16, &str)> {
        match self {
            Self::Status { status, message } => Some((*status, message)),
            _ => None,
        }
    }

    /// `(total, min)` when the upstream refused a cache below the model's minimum size.
    pub fn too_small(&self) -> Option<(u64, u32)> {
        self.answer().and_then(|(_, m)| wire::parse_too_small(m))
    }

    /// The upstream says the model cannot have explicit caches.
    pub fn no_explicit_caching(&self) -> bool {
        self.answer().is_some_and(|(s, m)| wire::is_no_explicit_caching(s, m))
    }

    /// The fail-open rule: the cache a rewritten request referenced is gone or refused, so the
    /// original request is sent once more.
    pub fn is_cache_rejection(&self) -> bool {
        self.answer().is_some_and(|(s, m)| wire::is_cache_rejection(s, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_and_retryability_follow_the_status() {
        let at = |s: u16| UpstreamFailure::from_answer(s, br#"{"error":{"code":1,"message":"m"}}"#);
        assert_eq!((at(400).source(), at(400).retryable()), (Source::Client, false));
        assert_eq!((at(429).source(), at(429).retryable()), (Source::Upstream, true));
        assert_eq!((at(503).source(), at(503).retryable()), (Source::Upstream, true));
        assert!(UpstreamFailure::Transport("reset".into()).retryable());
        assert_eq!(UpstreamFailure::Internal("queue".into()).source(), Source::Internal);
    }

    #[test]
    fn classifies_gemini_error_texts() {
        let body = br#"{"error":{"code":400,"message":"Cached content is too small. total_token_count=653, min_total_token_count=1024"}}"#;
        assert_eq!(UpstreamFailure::from_answer(400, body).too_small(), Some((653, 1024)));
        let gone = UpstreamFailure::from_answer(403, br#"{"error":{"message":"CachedContent not found"}}"#);
        assert!(gone.is_cache_rejection());
        assert!(!UpstreamFailure::from_answer(500, b"CachedContent boom").is_cache_rejection());
        let nope = br#"{"error":{"message":"models/x is not supported for createCachedContent"}}"#;
        assert!(UpstreamFailure::from_answer(404, nope).no_explicit_caching());
        assert_eq!(UpstreamFailure::from_answer(502, b"plain text").to_string(), "status 502: plain text");
    }
}

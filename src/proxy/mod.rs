//! Faithful forwarding to the upstream: headers, bodies and streams pass through untouched,
//! except hop-by-hop headers and the resumable-upload URL, which must point back at the gateway.

pub mod calls;
mod early_answer;
mod failure;
mod headers;
mod relay;
mod upgrade;
mod upload;
mod upstream;

pub use failure::{Source as FailureSource, UpstreamFailure};
pub use headers::{
    TAG_HEADER, copy_request_headers, copy_response_headers, owned_sensitive, strip_hop_by_hop, strip_request_headers,
};
pub use relay::{BodyMeter, Metered, Passthrough, passthrough, read_limited_body, relay_response};
pub use upgrade::{forward as forward_upgrade, is_upgrade};
pub use upload::{ClientOrigin, UploadRoutes};
pub use upstream::{Upstream, UpstreamRequest, UpstreamResponse};

//! The one place that knows Gemini's wire format: field spellings, the canonical form used for
//! hashing, error bodies and the shape of API paths.

pub mod batch;
pub mod cached_content;
pub mod canonical;
pub mod credential;
pub mod error;
pub mod keys;
pub mod path;
pub mod sse;
pub mod usage;

pub use credential::{Credential, scope_of};
pub use error::GeminiError;

//! gemgate: a gateway in front of Google's Gemini API that adds automatic explicit context
//! caching, deferred execution and honest accounting without application changes.
#![forbid(unsafe_code)]

pub mod cli;
pub mod emulator;
pub mod gemini;
pub mod net;

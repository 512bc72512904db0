//! gemgate: a gateway in front of Google's Gemini API that adds automatic explicit context
//! caching, deferred execution and honest accounting without application changes.
#![forbid(unsafe_code)]

pub mod accounting;
pub mod admin;
pub mod admin_token;
pub mod app;
pub mod caching;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod deferral;
pub mod emulator;
pub mod error;
pub mod gemini;
pub mod generate;
pub mod layers;
pub mod listener;
pub mod net;
pub mod progress;
pub mod proxy;
pub mod replay;
pub mod serve;
pub mod simulate;
pub mod spend;
pub mod state;
pub mod store;
pub mod telemetry;

pub use app::build_app;
pub use state::AppState;

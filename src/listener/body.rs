//! Request bodies that must keep arriving: a client that sends nothing for `idle`, or whose
//! average rate (counted only over the time the gateway spent waiting for it) falls below
//! `min_rate` bytes per second once `idle` has passed, gets an error instead of holding its
//! connection and its in-flight slot.

use bytes::Bytes;
use http_body::{Body, Frame};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// The body read limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Longest wait for the next piece of a body. Zero: no limit.
    pub idle: Duration,
    /// Slowest average rate accepted after the first `idle` of waiting. Zero: no limit.
    pub min_rate: u64,
}

/// Set when a request's body broke a limit; in the request's extensions so a handler whose
/// upstream call failed while streaming that body can tell the client it was too slow.
#[derive(Clone, Default, Debug)]
pub struct BodyTimedOut(Arc<AtomicBool>);

impl BodyTimedOut {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum SlowBody {
    #[error("the client sent no body data for {0:?}")]
    Idle(Duration),
    #[error("the client sent the body slower than {0} bytes per second")]
    Rate(u64),
}

impl SlowBody {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Idle(_) => "body_idle",
            Self::Rate(_) => "body_rate",
        }
    }
}

/// Whether an error (or any error it wraps) is a body cut off by these limits.
pub fn is_slow_body(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<SlowBody>() {
            return true;
        }
        cur = e.source();
    }
    false
}

pub struct TimedBody<B> {
    inner: B,
    limits: BodyLimits,
    flag: BodyTimedOut,
    bytes: u64,
    /// Time spent waiting for the client so far (not counting waits that are still open).
    waited: Duration,
    waiting_since: Option<Instant>,
    deadline: Option<(Pin<Box<Sleep>>, bool)>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, limits: BodyLimits, flag: BodyTimedOut) -> Self {
        Self { inner, limits, flag, bytes: 0, waited: Duration::ZERO, waiting_since: None, deadline: None }
    }

    /// The next wait's deadline and whether it is the rate (true) or the idle limit (false).
    fn deadline_from(&self, now: Instant) -> Option<(Instant, bool)> {
        let idle = (!self.limits.idle.is_zero()).then(|| (now + self.limits.idle, false));
        let rate = (self.limits.min_rate > 0).then(|| {
            // The client has earned `idle` plus one second per `min_rate` bytes of waiting.
            let earned = self.limits.idle + Duration::from_secs_f64(self.bytes as f64 / self.limits.min_rate as f64);
            (now + earned.saturating_sub(self.waited), true)
        });
        match (idle, rate) {
            (Some(i), Some(r)) => Some(if r.0 < i.0 { r } else { i }),
            (a, b) => a.or(b),
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                this.deadline = None;
                if let Some(Ok(f)) = &frame {
                    this.bytes += f.data_ref().map_or(0, |d| d.len() as u64);
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                if this.deadline.is_none() {
                    let now = Instant::now();
                    this.waiting_since = Some(now);
                    match this.deadline_from(now) {
                        Some((at, rate)) => this.deadline = Some((Box::pin(tokio::time::sleep_until(at.into())), rate)),
                        None => return Poll::Pending,
                    }
                }
                let (sleep, rate) = this.deadline.as_mut().expect("set above");
                ready!(sleep.as_mut().poll(cx));
                let err = if *rate { SlowBody::Rate(this.limits.min_rate) } else { SlowBody::Idle(this.limits.idle) };
                this.flag.0.store(true, Ordering::Relaxed);
                metrics::counter!(crate::telemetry::CLIENT_TIMEOUTS, "kind" => err.kind()).increment(1);
                Poll::Ready(Some(Err(err.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

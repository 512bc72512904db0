//! Google's server-sent-events framing for streamGenerateContent with `alt=sse`: splitting a
//! byte stream into whole events, reading an event's JSON, and writing one back.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::Value;

/// Largest event [`sse_events`] gathers before giving up on finding its end: beyond it the
/// bytes gathered are passed on as they are (not inspected), so an upstream that never ends an
/// event cannot make the gateway hold an unbounded buffer.
pub const MAX_EVENT_BYTES: usize = 64 * 1024 * 1024;

/// Splits an SSE byte stream into whole events (each ending with a blank line, `\r\n\r\n` or
/// `\n\n`), so events can be inspected. Each event is yielded as soon as it is complete. Each
/// byte is scanned for an event end once, however the event is split into chunks.
pub fn sse_events<S, E>(upstream: S) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    futures::stream::unfold(
        (upstream, Vec::<u8>::new(), 0usize, false),
        |(mut up, mut buf, mut scanned, mut done)| async move {
            loop {
                if let Some(end) = event_end(&buf, scanned) {
                    let event: Vec<u8> = buf.drain(..end).collect();
                    return Some((Ok(Bytes::from(event)), (up, buf, 0, done)));
                }
                scanned = buf.len();
                if done || buf.len() > MAX_EVENT_BYTES {
                    if buf.is_empty() {
                        return None;
                    }
                    let rest = std::mem::take(&mut buf);
                    return Some((Ok(Bytes::from(rest)), (up, buf, 0, done)));
                }
                match up.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(e), (up, buf, 0, true))),
                    None => done = true,
                }
            }
        },
    )
}

/// Index just past the first complete event in `buf`, whose first `scanned` bytes are known to
/// hold none (an end may still straddle that mark).
fn event_end(buf: &[u8], scanned: usize) -> Option<usize> {
    let from = scanned.saturating_sub(3);
    let tail = &buf[from..];
    let crlf = tail.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = tail.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    end.map(|e| e + from)
}

/// The usage of an SSE event and whether it is the final one (carries a `finishReason`).
pub fn parse_event(event: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(event).ok()?;
    let payload: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&payload).ok()
}

/// Re-encodes an annotated event with Google's framing.
pub fn encode_event(v: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(&serde_json::to_vec(v).unwrap_or_default());
    out.extend_from_slice(b"\r\n\r\n");
    Bytes::from(out)
}

/// True when an event should carry the annotation: it is the final candidate event.
pub fn is_final_event(event: &[u8]) -> bool {
    use memchr::memmem::find;
    find(event, b"\"finishReason\"").is_some() && find(event, b"\"usageMetadata\"").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_events_across_chunk_boundaries() {
        let chunks = vec![
            Ok::<_, std::io::Error>(Bytes::from_static(b"data: {\"a\":1}\r\n")),
            Ok(Bytes::from_static(b"\r\ndata: {\"a\":2}\r\n\r\ndata: {\"a\"")),
            Ok(Bytes::from_static(b":3}\n\n")),
        ];
        let events: Vec<Bytes> = sse_events(futures::stream::iter(chunks)).map(|r| r.unwrap()).collect().await;
        assert_eq!(events.len(), 3);
        assert_eq!(&events[1][..], b"data: {\"a\":2}\r\n\r\n");
        assert_eq!(parse_event(&events[2]).unwrap()["a"], 3);
    }

    #[test]
    fn an_event_that_never_ends_is_passed_on_whole_once_past_the_bound() {
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        let n = MAX_EVENT_BYTES / (1 << 20) + 3;
        let up = futures::stream::iter((0..n).map(|_| Ok::<_, ()>(chunk.clone())));
        let out: Vec<Bytes> = futures::executor::block_on(sse_events(up).map(|r| r.unwrap()).collect());
        assert_eq!(out.iter().map(Bytes::len).sum::<usize>(), n << 20, "every byte passed on");
        assert!(out.iter().all(|b| b.len() <= MAX_EVENT_BYTES + (1 << 20)), "no buffer past the bound and a chunk");
        assert!(out.len() >= 2, "passed on before the stream ended");
    }
}

//! Streamed bodies of streamGenerateContent: SSE (`data: <json>\r\n\r\n`) with `alt=sse`, or a
//! JSON array of pretty-printed objects separated by `\n,\r\n` otherwise; with mid-stream faults.

use super::faults::{self, Plan};
use super::http::JSON_CONTENT_TYPE;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;
use std::time::Duration;

/// How the events are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Sse,
    JsonArray,
}

fn frame(framing: Framing, v: &Value, first: bool) -> Vec<u8> {
    match framing {
        Framing::Sse => {
            let mut out = b"data: ".to_vec();
            out.extend(serde_json::to_vec(v).unwrap_or_default());
            out.extend(b"\r\n\r\n");
            out
        }
        Framing::JsonArray => {
            let mut out = if first {
                b"[".to_vec()
            } else {
                b"\n,\r\n".to_vec()
            };
            out.extend(serde_json::to_vec_pretty(v).unwrap_or_default());
            out
        }
    }
}

/// A 200 response that streams `events`, pausing `delay` between them and applying the
/// mid-stream faults of `plan` after the first event.
pub fn respond(framing: Framing, events: Vec<Value>, delay: Duration, plan: &Plan) -> Response {
    let midstream = plan.midstream_error;
    let drop = plan.drop;
    let body = async_stream::stream! {
        for (i, ev) in events.iter().enumerate() {
            if i > 0 {
                if drop {
                    // Let the status line and the first event reach the client first.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    yield Err(std::io::Error::other("emulator fault: connection dropped"));
                    return;
                }
                if midstream {
                    let err = faults::error_for(503, Duration::ZERO).to_json();
                    yield Ok::<Bytes, std::io::Error>(Bytes::from(frame(framing, &err, false)));
                    if framing == Framing::JsonArray {
                        yield Ok(Bytes::from_static(b"\n]"));
                    }
                    return;
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            yield Ok(Bytes::from(frame(framing, ev, i == 0)));
        }
        if drop || midstream {
            // A one-event stream still gets its fault after that event.
            if drop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                yield Err(std::io::Error::other("emulator fault: connection dropped"));
                return;
            }
            let err = faults::error_for(503, Duration::ZERO).to_json();
            yield Ok(Bytes::from(frame(framing, &err, false)));
        }
        if framing == Framing::JsonArray {
            yield Ok(Bytes::from_static(b"\n]"));
        }
    };
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    let ct = match framing {
        Framing::Sse => "text/event-stream",
        Framing::JsonArray => JSON_CONTENT_TYPE,
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

/// A 200 whose body fails before any byte: the connection drops.
pub fn dropped() -> Response {
    let body = futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("emulator fault: connection dropped"))
    });
    Response::new(Body::from_stream(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sse_and_array_framing() {
        let v = json!({"a": 1});
        assert_eq!(frame(Framing::Sse, &v, true), b"data: {\"a\":1}\r\n\r\n");
        assert_eq!(frame(Framing::JsonArray, &v, true), b"[{\n  \"a\": 1\n}");
        assert_eq!(
            frame(Framing::JsonArray, &v, false),
            b"\n,\r\n{\n  \"a\": 1\n}"
        );
    }
}

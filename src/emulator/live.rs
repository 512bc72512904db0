//! A small stand-in for the Live API's WebSocket
//! (`/ws/google.ai.generativelanguage.{v}.GenerativeService.BidiGenerateContent`): the key is
//! checked at the upgrade like any call; the first `setup` message is answered with
//! `setupComplete`, and every later message comes back unchanged (an echo), which is enough to
//! test that a proxy forwards the upgrade and splices both directions.

use super::auth;
use super::http::parse_query;
use super::state::EmulatorState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;

/// `GET /ws/...` with an upgrade: authenticate, then run the session.
pub async fn session(
    State(state): State<EmulatorState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let query = parse_query(query.as_deref());
    if let Err(e) = auth::authenticate(&headers, &query, &state.config().auth.keys) {
        return e.into_response();
    }
    ws.on_upgrade(run)
}

async fn run(mut socket: WebSocket) {
    let mut set_up = false;
    while let Some(Ok(msg)) = socket.recv().await {
        let reply = match msg {
            Message::Text(t) if !set_up && is_setup(t.as_str()) => {
                set_up = true;
                Message::Text(r#"{"setupComplete":{}}"#.into())
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
            other => other,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

fn is_setup(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.get("setup").is_some())
}

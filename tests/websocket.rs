//! The Live API's WebSocket through the gateway: a real WebSocket client, the gateway, and the
//! emulator's Live stub (setup, then echo). The upgrade keeps the client's key (the emulator
//! refuses the upgrade without one), both directions flow, and the session is counted in flight
//! for its whole life.

mod support;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const LIVE: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

fn in_flight(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with("gemgate_in_flight_requests "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_websocket_session_runs_through_the_gateway() {
    let upstream = support::emulator().await;
    let gw = support::gateway(support::config(&upstream)).await;
    let ws_base = gw.replace("http://", "ws://");

    let mut req = format!("{ws_base}{LIVE}").into_client_request().unwrap();
    req.headers_mut().insert("x-goog-api-key", "live-key".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.expect("upgrade through the gateway");
    assert_eq!(resp.status(), 101);

    ws.send(Message::text(r#"{"setup":{"model":"models/gemini-live-2.5-flash"}}"#)).await.unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert_eq!(first.into_text().unwrap().as_str(), r#"{"setupComplete":{}}"#);
    for i in 0..20 {
        let text = format!(r#"{{"clientContent":{{"turns":[{{"parts":[{{"text":"turn {i}"}}]}}]}}}}"#);
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap().into_text().unwrap().as_str(), text);
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_data().as_ref(), &[0u8, 1, 2, 255]);

    let metrics = reqwest::get(format!("{gw}/metrics")).await.unwrap().text().await.unwrap();
    assert!(in_flight(&metrics) >= 2.0, "the open session and this request are in flight: {metrics}");
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    let mut left = f64::MAX;
    for _ in 0..50 {
        left = in_flight(&reqwest::get(format!("{gw}/metrics")).await.unwrap().text().await.unwrap());
        if left <= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(left, 1.0, "only the /metrics request itself is in flight once the session closed");

    // Without a key the upstream refuses the upgrade, and the client sees its error as it is.
    let err = tokio_tungstenite::connect_async(format!("{ws_base}{LIVE}")).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected the upstream's 403, got {other}"),
    }
}

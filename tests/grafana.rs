//! The Grafana dashboard in deploy/grafana queries only metrics the gateway exports: after
//! traffic (cache hits, a flex request, a gateway error) every metric name in its queries is in
//! `/metrics`.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// `gemgate_…` names in PromQL expressions.
fn metric_names(exprs: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for e in exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("gemgate_") {
            let name: String =
                rest[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            rest = &rest[i + name.len()..];
            names.insert(name);
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/gemgate-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    expressions(&dashboard["panels"], &mut exprs);
    expressions(&dashboard["templating"], &mut exprs);
    let names = metric_names(&exprs);
    assert!(names.len() >= 10, "{names:?}");
    for wanted in ["gemgate_net_saving_usd", "gemgate_overhead_seconds_bucket", "gemgate_deferral_queue_depth"] {
        assert!(names.contains(wanted), "the dashboard shows {wanted}: {names:?}");
    }

    let emu = support::emulator().await;
    let mut cfg = support::config(&emu);
    cfg.deferral.tick = Duration::from_millis(100);
    let gw = support::gateway(cfg).await;
    let system = support::document("dashboard", 9000);
    let url = format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent");
    for i in 0..4 {
        let body = json!({"systemInstruction": {"parts": [{"text": system}]}, "contents": [{"role": "user", "parts": [{"text": format!("Q{i}")}]}]});
        assert_eq!(support::post(&url, "grafana-key", &body).await.status(), 200);
    }
    let flex = support::client()
        .post(&url)
        .header("x-goog-api-key", "grafana-key")
        .header("x-gemgate-defer", "flex")
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "later"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(flex.status(), 200);
    let bad = support::client().post(&url).header("x-goog-api-key", "k").body("{not json").send().await.unwrap();
    assert_eq!(bad.status(), 400);

    // Queue gauges are set by the deferral worker's first round.
    let mut missing = Vec::new();
    for _ in 0..100 {
        let metrics = support::client().get(format!("{gw}/metrics")).send().await.unwrap().text().await.unwrap();
        let exported: BTreeSet<&str> =
            metrics.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
        missing = names.iter().filter(|n| !exported.contains(n.as_str())).cloned().collect();
        if missing.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the dashboard queries metrics /metrics does not have: {missing:?}");
}

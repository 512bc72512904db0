//! `/gemgate/v1/spend` (rollups, grouped), `/gemgate/v1/requests` (the recent list),
//! `/gemgate/v1/queue` (the deferral queue now) and the `/gemgate/ui` page that reads them.

use super::{Dim, group};
use crate::admin_token::UI_ASSETS;
use crate::error::GatewayError;
use crate::store::SpendFigures;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

const HOUR_MS: i64 = 3_600_000;
/// The longest window one read may cover.
const MAX_WINDOW: Duration = Duration::from_secs(400 * 86_400);
/// The most recent requests one read returns.
const MAX_LIMIT: usize = 1000;

fn disabled() -> Response {
    GatewayError::Disabled("spend recording is off (spend.enabled = false)").into_response()
}

fn bad(msg: String) -> Response {
    GatewayError::InvalidArgument(msg).into_response()
}

/// A time given as RFC 3339 or Unix seconds.
fn parse_time(name: &str, v: &str) -> Result<i64, String> {
    crate::clock::parse_rfc3339(v)
        .or_else(|| v.parse::<i64>().ok().map(|s| s.saturating_mul(1000)))
        .ok_or_else(|| format!("{name} must be an RFC 3339 time or Unix seconds, not {v:?}"))
}

/// `[from, to)` from `from`/`to`/`window` (default: the last 24 hours), widened to whole hours.
fn range(q: &HashMap<String, String>, now_ms: i64) -> Result<(i64, i64), String> {
    let to = q.get("to").map(|v| parse_time("to", v)).transpose()?.unwrap_or(now_ms);
    let window = match q.get("window") {
        Some(w) => humantime::parse_duration(w).map_err(|e| format!("window {w:?}: {e}"))?,
        None => Duration::from_secs(86_400),
    };
    let from = match q.get("from") {
        Some(v) => parse_time("from", v)?,
        None => to.saturating_sub(window.as_millis().min(i64::MAX as u128) as i64),
    };
    if from > to {
        return Err("from must not be after to".into());
    }
    if (to - from) as u128 > MAX_WINDOW.as_millis() {
        return Err("the window may cover at most 400 days".into());
    }
    let floor = |t: i64| t.div_euclid(HOUR_MS) * HOUR_MS;
    Ok((floor(from), floor(to) + HOUR_MS))
}

fn figures_json(f: &SpendFigures) -> Value {
    let mut v = serde_json::to_value(f).unwrap_or_default();
    let percent = if f.without_gateway_usd > 0.0 { f.net_saving_usd / f.without_gateway_usd * 100.0 } else { 0.0 };
    v["netSavingPercent"] = json!((percent * 100.0).round() / 100.0);
    v
}

/// What the spend API needs from the gateway's state.
#[derive(Clone)]
pub struct SpendState {
    pub spend: Option<super::Spend>,
    pub deferral: Option<crate::deferral::Deferral>,
    pub clock: crate::clock::Clock,
}

/// `GET /gemgate/v1/spend?from=&to=&window=&group_by=model,tag`: rollup totals over the window
/// and, per distinct value of the `group_by` dimensions (hour, model, tenant, tag, mechanism),
/// the same figures.
pub async fn spend(State(state): State<SpendState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(s) = state.spend.as_ref() else { return disabled() };
    let (from, to) = match range(&q, s.now_ms()) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let mut dims = Vec::new();
    for name in q.get("group_by").map(String::as_str).unwrap_or("").split(',').filter(|n| !n.is_empty()) {
        match Dim::parse(name) {
            Some(d) if !dims.contains(&d) => dims.push(d),
            Some(_) => {}
            None => {
                let known: Vec<&str> = Dim::ALL.iter().map(|d| d.as_str()).collect();
                return bad(format!("group_by {name:?} is not one of {}", known.join(", ")));
            }
        }
    }
    let rows = match s.rows(from, to).await {
        Ok(r) => r,
        Err(e) => {
            return GatewayError::BackendUnavailable { what: "spend rollups", detail: e.to_string() }.into_response();
        }
    };
    let total = group(&rows, &[]).pop().map(|(_, f)| f).unwrap_or_default();
    let groups: Vec<Value> = group(&rows, &dims)
        .into_iter()
        .map(|(key, f)| {
            let mut v = figures_json(&f);
            for (d, k) in dims.iter().zip(key) {
                if *d == Dim::Tenant {
                    if let Some(name) = s.tenant_name(&k) {
                        v["tenantName"] = json!(name);
                    }
                }
                v[d.as_str()] = json!(k);
            }
            v
        })
        .collect();
    let group_by: Vec<&str> = dims.iter().map(|d| d.as_str()).collect();
    Json(json!({
        "from": crate::clock::rfc3339(from),
        "to": crate::clock::rfc3339(to),
        "groupBy": group_by,
        "total": figures_json(&total),
        "groups": groups,
    }))
    .into_response()
}

/// `GET /gemgate/v1/requests?limit=&model=&tenant=&tag=&outcome=`: the most recent generate
/// requests (metadata only), newest first, filtered by exact values.
pub async fn recent(State(state): State<SpendState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(s) = state.spend.as_ref() else { return disabled() };
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(_) => return bad(format!("limit must be between 1 and {MAX_LIMIT}")),
    };
    let wanted = |field: &str, value: &str| q.get(field).is_none_or(|w| w == value);
    let requests: Vec<_> = s
        .recent()
        .into_iter()
        .filter(|r| {
            wanted("model", &r.model)
                && wanted("tenant", &r.tenant)
                && wanted("tag", &r.tag)
                && wanted("outcome", &r.outcome)
        })
        .take(limit)
        .collect();
    Json(json!({ "requests": requests })).into_response()
}

/// `GET /gemgate/v1/queue`: the deferral queue now.
pub async fn queue(State(state): State<SpendState>) -> Response {
    let Some(d) = state.deferral.as_ref() else { return Json(json!({"enabled": false})).into_response() };
    match d.queue().stats().await {
        Ok(st) => {
            let now = state.clock.now_ms();
            Json(json!({
                "enabled": true,
                "queued": st.queued,
                "submitted": st.assigned,
                "jobsOpening": st.jobs_intent,
                "jobsSubmitted": st.jobs_submitted,
                "oldestQueuedAgeSeconds": st.oldest_queued_ms.map(|t| ((now - t).max(0) as f64) / 1000.0),
            }))
            .into_response()
        }
        Err(e) => GatewayError::BackendUnavailable { what: "deferral queue", detail: e.to_string() }.into_response(),
    }
}

const PAGE: &str = include_str!("ui/index.html");
/// The page's files, in the order of [`crate::admin_token::UI_ASSETS`] (which lets them through
/// the admin token): name, content type, body.
const ASSETS: [(&str, &str, &str); 2] = [
    (UI_ASSETS[0], "text/javascript; charset=utf-8", include_str!("ui/app.js")),
    (UI_ASSETS[1], "text/css; charset=utf-8", include_str!("ui/style.css")),
];
/// The page loads only its own script and style and talks only to this gateway.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   base-uri 'none'; frame-ancestors 'none'";

fn static_response(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// `GET /gemgate/ui`: the dashboard page. It holds no data; its script reads the admin token
/// from the URL fragment (`#token=…`, never sent to the server) and calls the guarded API.
pub async fn ui_page() -> Response {
    static_response("text/html; charset=utf-8", PAGE)
}

/// `GET /gemgate/ui/{asset}`: the page's script and style.
pub async fn ui_asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, body)) => static_response(ct, body),
        None => GatewayError::NoSuchAsset(name).into_response(),
    }
}

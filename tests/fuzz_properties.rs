//! Property tests (proptest) over the parsers a client can reach: the canonical form, the
//! prefix fingerprint, the path parser and safety check, and the config loader. Case counts are
//! kept small enough for the whole file to run in a few seconds.

use gemgate::caching::fingerprint;
use gemgate::config::{CliOverrides, Config};
use gemgate::gemini::{canonical, path};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z_ \\\\\"é0-9]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,10}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// The same value with every object's keys in reverse order.
fn reversed(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().rev().map(|(k, v)| (k.clone(), reversed(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

fn request(system: &str, turns: &[String]) -> Map<String, Value> {
    let contents: Vec<Value> = turns.iter().map(|t| json!({"role": "user", "parts": [{"text": t}]})).collect();
    let v = json!({"systemInstruction": {"parts": [{"text": system}]}, "contents": contents});
    v.as_object().unwrap().clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn canonical_bytes_ignore_key_order_and_match_normalize(v in json_value()) {
        let bytes = canonical::to_vec(&v);
        prop_assert_eq!(&bytes, &canonical::to_vec(&reversed(&v)));
        prop_assert_eq!(&bytes, &serde_json::to_vec(&canonical::normalize(&v)).unwrap());
        let n = canonical::normalize(&v);
        prop_assert_eq!(canonical::normalize(&n), n);
    }

    #[test]
    fn fingerprints_chain_and_ignore_spelling(
        system in "[a-z ]{1,40}",
        turns in prop::collection::vec("[a-z ]{0,30}", 1..6),
        extra in "[a-z ]{0,30}",
    ) {
        let body = request(&system, &turns);
        let fp = fingerprint("scope", "models/m", &body);
        // Re-spelled (snake_case) and re-ordered: the same hashes.
        let mut snake = Map::new();
        snake.insert("contents".into(), body["contents"].clone());
        snake.insert("system_instruction".into(), body["systemInstruction"].clone());
        let same = fingerprint("scope", "models/m", &snake);
        prop_assert_eq!(&fp.boundaries, &same.boundaries);
        // One more turn: every earlier boundary is still there, with the same key.
        let mut longer = turns.clone();
        longer.push(extra);
        let more = fingerprint("scope", "models/m", &request(&system, &longer));
        for b in &fp.boundaries {
            prop_assert!(more.boundaries.iter().any(|m| m.key == b.key && m.contents == b.contents));
        }
        // Another tenant never shares a key.
        let other = fingerprint("other-scope", "models/m", &body);
        for b in &fp.boundaries {
            prop_assert!(other.boundaries.iter().all(|o| o.key != b.key));
        }
    }

    #[test]
    fn paths_parse_without_panic_and_labels_stay_in_a_closed_set(
        raw in "(/(v1|v1beta|upload|download|[a-zA-Z0-9%.:_-]{0,12})){0,6}",
    ) {
        let safe = path::check_safe(&raw).is_ok();
        if let Some(p) = path::parse(&raw) {
            let label = p.route_label();
            prop_assert!(label.len() <= 40, "{}", label);
            prop_assert!(label.chars().all(|c| c.is_ascii_alphabetic() || "/:{}".contains(c)), "{}", label);
        }
        if safe {
            prop_assert!(raw.split('/').all(|s| s != ".." && s != "."));
            prop_assert!(!raw.to_ascii_lowercase().contains("%2e"));
        }
    }

    #[test]
    fn the_config_loader_names_every_unknown_key_and_never_panics(
        keys in prop::collection::vec(("(SERVER|UPSTREAM|CACHING|BOGUS)", "[A-Z]{1,12}", "[a-z0-9.\"]{0,8}"), 0..6),
    ) {
        let vars: Vec<(String, String)> =
            keys.iter().map(|(s, k, v)| (format!("GEMGATE_{s}__{k}"), v.clone())).collect();
        match Config::load(None, vars.clone(), &CliOverrides::default()) {
            Ok(_) => {}
            Err(errors) => prop_assert!(!errors.0.is_empty()),
        }
        let known = toml::Value::try_from(Config::default()).unwrap();
        for (section, key, _) in &keys {
            let (s, k) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            if known.get(&s).and_then(|t| t.get(&k)).is_none() {
                // Named as the key, or as its section when the section itself is unknown.
                let errors = Config::load(None, vars.clone(), &CliOverrides::default()).unwrap_err();
                let named = |name: &String| *name == format!("{s}.{k}") || (known.get(&s).is_none() && *name == s);
                prop_assert!(errors.0.iter().any(|(name, _)| named(name)), "{s}.{k} not named: {errors}");
            }
        }
    }
}

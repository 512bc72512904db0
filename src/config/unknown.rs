//! Every unknown key at once, each with its line. Deserializing stops at the first unknown field,
//! so before that the document is compared with the tree of known keys (the defaults, serialized)
//! and every key outside it is reported.

use super::{Config, ConfigErrors};

/// Tables whose keys are free (a map from model id to a number, say): anything goes inside.
const OPEN_TABLES: &[&str] = &["caching.min_tokens", "spend.tenant_names"];

/// Pushes one error per unknown key of `doc`; `text` (the file) gives line numbers.
pub(super) fn report(doc: &toml::Table, text: Option<&str>, errors: &mut ConfigErrors) {
    let Ok(toml::Value::Table(known)) = toml::Value::try_from(Config::default()) else {
        return;
    };
    let lines = text.map(key_lines).unwrap_or_default();
    let mut unknown = Vec::new();
    walk(doc, &known, "", &mut unknown);
    for path in unknown {
        let place = match lines.iter().find(|(p, _)| *p == path) {
            Some((_, line)) => format!("line {line}"),
            None => "set in the environment".to_string(),
        };
        errors.push(path, format!("unknown key ({place})"));
    }
}

fn walk(doc: &toml::Table, known: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in doc {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match (known.get(k), v) {
            (None, _) => out.push(path),
            (Some(toml::Value::Table(kt)), toml::Value::Table(dt)) if !OPEN_TABLES.contains(&path.as_str()) => {
                walk(dt, kt, &path, out)
            }
            _ => {}
        }
    }
}

/// `(dotted key path, 1-based line)` for every `key = value` line, following `[section]` headers.
fn key_lines(text: &str) -> Vec<(String, usize)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with("[[") {
            section = line.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        } else if line.starts_with('[') {
            section = line.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_string();
            out.push((section.clone(), i + 1));
        } else if let Some((key, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            let key = key.trim().trim_matches('"');
            let path = if section.is_empty() { key.to_string() } else { format!("{section}.{key}") };
            out.push((path, i + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unknown_key_is_reported_with_its_line() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n[caching]\nttll = \"1h\"\n\
                    [caching.min_tokens]\nmy-model = 10\n[bogus]\nx = 1\n\
                    [spend.tenant_names]\n71e3fb38865280a1 = \"team a\"\n";
        let doc: toml::Table = text.parse().unwrap();
        let mut errors = ConfigErrors::default();
        report(&doc, Some(text), &mut errors);
        let got: Vec<String> = errors.0.iter().map(|(k, p)| format!("{k}: {p}")).collect();
        assert_eq!(
            got,
            ["bogus: unknown key (line 8)", "caching.ttll: unknown key (line 5)", "server.lisen: unknown key (line 3)"]
        );
    }
}

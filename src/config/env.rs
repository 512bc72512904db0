//! Environment overrides: `GEMGATE_UPSTREAM__URL=http://x` sets `upstream.url`. Values are read as
//! TOML when they parse (numbers, booleans, arrays), otherwise as plain strings.

use super::ConfigErrors;

const PREFIX: &str = "GEMGATE_";

pub(super) fn apply(
    doc: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
    errors: &mut ConfigErrors,
) {
    for (name, raw) in vars {
        let Some(path) = name.strip_prefix(PREFIX) else {
            continue;
        };
        // Variables without a section separator (GEMGATE_CONFIG) are not config keys.
        if !path.contains("__") {
            continue;
        }
        let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(|k| k.is_empty()) {
            errors.push(name.clone(), "malformed variable name".into());
            continue;
        }
        let value = parse_value(&raw);
        let (last, parents) = keys.split_last().expect("at least one key");
        if let Err(problem) = insert(doc, parents, last, value) {
            errors.push(name.clone(), problem);
        }
    }
}

fn insert(doc: &mut toml::Table, parents: &[String], last: &str, value: toml::Value) -> Result<(), String> {
    let mut table = doc;
    for k in parents {
        let entry = table.entry(k.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("`{k}` is not a section")),
        };
    }
    table.insert(last.to_string(), value);
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_and_typed_values() {
        let mut doc = toml::Table::new();
        let mut errs = ConfigErrors::default();
        apply(
            &mut doc,
            [
                ("GEMGATE_UPSTREAM__URL".to_string(), "http://x:1".to_string()),
                ("GEMGATE_CACHING__MIN_HITS".to_string(), "3".to_string()),
                ("GEMGATE_CONFIG".to_string(), "ignored.toml".to_string()),
                ("PATH".to_string(), "/bin".to_string()),
            ],
            &mut errs,
        );
        assert!(errs.is_empty());
        assert_eq!(doc["upstream"]["url"].as_str(), Some("http://x:1"));
        assert_eq!(doc["caching"]["min_hits"].as_integer(), Some(3));
        assert!(!doc.contains_key("config"));
    }
}

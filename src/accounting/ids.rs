//! Matching the model id a client sends against tables keyed by model id (prices, minimum cache
//! sizes, capabilities). One rule for every table, so a model resolves the same way everywhere:
//!
//! 1. the exact id (`models/` prefix ignored);
//! 2. the id with its version suffixes taken off one at a time — a trailing all-digit segment
//!    (`-001`, the `-09-2025` of `-preview-09-2025`), then `-preview`, `-exp` or `-latest` — each
//!    step tried as an exact id (`gemini-2.5-flash-lite-preview-09-2025` → `gemini-2.5-flash-lite`);
//! 3. patterns (keys holding `*`, each `*` standing for any text); the most specific (longest)
//!    pattern wins.
//!
//! Aliases (`gemini-flash-latest`) are resolved by the caller before matching.

use std::collections::BTreeMap;

/// How a key was found for a model id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Matched {
    /// The id itself is a key.
    Exact,
    /// A shorter, unversioned form of the id, or a pattern.
    Family,
}

/// The id without a `models/` prefix.
pub fn bare(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

/// The id, then each shorter form with one version suffix taken off.
pub fn unversioned(id: &str) -> Vec<&str> {
    let mut out = vec![id];
    let mut cur = id;
    while let Some((head, tail)) = cur.rsplit_once('-') {
        let versionish = (!tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()))
            || matches!(tail, "preview" | "exp" | "latest");
        if !versionish || head.is_empty() {
            break;
        }
        out.push(head);
        cur = head;
    }
    out
}

/// Whether `id` matches `pattern`, where each `*` stands for any text (possibly empty).
pub fn glob(pattern: &str, id: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = id.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The key `model` resolves to among `keys` (by the rules in the module header), skipping keys
/// for which `skip` is true (such as a table's `default`).
pub fn resolve<'a, I>(keys: I, model: &str) -> Option<(&'a str, Matched)>
where
    I: IntoIterator<Item = &'a str> + Clone,
{
    let id = bare(model);
    for (i, candidate) in unversioned(id).into_iter().enumerate() {
        if let Some(k) = keys.clone().into_iter().find(|k| !k.contains('*') && *k == candidate) {
            return Some((k, if i == 0 { Matched::Exact } else { Matched::Family }));
        }
    }
    keys.into_iter().filter(|k| k.contains('*') && glob(k, id)).max_by_key(|k| k.len()).map(|k| (k, Matched::Family))
}

/// [`resolve`] over a map's keys, returning the value too.
pub fn lookup<'a, V>(map: &'a BTreeMap<String, V>, model: &str) -> Option<(&'a str, &'a V, Matched)> {
    let (k, how) = resolve(map.keys().map(String::as_str), model)?;
    map.get_key_value(k).map(|(k, v)| (k.as_str(), v, how))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> BTreeMap<String, u32> {
        ["gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-3.1-pro-preview", "gemini-3*", "gemini-4-*", "default"]
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), i as u32))
            .collect()
    }

    #[test]
    fn exact_then_versioned_then_longest_pattern() {
        let t = table();
        let key = |m: &str| lookup(&t, m).map(|(k, _, how)| (k.to_string(), how));
        assert_eq!(key("models/gemini-2.5-flash"), Some(("gemini-2.5-flash".into(), Matched::Exact)));
        assert_eq!(key("gemini-2.5-flash-001"), Some(("gemini-2.5-flash".into(), Matched::Family)));
        assert_eq!(
            key("gemini-2.5-flash-lite-preview-09-2025"),
            Some(("gemini-2.5-flash-lite".into(), Matched::Family))
        );
        assert_eq!(key("gemini-3.1-pro-preview-11-2026"), Some(("gemini-3.1-pro-preview".into(), Matched::Family)));
        assert_eq!(key("gemini-3.9-flash"), Some(("gemini-3*".into(), Matched::Family)));
        assert_eq!(key("gemini-4-xenon"), Some(("gemini-4-*".into(), Matched::Family)));
        // A different model that merely starts like a key is not that key.
        assert_eq!(key("gemini-2.5-flash-image"), None);
        assert_eq!(key("other"), None);
    }

    #[test]
    fn glob_handles_several_stars() {
        assert!(glob("gemini-3.*-flash*", "gemini-3.7-flash"));
        assert!(glob("gemini-3.*-flash*", "gemini-3.7-flash-002"));
        assert!(!glob("gemini-3.*-flash", "gemini-3.7-pro"));
        assert!(glob("*", ""));
        assert!(!glob("a*a", "a"));
    }
}

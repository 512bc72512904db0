//! The shape of Gemini API paths: `/{prefix?}/{version}/{collection}/{id}:{method}`.
//!
//! Versions are a variable (`v1`, `v1beta`, `v1alpha`): current SDKs send `v1`, older ones and the
//! REST docs `v1beta`. The route label built here is the low-cardinality name used in metrics.

/// Which front door a path came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `/{v}/...`
    Api,
    /// `/upload/{v}/...` (resumable uploads)
    Upload,
    /// `/download/{v}/...`
    Download,
}

/// A parsed Gemini API path. Borrowed from the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPath<'a> {
    pub door: Door,
    pub version: &'a str,
    /// First segment after the version: `models`, `tunedModels`, `cachedContents`, `batches`,
    /// `files`, `openai`, or anything else.
    pub collection: &'a str,
    /// Resource id (the segment after the collection, without `:method`), if any.
    pub id: Option<&'a str>,
    /// Custom method after `:` (`generateContent`, `cancel`, `download` ...), if any.
    pub method: Option<&'a str>,
    /// Everything after the version, e.g. `models/gemini-2.5-flash:generateContent`.
    pub rest: &'a str,
}

pub const VERSIONS: [&str; 3] = ["v1", "v1beta", "v1alpha"];

pub fn is_version(s: &str) -> bool {
    VERSIONS.contains(&s)
}

/// Checks a request path before anything routes or forwards it. `.` and `..` segments, and
/// percent-encoded dots, slashes and backslashes, are refused: URL resolution (here or at the
/// upstream) would turn them into a different path than the one the gateway routed, escaping
/// the upstream's path prefix or the generate interception.
pub fn check_safe(path: &str) -> Result<(), String> {
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') {
        return Err("a backslash".into());
    }
    // Every path is checked, and few hold a `%`: the escapes are looked for only after one.
    if bytes.contains(&b'%') {
        for enc in [*b"2e", *b"2f", *b"5c"] {
            let at = (0..bytes.len().saturating_sub(2))
                .find(|&i| bytes[i] == b'%' && bytes[i + 1..i + 3].eq_ignore_ascii_case(&enc));
            if let Some(i) = at {
                return Err(format!("an encoded `{}`", &path[i..i + 3]));
            }
        }
    }
    if let Some(seg) = path.split('/').find(|s| matches!(*s, "." | "..")) {
        return Err(format!("a `{seg}` segment"));
    }
    Ok(())
}

/// Parses a request path (without query). Returns `None` for paths that are not Gemini API paths.
pub fn parse(path: &str) -> Option<ApiPath<'_>> {
    let p = path.strip_prefix('/')?;
    let (door, p) = if let Some(r) = p.strip_prefix("upload/") {
        (Door::Upload, r)
    } else if let Some(r) = p.strip_prefix("download/") {
        (Door::Download, r)
    } else {
        (Door::Api, p)
    };
    let (version, rest) = match p.split_once('/') {
        Some((v, r)) => (v, r),
        None => (p, ""),
    };
    if !is_version(version) {
        return None;
    }
    let (collection, after) = match rest.split_once('/') {
        Some((c, a)) => (c, Some(a)),
        None => (rest, None),
    };
    // A collection-level custom method, e.g. `files:register`.
    let (collection, coll_method) = match collection.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (collection, None),
    };
    let (id, method) = match after {
        Some(a) if collection != "openai" => match a.rsplit_once(':') {
            Some((i, m)) if !i.contains('/') => (Some(i), Some(m)),
            _ => (Some(a), None),
        },
        Some(a) => (Some(a), None),
        None => (None, coll_method),
    };
    Some(ApiPath { door, version, collection, id, method, rest })
}

impl ApiPath<'_> {
    /// True for `generateContent` / `streamGenerateContent` on a model or tuned model.
    pub fn is_generate(&self) -> bool {
        self.door == Door::Api
            && matches!(self.collection, "models" | "tunedModels")
            && matches!(self.method, Some("generateContent" | "streamGenerateContent"))
    }

    pub fn is_stream(&self) -> bool {
        self.method == Some("streamGenerateContent")
    }

    /// `models/gemini-2.5-flash` or `tunedModels/x` for model-scoped paths.
    pub fn model_name(&self) -> Option<String> {
        match (self.collection, self.id) {
            ("models" | "tunedModels", Some(id)) => Some([self.collection, "/", id].concat()),
            _ => None,
        }
    }

    /// Route label for metrics, from a closed set: `models:generateContent`,
    /// `cachedContents/{id}`, `upload/files`, `openai/chat/completions` ... Collections, methods
    /// and OpenAI endpoints the gateway does not know become `other`, so a client inventing paths
    /// cannot create new series.
    pub fn route_label(&self) -> String {
        let door = match self.door {
            Door::Api => "",
            Door::Upload => "upload/",
            Door::Download => "download/",
        };
        let tail = match (known(COLLECTIONS, self.collection), self.id, self.method) {
            (None, _, _) => "other".to_string(),
            (Some("openai"), Some(rest), _) => {
                let endpoint = rest.split('/').take(2).collect::<Vec<_>>();
                match endpoint.as_slice() {
                    ["models", _] => "openai/models/{id}".to_string(),
                    [e] | [e, _] => {
                        match known(OPENAI_ENDPOINTS, &endpoint.join("/")).or_else(|| known(OPENAI_ENDPOINTS, e)) {
                            Some(e) => format!("openai/{e}"),
                            None => "openai/other".to_string(),
                        }
                    }
                    _ => "openai/other".to_string(),
                }
            }
            (Some(c), _, Some(m)) => [c, ":", known(METHODS, m).unwrap_or("other")].concat(),
            (Some(c), Some(_), None) => format!("{c}/{{id}}"),
            (Some(c), None, None) => c.to_string(),
        };
        if door.is_empty() { tail } else { door.to_owned() + &tail }
    }
}

/// Collections a route label may name.
const COLLECTIONS: &[&str] = &[
    "models",
    "tunedModels",
    "cachedContents",
    "batches",
    "files",
    "operations",
    "openai",
    "corpora",
    "fileSearchStores",
    "generatedFiles",
];

/// Custom methods a route label may name.
const METHODS: &[&str] = &[
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
    "batchGenerateContent",
    "asyncBatchEmbedContent",
    "predict",
    "predictLongRunning",
    "cancel",
    "download",
    "register",
    "uploadToFileSearchStore",
    "importFile",
];

/// OpenAI-compatible endpoints a route label may name.
const OPENAI_ENDPOINTS: &[&str] =
    &["chat/completions", "completions", "embeddings", "models", "images/generations", "files", "batches"];

fn known(set: &'static [&'static str], s: &str) -> Option<&'static str> {
    set.iter().find(|k| **k == s).copied()
}

/// HTTP method label for metrics: the standard methods, anything else `other`.
pub fn method_label(m: &http::Method) -> &'static str {
    const STANDARD: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    known(STANDARD, m.as_str()).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_generate_paths_for_every_version() {
        for v in VERSIONS {
            let path = format!("/{v}/models/gemini-2.5-flash:streamGenerateContent");
            let p = parse(&path).unwrap();
            assert_eq!(p.version, v);
            assert!(p.is_generate() && p.is_stream());
            assert_eq!(p.model_name().unwrap(), "models/gemini-2.5-flash");
            assert_eq!(p.route_label(), "models:streamGenerateContent");
        }
        let p = parse("/v1beta/tunedModels/my-model:generateContent").unwrap();
        assert!(p.is_generate());
        assert_eq!(p.model_name().unwrap(), "tunedModels/my-model");
    }

    #[test]
    fn parses_other_shapes() {
        let p = parse("/upload/v1beta/files").unwrap();
        assert_eq!((p.door, p.collection, p.id), (Door::Upload, "files", None));
        assert_eq!(p.route_label(), "upload/files");
        let p = parse("/v1/batches/abc:cancel").unwrap();
        assert_eq!((p.id, p.method), (Some("abc"), Some("cancel")));
        let p = parse("/download/v1beta/files/batch-1:download").unwrap();
        assert_eq!(p.route_label(), "download/files:download");
        let p = parse("/v1/cachedContents/xyz").unwrap();
        assert_eq!(p.route_label(), "cachedContents/{id}");
        let p = parse("/v1beta/openai/chat/completions").unwrap();
        assert_eq!(p.route_label(), "openai/chat/completions");
        assert!(parse("/v2/models").is_none());
        assert!(parse("/healthz").is_none());
    }

    #[test]
    fn labels_come_from_a_closed_set() {
        let made_up = [
            "/v1beta/zzz-1/a:b",
            "/v1/models/x:inventedMethod-1",
            "/v1/models/x:inventedMethod-2",
            "/upload/v1beta/made-up/abc",
            "/v1beta/openai/made/up/path",
            "/v1beta/openai/chat/completions-2",
        ];
        let labels: Vec<String> = made_up.iter().map(|p| parse(p).unwrap().route_label()).collect();
        assert_eq!(labels, ["other", "models:other", "models:other", "upload/other", "openai/other", "openai/other"]);
        assert_eq!(method_label(&http::Method::from_bytes(b"FOO123").unwrap()), "other");
        assert_eq!(method_label(&http::Method::PATCH), "PATCH");
    }

    #[test]
    fn paths_that_resolve_elsewhere_are_refused() {
        for bad in [
            "/v1beta/../../admin/secret",
            "/v1beta/x/../models/m:generateContent",
            "/v1beta/./models",
            "/v1beta/%2e%2e/admin",
            "/v1beta/%2E%2e/admin",
            "/v1beta/models%2Fm:generateContent",
            "/v1beta/a%5cb",
            "/v1beta/a\\..\\b",
            "/..",
            "/v1beta/a%%2f",
            "/v1beta/%2F",
        ] {
            assert!(check_safe(bad).is_err(), "{bad}");
        }
        assert_eq!(check_safe("/v1beta/%41%2F/%2e").unwrap_err(), "an encoded `%2e`", "dots are named first");
        assert_eq!(check_safe("/v1beta/%41%2F").unwrap_err(), "an encoded `%2F`", "as the client spelled it");
        for good in [
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "/v1/files/a.b",
            "/",
            "/v1beta/x..y/..z",
            "/v1beta/a%41",
            "/v1beta/a%2",
            "/v1beta/%",
        ] {
            assert!(check_safe(good).is_ok(), "{good}");
        }
    }
}

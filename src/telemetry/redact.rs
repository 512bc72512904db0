//! Keeps credentials out of logs: `?key=` values are masked wherever a URL is printed.

/// Returns the path and query with the value of any `key` query parameter replaced by `*****`.
pub fn redact_path_and_query(pq: &str) -> String {
    let Some((path, query)) = pq.split_once('?') else {
        return pq.to_string();
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}=*****"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", masked.join("&"))
}

/// Same as [`redact_path_and_query`] for a full URL.
pub fn redact_url(url: &str) -> String {
    match url.find('?') {
        Some(_) => redact_path_and_query(url),
        None => url.to_string(),
    }
}

fn is_secret_param(k: &str) -> bool {
    k.eq_ignore_ascii_case("key") || k.eq_ignore_ascii_case("access_token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_key_parameter() {
        assert_eq!(
            redact_path_and_query("/v1beta/models?alt=sse&key=SECRET123&x=1"),
            "/v1beta/models?alt=sse&key=*****&x=1"
        );
        assert_eq!(redact_path_and_query("/v1/models"), "/v1/models");
        assert!(!redact_url("http://h/v1?key=abc").contains("abc"));
    }
}

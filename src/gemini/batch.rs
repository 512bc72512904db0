//! The Batch API's JSON: the input of `batchGenerateContent` (inline requests, or a JSONL file
//! of keyed requests), and the per-item output of a finished job (inline or a JSONL file), each
//! item's error given as a google.rpc.Status.

use serde_json::{Value, json};

/// A request body as JSON (`{}` if it is not JSON).
fn request(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| json!({}))
}

/// `inputConfig` with the `(key, body)` requests inline.
pub fn inline_input(inputs: &[(String, Vec<u8>)]) -> Value {
    let requests: Vec<Value> =
        inputs.iter().map(|(k, b)| json!({"request": request(b), "metadata": {"key": k}})).collect();
    json!({"requests": {"requests": requests}})
}

/// The JSONL file of the `(key, body)` requests: one `{"key","request"}` per line.
pub fn jsonl_input(inputs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut jsonl = Vec::with_capacity(inputs.iter().map(|(_, b)| b.len() + 64).sum());
    for (k, b) in inputs {
        jsonl.extend(serde_json::to_vec(&json!({"key": k, "request": request(b)})).unwrap_or_default());
        jsonl.push(b'\n');
    }
    jsonl
}

/// `inputConfig` naming an uploaded JSONL file.
pub fn file_input(file: &str) -> Value {
    json!({"fileName": file})
}

/// The body of `models/…:batchGenerateContent`.
pub fn create_body(display_name: &str, input_config: Value) -> Value {
    json!({"batch": {"displayName": display_name, "inputConfig": input_config}})
}

/// One output item: the response, or the HTTP status and message of its error.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutput {
    Response(Value),
    Error { status: u16, message: String },
}

/// Where a finished job's output is: inline items (by key), or a JSONL file to download.
pub enum Output {
    Inline(Vec<(String, ItemOutput)>),
    File(String),
    None,
}

/// The output of a finished batch operation (its `metadata.output`, else its `response`).
pub fn output_of(op: &Value) -> Output {
    let out = if op["metadata"]["output"].is_object() { &op["metadata"]["output"] } else { &op["response"] };
    if let Some(items) = out["inlinedResponses"]["inlinedResponses"].as_array() {
        return Output::Inline(
            items.iter().filter_map(|it| Some((it["metadata"]["key"].as_str()?.to_string(), item(it)))).collect(),
        );
    }
    match out["responsesFile"].as_str() {
        Some(file) => Output::File(file.to_string()),
        None => Output::None,
    }
}

/// The items of a downloaded JSONL output file, by key.
pub fn jsonl_output(bytes: &[u8]) -> Vec<(String, ItemOutput)> {
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter_map(|it| Some((it["key"].as_str()?.to_string(), item(&it))))
        .collect()
}

/// One output item: its response, or its google.rpc.Status error as an HTTP status and message.
fn item(it: &Value) -> ItemOutput {
    if let Some(r) = it.get("response").filter(|r| !r.is_null()) {
        return ItemOutput::Response(r.clone());
    }
    let e = &it["error"];
    let grpc = e["code"].as_i64().unwrap_or(13);
    let message = e["message"].as_str().unwrap_or("batch item failed").to_string();
    ItemOutput::Error { status: http_of_grpc(grpc), message }
}

/// HTTP status for a numeric google.rpc.Code.
pub fn http_of_grpc(code: i64) -> u16 {
    match code {
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_and_outputs_keep_their_keys() {
        let inputs = vec![("a".to_string(), br#"{"contents":[]}"#.to_vec())];
        assert_eq!(inline_input(&inputs)["requests"]["requests"][0]["metadata"]["key"], "a");
        let line: Value = serde_json::from_slice(jsonl_input(&inputs).split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!((line["key"].as_str(), line["request"]["contents"].is_array()), (Some("a"), true));
        let file =
            b"{\"key\":\"a\",\"response\":{\"x\":1}}\n{\"key\":\"b\",\"error\":{\"code\":8,\"message\":\"slow\"}}\n";
        let items = jsonl_output(file);
        assert_eq!(items[0], ("a".into(), ItemOutput::Response(json!({"x": 1}))));
        assert_eq!(items[1], ("b".into(), ItemOutput::Error { status: 429, message: "slow".into() }));
        let op = json!({"response": {"responsesFile": "files/out"}});
        assert!(matches!(output_of(&op), Output::File(f) if f == "files/out"));
    }
}

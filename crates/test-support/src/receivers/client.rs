//! What the receivers' own tests share: how long they wait, and a client
//! that posts a request and returns the answer as the notifier would see it.

use std::time::Duration;

use serde_json::Value;

/// How long a test waits for a request or mail to arrive.
pub(super) const WAIT: Duration = Duration::from_secs(10);

/// Posts `body` with `headers`; the status, content type and body text.
pub(super) async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String, String) {
    let mut request = reqwest::Client::new().post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        content_type,
        response.text().await.expect("body read"),
    )
}

/// Posts `body` as JSON; the status, content type and body as JSON
/// (`Value::Null` when it is not).
pub(super) async fn post_json(
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, String, Value) {
    let mut all = vec![("content-type", "application/json; charset=utf-8")];
    all.extend_from_slice(headers);
    let (status, content_type, text) = post(url, &all, body.to_string().into_bytes()).await;
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

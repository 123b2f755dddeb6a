//! DingTalk custom robots: a markdown message `POST`ed to the robot's
//! webhook; with a secret, signed as DingTalk documents it: `timestamp` (ms)
//! and `sign = urlencode(base64(HMAC-SHA256(secret, "{timestamp}\n{secret}")))`
//! appended as query parameters. DingTalk answers `200` with an `errcode`;
//! anything but `0` is a failure.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{SendError, http_error, http_status_error};
use crate::render::Message;

/// The `sign` parameter for `timestamp_ms`, before URL encoding.
pub fn sign(secret: &str, timestamp_ms: i64) -> Result<String, SendError> {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| SendError::config("invalid dingtalk secret"))?;
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

#[derive(Deserialize)]
struct Answer {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

pub async fn send(
    http: &reqwest::Client,
    webhook_url: &str,
    secret: Option<&str>,
    message: &Message,
) -> Result<(), SendError> {
    let mut url = url::Url::parse(webhook_url)
        .map_err(|_| SendError::config("invalid dingtalk webhook_url"))?;
    if let Some(secret) = secret {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let sign = sign(secret, now)?;
        // query_pairs_mut URL-encodes the base64 (`+`, `/`, `=`).
        url.query_pairs_mut()
            .append_pair("timestamp", &now.to_string())
            .append_pair("sign", &sign);
    }
    let body = serde_json::json!({
        "msgtype": "markdown",
        "markdown": { "title": message.headline, "text": message.markdown },
    });
    let resp = http
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(http_error)?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(http_status_error(status, &text));
    }
    match serde_json::from_str::<Answer>(&text) {
        Ok(a) if a.errcode == 0 => Ok(()),
        Ok(a) => Err(SendError::transient(format!(
            "dingtalk errcode {}: {}",
            a.errcode, a.errmsg
        ))),
        Err(_) => Err(http_status_error(status, &text)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_base64_of_the_hmac() {
        let s = super::sign("SEC123", 1_700_000_000_000).expect("signs");
        // 32 bytes of HMAC in standard base64.
        assert_eq!(s.len(), 44);
        assert!(s.ends_with('='));
        assert_eq!(s, super::sign("SEC123", 1_700_000_000_000).expect("signs"));
        assert_ne!(s, super::sign("SEC123", 1_700_000_000_001).expect("signs"));
    }
}

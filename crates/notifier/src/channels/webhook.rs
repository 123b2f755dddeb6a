//! Generic webhooks (alerts.md): a `POST` of the event as JSON with
//! `X-Slipway-Event-Id`, and with a secret, `X-Slipway-Signature:
//! sha256=<hex HMAC-SHA256 of the body>`, as GitHub signs its own.

use domain::alert::Event;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::{SendError, http_error, http_status_error};
use crate::render::EventJson;

/// The signature header's value for `body`.
pub fn signature(secret: &str, body: &[u8]) -> Result<String, SendError> {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| SendError::config("invalid webhook secret"))?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

pub async fn send(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    event: &Event,
    body: &EventJson<'_>,
) -> Result<(), SendError> {
    let body = serde_json::to_vec(body).map_err(|e| SendError::config(e.to_string()))?;
    let mut req = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Slipway-Event-Id", &event.id)
        .header("X-Slipway-Event", event.kind.as_str());
    if let Some(secret) = secret {
        req = req.header("X-Slipway-Signature", signature(secret, &body)?);
    }
    let resp = req.body(body).send().await.map_err(http_error)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(http_status_error(status, &text))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signs_like_github() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog")
        assert_eq!(
            super::signature("key", b"The quick brown fox jumps over the lazy dog").ok(),
            Some(
                "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
                    .to_owned()
            )
        );
    }
}

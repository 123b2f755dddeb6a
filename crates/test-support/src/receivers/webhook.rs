//! The receiver of Slipway's own webhooks under `/hooks/`: checks the
//! signature when the hook has a secret, the event id and the JSON body.

use actix_web::http::StatusCode;
use serde_json::Value;

use super::http::{HttpReceiver, Received, Reply, Routes};
use super::recording::lock;

/// Slipway's webhook signature header value: `sha256=<hex HMAC-SHA256>`
/// of the raw body (the same scheme as GitHub's).
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    crate::hooks::github_signature(secret.as_bytes(), body)
}

impl HttpReceiver {
    /// A generic webhook URL; with a secret, requests must carry its
    /// `X-Slipway-Signature`.
    pub fn webhook_url(&self, name: &str, secret: Option<&str>) -> String {
        lock(&self.shared.routes)
            .webhooks
            .insert(name.to_owned(), secret.map(str::to_owned));
        format!("{}/hooks/{name}", self.base)
    }
}

impl Routes {
    pub(super) fn webhook(&self, name: &str, request: &Received) -> Reply {
        let Some(secret) = self.webhooks.get(name) else {
            return Reply::text(StatusCode::NOT_FOUND, "no such hook", false);
        };
        if let Some(secret) = secret {
            let expected = webhook_signature(secret, &request.body);
            if request.header("x-slipway-signature") != Some(expected.as_str()) {
                return Reply::text(StatusCode::UNAUTHORIZED, "bad signature", false);
            }
        }
        if request
            .header("x-slipway-event-id")
            .is_none_or(|id| id.trim().is_empty())
        {
            return Reply::text(StatusCode::BAD_REQUEST, "missing x-slipway-event-id", false);
        }
        if serde_json::from_slice::<Value>(&request.body).is_err() {
            return Reply::text(StatusCode::BAD_REQUEST, "body is not json", false);
        }
        Reply::no_content()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::receivers::client::{WAIT, post};

    #[tokio::test]
    async fn webhook_checks_signature_event_id_and_json() {
        let receiver = HttpReceiver::start().await;
        let url = receiver.webhook_url("deploys", Some("hook-secret"));
        let body = json!({"event": "task.failed", "task_id": 7})
            .to_string()
            .into_bytes();
        let good = webhook_signature("hook-secret", &body);
        let bad = webhook_signature("other", &body);

        let headers = [
            ("x-slipway-signature", good.as_str()),
            ("x-slipway-event-id", "ev-1"),
        ];
        let (status, _, _) = post(&url, &headers, body.clone()).await;
        assert_eq!(status, 204);
        let (status, _, _) = post(
            &url,
            &[
                ("x-slipway-signature", bad.as_str()),
                ("x-slipway-event-id", "ev-1"),
            ],
            body.clone(),
        )
        .await;
        assert_eq!(status, 401);
        let (status, _, _) = post(&url, &[("x-slipway-event-id", "ev-1")], body.clone()).await;
        assert_eq!(status, 401);
        let (status, _, _) = post(
            &url,
            &[("x-slipway-signature", good.as_str())],
            body.clone(),
        )
        .await;
        assert_eq!(status, 400);

        let open = receiver.webhook_url("open", None);
        let (status, _, _) = post(
            &open,
            &[("x-slipway-event-id", "ev-2")],
            b"not json".to_vec(),
        )
        .await;
        assert_eq!(status, 400);
        let (status, _, _) = post(&open, &[("x-slipway-event-id", "ev-2")], b"{}".to_vec()).await;
        assert_eq!(status, 204);
        let (status, _, _) = post(
            &format!("{}/hooks/missing", receiver.base()),
            &[],
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(status, 404);
        let (status, _, body) = post(
            &format!("{}/elsewhere", receiver.base()),
            &[],
            b"{}".to_vec(),
        )
        .await;
        assert_eq!((status, body.as_str()), (404, "no_service"));

        let accepted = receiver.wait_accepted("/hooks/", 2, WAIT).await;
        assert_eq!(accepted[0].path, "/hooks/deploys");
        assert_eq!(accepted[0].header("X-Slipway-Event-Id"), Some("ev-1"));
        assert_eq!(accepted[0].json()["task_id"], 7);
        assert_eq!(accepted[1].path, "/hooks/open");
        assert_eq!(receiver.received("/hooks/deploys").len(), 4);
        assert_eq!(receiver.received("/").len(), 8);
    }
}

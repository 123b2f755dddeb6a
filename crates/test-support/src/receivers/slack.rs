//! Slack's side of the HTTP receiver: incoming webhooks under
//! `/slack/hooks/` and the Web API's `chat.postMessage` under `/slack/api/`,
//! each answering and failing in its own way, as Slack does.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use super::http::{HttpReceiver, Received, Reply, Routes, is_json_content_type, non_empty_str};
use super::recording::lock;

/// What `chat.postMessage` answers as the message's timestamp.
pub const SLACK_TS: &str = "1700000000.000100";
/// Slack refuses a message with more blocks than this.
const SLACK_MAX_BLOCKS: usize = 50;

impl HttpReceiver {
    /// An incoming-webhook URL that Slack would know (the token may contain
    /// slashes, as Slack's `T…/B…/…` paths do).
    pub fn slack_webhook_url(&self, token: &str) -> String {
        lock(&self.shared.routes)
            .slack_hooks
            .insert(token.to_owned());
        format!("{}/slack/hooks/{token}", self.base)
    }

    /// The Web API base, without a trailing slash.
    pub fn slack_api_url(&self) -> String {
        format!("{}/slack/api", self.base)
    }

    /// A bot token that `chat.postMessage` accepts.
    pub fn allow_slack_token(&self, bot_token: &str) {
        lock(&self.shared.routes)
            .slack_tokens
            .insert(bot_token.to_owned());
    }
}

impl Reply {
    fn slack_error(error: &str) -> Self {
        Self::json(json!({"ok": false, "error": error}), false)
    }
}

impl Routes {
    /// Slack's incoming webhooks answer in plain text, errors with 4xx.
    pub(super) fn slack_hook(&self, token: &str, request: &Received) -> Reply {
        if !self.slack_hooks.contains(token) {
            return Reply::text(StatusCode::NOT_FOUND, "no_service", false);
        }
        let payload = request.json();
        if !payload.is_object() {
            return Reply::text(StatusCode::BAD_REQUEST, "invalid_payload", false);
        }
        if let Err(error) = slack_content(&payload) {
            return Reply::text(StatusCode::BAD_REQUEST, error, false);
        }
        Reply::text(StatusCode::OK, "ok", true)
    }

    /// The Web API answers 200 with `ok: false` for its own errors.
    pub(super) fn slack_api(&self, api_method: &str, request: &Received) -> Reply {
        if api_method != "chat.postMessage" {
            return Reply::json_status(
                StatusCode::NOT_FOUND,
                json!({"ok": false, "error": "unknown_method"}),
                false,
            );
        }
        let authorized = request
            .header("authorization")
            .and_then(|auth| auth.strip_prefix("Bearer "))
            .is_some_and(|token| self.slack_tokens.contains(token.trim()));
        if !authorized {
            return Reply::slack_error("invalid_auth");
        }
        if !is_json_content_type(request) {
            return Reply::slack_error("invalid_form_data");
        }
        let payload = request.json();
        if !payload.is_object() {
            return Reply::slack_error("invalid_json");
        }
        let Some(channel) = non_empty_str(&payload, "channel") else {
            return Reply::slack_error("channel_not_found");
        };
        if let Err(error) = slack_content(&payload) {
            return Reply::slack_error(error);
        }
        Reply::json(
            json!({
                "ok": true,
                "channel": channel,
                "ts": SLACK_TS,
                "message": {"ts": SLACK_TS},
            }),
            true,
        )
    }
}

/// Slack wants something to show: a non-empty `text` or well-formed `blocks`.
fn slack_content(payload: &Value) -> Result<(), &'static str> {
    match payload.get("blocks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(blocks)) => {
            let well_formed = blocks.len() <= SLACK_MAX_BLOCKS
                && blocks.iter().all(|b| non_empty_str(b, "type").is_some());
            if !well_formed {
                return Err("invalid_blocks");
            }
            if !blocks.is_empty() {
                return Ok(());
            }
        }
        Some(_) => return Err("invalid_blocks"),
    }
    match non_empty_str(payload, "text") {
        Some(_) => Ok(()),
        None => Err("no_text"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::client::{WAIT, post, post_json};

    #[tokio::test]
    async fn slack_webhook_answers_like_slack() {
        let receiver = HttpReceiver::start().await;
        let url = receiver.slack_webhook_url("T0001/B0001/abc");

        let (status, content_type, body) = post(
            &url,
            &[],
            json!({"text": "build failed"}).to_string().into_bytes(),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        assert!(content_type.starts_with("text/plain"), "{content_type}");

        let unknown = format!("{}/slack/hooks/T0001/B0001/nope", receiver.base());
        let (status, _, body) = post(&unknown, &[], b"{\"text\":\"x\"}".to_vec()).await;
        assert_eq!((status, body.as_str()), (404, "no_service"));
        let (status, _, body) = post(&url, &[], b"not json".to_vec()).await;
        assert_eq!((status, body.as_str()), (400, "invalid_payload"));
        let (status, _, body) = post(&url, &[], b"{\"text\":\"\"}".to_vec()).await;
        assert_eq!((status, body.as_str()), (400, "no_text"));

        receiver.fail_next("/slack/hooks", 1);
        let (status, _, _) = post(&url, &[], b"{\"text\":\"retry me\"}".to_vec()).await;
        assert_eq!(status, 500);
        let (status, _, _) = post(&url, &[], b"{\"text\":\"retry me\"}".to_vec()).await;
        assert_eq!(status, 200);

        let accepted = receiver.wait_accepted("/slack/hooks", 2, WAIT).await;
        assert_eq!(accepted[0].json()["text"], "build failed");
        assert_eq!(accepted[1].text(), "{\"text\":\"retry me\"}");
        assert_eq!(receiver.received("/slack/hooks").len(), 6);
        assert_eq!(receiver.received("/slack").len(), 6);
        assert!(receiver.received("/hooks").is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slack_post_message_checks_token_and_channel() {
        let receiver = HttpReceiver::start().await;
        receiver.allow_slack_token("xoxb-good");
        let url = format!("{}/chat.postMessage", receiver.slack_api_url());
        let message = json!({
            "channel": "#ci",
            "text": "build failed",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*failed*"}}],
        });

        let (status, content_type, body) = post_json(
            &url,
            &[("authorization", "Bearer xoxb-good")],
            message.clone(),
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        assert_eq!(
            body,
            json!({"ok": true, "channel": "#ci", "ts": SLACK_TS, "message": {"ts": SLACK_TS}})
        );

        let (_, _, body) = post_json(
            &url,
            &[("authorization", "Bearer xoxb-bad")],
            message.clone(),
        )
        .await;
        assert_eq!(body, json!({"ok": false, "error": "invalid_auth"}));
        let (_, _, body) = post_json(&url, &[], message.clone()).await;
        assert_eq!(body["error"], "invalid_auth");
        let (_, _, body) = post_json(
            &url,
            &[("authorization", "Bearer xoxb-good")],
            json!({"text": "where to?"}),
        )
        .await;
        assert_eq!(body, json!({"ok": false, "error": "channel_not_found"}));
        let (_, _, body) = post_json(
            &url,
            &[("authorization", "Bearer xoxb-good")],
            json!({"channel": "#ci", "blocks": [{"text": "no type"}]}),
        )
        .await;
        assert_eq!(body["error"], "invalid_blocks");

        let accepted = receiver
            .wait_accepted("/slack/api/chat.postMessage", 1, WAIT)
            .await;
        assert_eq!(accepted.len(), 1);
        assert_eq!(
            accepted[0].header("Authorization"),
            Some("Bearer xoxb-good")
        );
        assert_eq!(accepted[0].json(), message);
        assert_eq!(receiver.received("/slack/api").len(), 5);
    }
}

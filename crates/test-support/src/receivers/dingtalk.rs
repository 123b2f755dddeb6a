//! DingTalk's side of the HTTP receiver: a custom robot under
//! `/dingtalk/robot/send` that checks the access token, the signature when
//! the robot has a secret, and the markdown message, with DingTalk's codes.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::web;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::http::{HttpReceiver, Received, Reply, Routes, is_json_content_type, non_empty_str};
use super::percent_encode;
use super::recording::lock;

/// DingTalk refuses a signed request whose timestamp is further from now.
const DINGTALK_WINDOW_MS: i64 = 60 * 60 * 1000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// DingTalk's robot signature, before URL encoding:
/// `base64(HMAC-SHA256(key = secret, "{timestamp}\n{secret}"))`.
pub fn dingtalk_sign(secret: &str, timestamp_ms: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

impl HttpReceiver {
    /// A robot URL; with a secret, requests must be signed with it.
    pub fn dingtalk_url(&self, access_token: &str, secret: Option<&str>) -> String {
        lock(&self.shared.routes)
            .dingtalk
            .insert(access_token.to_owned(), secret.map(str::to_owned));
        format!(
            "{}/dingtalk/robot/send?access_token={}",
            self.base,
            percent_encode(access_token)
        )
    }
}

impl Reply {
    fn dingtalk_error(errcode: i64, errmsg: &str) -> Self {
        Self::json(json!({"errcode": errcode, "errmsg": errmsg}), false)
    }
}

impl Routes {
    pub(super) fn dingtalk(&self, request: &Received) -> Reply {
        // Decoded as a servlet would: `+` is a space, so a sign sent without
        // URL encoding fails here as it does at DingTalk.
        let params = web::Query::<HashMap<String, String>>::from_query(&request.query)
            .map(web::Query::into_inner)
            .unwrap_or_default();
        let secret = match params
            .get("access_token")
            .and_then(|token| self.dingtalk.get(token))
        {
            Some(secret) => secret,
            None => return Reply::dingtalk_error(300001, "token is not exist"),
        };
        if let Some(secret) = secret {
            let timestamp = params.get("timestamp").map(String::as_str).unwrap_or("");
            let fresh = timestamp
                .parse::<i64>()
                .is_ok_and(|ts| (now_ms() - ts).abs() <= DINGTALK_WINDOW_MS);
            if !fresh {
                return Reply::dingtalk_error(310000, "invalid timestamp");
            }
            if params.get("sign").map(String::as_str) != Some(&dingtalk_sign(secret, timestamp)) {
                return Reply::dingtalk_error(310000, "sign not match");
            }
        }
        if !is_json_content_type(request) {
            return Reply::dingtalk_error(43004, "invalid content-type");
        }
        let payload = request.json();
        if !payload.is_object() {
            return Reply::dingtalk_error(40035, "missing parameter json");
        }
        if payload.get("msgtype").and_then(Value::as_str) != Some("markdown") {
            return Reply::dingtalk_error(40035, "msgtype is not markdown");
        }
        let markdown = payload.get("markdown").cloned().unwrap_or(Value::Null);
        for field in ["title", "text"] {
            if non_empty_str(&markdown, field).is_none() {
                return Reply::dingtalk_error(
                    40035,
                    &format!("missing parameter markdown.{field}"),
                );
            }
        }
        Reply::json(json!({"errcode": 0, "errmsg": "ok"}), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::client::{WAIT, post_json};

    fn signed_dingtalk_url(url: &str, secret: &str, timestamp: i64) -> String {
        let sign = dingtalk_sign(secret, &timestamp.to_string());
        format!("{url}&timestamp={timestamp}&sign={}", percent_encode(&sign))
    }

    #[tokio::test]
    async fn dingtalk_robot_verifies_the_signature() {
        let receiver = HttpReceiver::start().await;
        let secret = "SEC0123456789abcdef";
        let url = receiver.dingtalk_url("robot-token", Some(secret));
        let message =
            json!({"msgtype": "markdown", "markdown": {"title": "CI", "text": "## failed"}});
        let now = now_ms();

        let (status, _, body) = post_json(
            &signed_dingtalk_url(&url, secret, now),
            &[],
            message.clone(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"errcode": 0, "errmsg": "ok"}));

        let (_, _, body) = post_json(
            &signed_dingtalk_url(&url, "wrong", now),
            &[],
            message.clone(),
        )
        .await;
        assert_eq!(body, json!({"errcode": 310000, "errmsg": "sign not match"}));
        let (_, _, body) = post_json(&url, &[], message.clone()).await;
        assert_eq!(body["errcode"], 310000);
        let stale = now - 2 * DINGTALK_WINDOW_MS;
        let (_, _, body) = post_json(
            &signed_dingtalk_url(&url, secret, stale),
            &[],
            message.clone(),
        )
        .await;
        assert_eq!(body["errcode"], 310000);

        // A sign with a `+` sent without URL encoding reads as a space.
        let (timestamp, sign) = (0..)
            .map(|back| now - back)
            .map(|ts| (ts, dingtalk_sign(secret, &ts.to_string())))
            .find(|(_, sign)| sign.contains('+'))
            .expect("some sign has a plus");
        let unencoded = format!("{url}&timestamp={timestamp}&sign={sign}");
        let (_, _, body) = post_json(&unencoded, &[], message.clone()).await;
        assert_eq!(body["errmsg"], "sign not match");

        let unknown = format!("{}/dingtalk/robot/send?access_token=nope", receiver.base());
        let (_, _, body) = post_json(&unknown, &[], message.clone()).await;
        assert_eq!(
            body,
            json!({"errcode": 300001, "errmsg": "token is not exist"})
        );

        let unsigned = receiver.dingtalk_url("plain-token", None);
        let (_, _, body) = post_json(
            &unsigned,
            &[],
            json!({"msgtype": "markdown", "markdown": {"title": "CI", "text": ""}}),
        )
        .await;
        assert_eq!(body["errcode"], 40035);
        let (_, _, body) = post_json(
            &unsigned,
            &[],
            json!({"msgtype": "text", "text": {"content": "x"}}),
        )
        .await;
        assert_eq!(body["errcode"], 40035);
        let (_, _, body) = post_json(&unsigned, &[], message.clone()).await;
        assert_eq!(body["errcode"], 0);

        let accepted = receiver.wait_accepted("/dingtalk", 2, WAIT).await;
        assert_eq!(accepted[0].json(), message);
        assert!(accepted[0].query.contains("access_token=robot-token"));
        assert!(accepted[1].query.contains("access_token=plain-token"));
        assert_eq!(receiver.received("/dingtalk").len(), 9);
    }
}

//! Local stand-ins for the services the notifier delivers to: an HTTP
//! receiver that plays Slack (incoming webhooks and `chat.postMessage`), a
//! DingTalk robot and a receiver of Slipway's signed webhooks, and an SMTP
//! sink. Each checks a request the way the real service does, answers as it
//! does, and records what arrived, so a test asserts on what a user would get.
//!
//! Slack, DingTalk and the webhooks share one HTTP server ([`HttpReceiver`],
//! in `http`), each answering under its own path; their checks live in a
//! file each. What a receiver took is kept in a `recording` log that tests
//! wait on.

mod dingtalk;
mod http;
mod recording;
mod slack;
mod smtp;
mod webhook;

#[cfg(test)]
mod client;

pub use dingtalk::dingtalk_sign;
pub use http::{HttpReceiver, Received};
pub use slack::SLACK_TS;
pub use smtp::{Mail, SmtpSink};
pub use webhook::webhook_signature;

/// `urlencode` as DingTalk and Slack's URLs expect it: everything but the
/// unreserved characters of RFC 3986 percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

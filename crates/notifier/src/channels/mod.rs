//! The channels: a resolved channel configuration ([`Target`]) and the
//! clients that send to it. The notifier is the only service that talks to
//! Slack, SMTP servers, DingTalk and webhook receivers. Errors leave here
//! with every secret of the target (URLs with tokens, bot tokens, signing
//! secrets) replaced by `***`, since they are logged and shown by the API.

mod dingtalk;
mod email;
mod slack;
mod webhook;

use std::collections::HashMap;
use std::time::Duration;

use domain::alert::{Channel, ChannelKind, Event, url_origin};
use domain::workflow::resolve_secrets;

use crate::render::{self, Message};

/// How long one attempt may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// A channel with its placeholders resolved: ready to send to.
#[derive(Clone)]
pub enum Target {
    SlackWebhook { url: String },
    SlackBot { token: String, channel: String },
    Email { to: Vec<String> },
    DingTalk { url: String, secret: Option<String> },
    Webhook { url: String, secret: Option<String> },
}

impl std::fmt::Debug for Target {
    // Never print the values: they are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.describe())
    }
}

impl Target {
    /// Resolves `${{ secrets.NAME }}` in a channel's values.
    pub fn resolve(
        channel: Channel<'_>,
        secrets: &HashMap<String, String>,
    ) -> Result<Target, SendError> {
        let r = |v: &str| resolve_secrets(v, secrets).map_err(SendError::config);
        let opt = |v: &Option<String>| v.as_deref().map(r).transpose();
        Ok(match channel {
            Channel::Slack(s) => match (&s.webhook_url, &s.token, &s.channel) {
                (Some(url), _, _) => Target::SlackWebhook { url: r(url)? },
                (None, Some(token), Some(channel)) => Target::SlackBot {
                    token: r(token)?,
                    channel: r(channel)?,
                },
                _ => {
                    return Err(SendError::config(
                        "slack needs webhook_url, or token and channel",
                    ));
                }
            },
            Channel::Email(e) => Target::Email {
                to: e.to.iter().map(|a| r(a)).collect::<Result<_, _>>()?,
            },
            Channel::DingTalk(d) => Target::DingTalk {
                url: r(&d.webhook_url)?,
                secret: opt(&d.secret)?,
            },
            Channel::Webhook(w) => Target::Webhook {
                url: r(&w.url)?,
                secret: opt(&w.secret)?,
            },
        })
    }

    pub fn kind(&self) -> ChannelKind {
        match self {
            Target::SlackWebhook { .. } | Target::SlackBot { .. } => ChannelKind::Slack,
            Target::Email { .. } => ChannelKind::Email,
            Target::DingTalk { .. } => ChannelKind::DingTalk,
            Target::Webhook { .. } => ChannelKind::Webhook,
        }
    }

    /// Where it sends, without secrets.
    pub fn describe(&self) -> String {
        match self {
            Target::SlackWebhook { url } => format!("incoming webhook {}", url_origin(url)),
            Target::SlackBot { channel, .. } => format!("chat.postMessage {channel}"),
            Target::Email { to } => to.join(", "),
            Target::DingTalk { url, .. } => format!("robot {}", url_origin(url)),
            Target::Webhook { url, .. } => format!("POST {}", url_origin(url)),
        }
    }

    /// The values an error must never show.
    fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut url = |u: &str| {
            out.push(u.to_owned());
            // Servers and clients may echo the part after the host alone.
            if let Some((_, rest)) = u.split_once("://")
                && let Some(slash) = rest.find(['/', '?'])
                && rest.len() > slash + 1
            {
                out.push(rest[slash..].to_owned());
            }
        };
        match self {
            Target::SlackWebhook { url: u } => url(u),
            Target::SlackBot { token, .. } => out.push(token.clone()),
            Target::Email { .. } => {}
            Target::DingTalk { url: u, secret } | Target::Webhook { url: u, secret } => {
                url(u);
                out.extend(secret.clone());
            }
        }
        out.retain(|s| s.len() >= 4);
        out
    }
}

/// Why an attempt failed, with secrets already removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// What went wrong, safe to log and to show through the API.
    pub message: String,
    /// Trying again cannot help (a missing secret, e-mail not configured).
    pub permanent: bool,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }

    /// The same error with `secrets` blanked out.
    fn redacted(mut self, secrets: &[String]) -> Self {
        let mut longest_first: Vec<&String> = secrets.iter().collect();
        longest_first.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in longest_first {
            self.message = self.message.replace(s.as_str(), "***");
        }
        self
    }
}

/// The clients of every channel, shared by all deliveries.
pub struct Channels {
    http: reqwest::Client,
    slack: slack::Slack,
    email: Option<email::Mailer>,
}

impl Channels {
    pub fn new(slack_api_url: &str, smtp_url: &str, smtp_from: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!("slipway-notifier/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let email = if smtp_url.is_empty() {
            None
        } else {
            Some(email::Mailer::new(smtp_url, smtp_from)?)
        };
        Ok(Self {
            http,
            slack: slack::Slack::new(slack_api_url)?,
            email,
        })
    }

    /// Sends one message; `test` marks a test of the channel.
    pub async fn send(
        &self,
        target: &Target,
        event: &Event,
        public_url: &str,
        test: bool,
    ) -> Result<(), SendError> {
        let message: Message = render::render(event, public_url, test);
        let sending = async {
            match target {
                Target::SlackWebhook { url } => self.slack.webhook(url, &message).await,
                Target::SlackBot { token, channel } => {
                    self.slack.post_message(token, channel, &message).await
                }
                Target::Email { to } => match &self.email {
                    Some(mailer) => mailer.send(to, &message).await,
                    None => Err(SendError::config(
                        "e-mail is not configured: set SLIPWAY_SMTP_URL",
                    )),
                },
                Target::DingTalk { url, secret } => {
                    dingtalk::send(&self.http, url, secret.as_deref(), &message).await
                }
                Target::Webhook { url, secret } => {
                    let body = render::event_json(event, &message.url, test);
                    webhook::send(&self.http, url, secret.as_deref(), event, &body).await
                }
            }
        };
        let result = match tokio::time::timeout(SEND_TIMEOUT, sending).await {
            Ok(result) => result,
            Err(_) => Err(SendError::transient(format!(
                "no answer within {}s",
                SEND_TIMEOUT.as_secs()
            ))),
        };
        result.map_err(|e| e.redacted(&target.secrets()))
    }
}

/// An HTTP status that is not a success, with the start of the body.
fn http_status_error(status: reqwest::StatusCode, body: &str) -> SendError {
    let body: String = body.chars().take(200).collect();
    SendError::transient(format!("answered {status}: {}", body.trim()))
}

/// A reqwest error without its URL (which may hold a token).
fn http_error(err: reqwest::Error) -> SendError {
    let err = err.without_url();
    let what = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "cannot connect".to_owned()
    } else {
        err.to_string()
    };
    SendError::transient(what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::workflow::{DingTalkChannel, SlackChannel};

    #[test]
    fn resolves_placeholders_and_hides_their_values() {
        let secrets = HashMap::from([("HOOK".to_owned(), "T00/B00/abcdef".to_owned())]);
        let slack = SlackChannel {
            webhook_url: Some("https://hooks.slack.com/services/${{ secrets.HOOK }}".into()),
            token: None,
            channel: None,
        };
        let target = Target::resolve(Channel::Slack(&slack), &secrets).expect("resolves");
        assert_eq!(
            target.describe(),
            "incoming webhook https://hooks.slack.com"
        );
        assert!(!format!("{target:?}").contains("abcdef"));
        let err = SendError::transient(
            "error for https://hooks.slack.com/services/T00/B00/abcdef and /services/T00/B00/abcdef",
        )
        .redacted(&target.secrets());
        assert!(!err.message.contains("abcdef"), "{}", err.message);

        let missing = DingTalkChannel {
            webhook_url: "${{ secrets.NOPE }}".into(),
            secret: None,
        };
        let err = Target::resolve(Channel::DingTalk(&missing), &secrets).expect_err("missing");
        assert!(err.permanent);
        assert_eq!(err.message, "secret NOPE is not set");
    }
}

//! Slack through slack-morphism: incoming webhooks, and `chat.postMessage`
//! with a bot token. The API base comes from `SLIPWAY_SLACK_API_URL`; plain
//! `http://` is allowed so a local server can stand in for Slack.

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::SendError;
use crate::render::Message;

type Connector = SlackClientHyperConnector<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
>;

pub struct Slack {
    client: SlackClient<Connector>,
}

impl Slack {
    pub fn new(api_url: &str) -> Result<Self, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let connector = SlackClientHyperConnector::from(https)
            .with_slack_api_url(api_url.trim_end_matches('/'));
        Ok(Self {
            client: SlackClient::new(connector),
        })
    }

    fn content(message: &Message) -> SlackMessageContent {
        SlackMessageContent::new()
            .with_text(message.plain.clone())
            .with_blocks(vec![
                SlackSectionBlock::new()
                    .with_text(md!("{}", message.slack))
                    .into(),
            ])
    }

    pub async fn webhook(&self, url: &str, message: &Message) -> Result<(), SendError> {
        let url =
            url::Url::parse(url).map_err(|_| SendError::config("invalid slack webhook_url"))?;
        let req = SlackApiPostWebhookMessageRequest::new(Self::content(message));
        self.client
            .post_webhook_message(&url, &req)
            .await
            .map(|_| ())
            .map_err(slack_error)
    }

    pub async fn post_message(
        &self,
        token: &str,
        channel: &str,
        message: &Message,
    ) -> Result<(), SendError> {
        let token = SlackApiToken::new(SlackApiTokenValue(token.to_owned()));
        let session = self.client.open_session(&token);
        let req = SlackApiChatPostMessageRequest::new(channel.into(), Self::content(message));
        session
            .chat_post_message(&req)
            .await
            .map(|_| ())
            .map_err(slack_error)
    }
}

fn slack_error(err: SlackClientError) -> SendError {
    let message = match &err {
        SlackClientError::ApiError(e) => format!("slack: {}", e.code),
        SlackClientError::HttpError(e) => format!("slack: http {}", e.status_code),
        SlackClientError::RateLimitError(_) => "slack: rate limited".to_owned(),
        other => format!("slack: {}", first_line(&other.to_string())),
    };
    SendError::transient(message)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

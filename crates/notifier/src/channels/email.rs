//! E-mail over SMTP (lettre): one message with a plain-text and an HTML
//! part. `SLIPWAY_SMTP_URL` holds the server and credentials
//! (`smtp://user:pass@host:port`, `smtps://` for TLS,
//! `?tls=required` for STARTTLS).

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Mail, Tokio1Executor};

use super::SendError;
use crate::render::Message;

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(smtp_url: &str, from: &str) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| format!("SLIPWAY_SMTP_URL: {e}"))?
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| format!("SLIPWAY_SMTP_FROM: {e}"))?;
        Ok(Self { transport, from })
    }

    pub async fn send(&self, to: &[String], message: &Message) -> Result<(), SendError> {
        let mut builder = Mail::builder()
            .from(self.from.clone())
            .subject(format!("[Slipway] {}", message.headline));
        for address in to {
            let mailbox = address
                .parse::<Mailbox>()
                .map_err(|e| SendError::config(format!("invalid address {address:?}: {e}")))?;
            builder = builder.to(mailbox);
        }
        let mail = builder
            .multipart(MultiPart::alternative_plain_html(
                message.plain.clone(),
                message.html.clone(),
            ))
            .map_err(|e| SendError::config(e.to_string()))?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(()),
            Err(e) => Err(SendError::transient(format!("smtp: {e}"))),
        }
    }
}

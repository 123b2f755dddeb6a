//! The `notify` rules of a workflow, and the server's default rule from
//! `SLIPWAY_DEFAULT_NOTIFY`, which is written with the same channels.

use super::field::{Field, Record, Result, SpecError};
use super::yaml::{self, Pos};
use super::{AlertEvent, DingTalkChannel, EmailChannel, NotifyRule, SlackChannel, WebhookChannel};

/// Parses `SLIPWAY_DEFAULT_NOTIFY`: the channels of one `notify` entry
/// (slack, email, dingtalk, webhook), for the server's default rule. `on` is
/// optional there and defaults to `default_on`; secrets placeholders are
/// refused, as the server default belongs to no workflow.
pub fn parse_default_notify(yaml: &str, default_on: &[AlertEvent]) -> Result<NotifyRule> {
    let root = yaml::load(yaml, &super::Limits::default())
        .map_err(|e| SpecError::at("", e.pos, e.message))?
        .ok_or_else(|| SpecError::at("", Pos::START, "empty: expected a mapping of channels"))?;
    let root = Field::root(&root);
    let r = root.record(&["on", "slack", "email", "dingtalk", "webhook"])?;
    let on = match r.field("on") {
        Some(on_field) => alert_events(&on_field)?,
        None => default_on.to_vec(),
    };
    let rule = notify_channels(&root, &r, on)?;
    if let Some(pos) = yaml.find("${{") {
        let line = yaml[..pos].matches('\n').count() + 1;
        let column = yaml[..pos]
            .rsplit('\n')
            .next()
            .map_or(0, |l| l.chars().count())
            + 1;
        return Err(SpecError::at(
            "",
            Pos { line, column },
            "secrets placeholders belong to workflows; write the value itself",
        ));
    }
    Ok(rule)
}

pub(super) fn notify_rule(f: &Field<'_>) -> Result<NotifyRule> {
    let r = f.record(&["on", "slack", "email", "dingtalk", "webhook"])?;
    let on = alert_events(&r.required("on")?)?;
    notify_channels(f, &r, on)
}

fn alert_events(on_field: &Field<'_>) -> Result<Vec<AlertEvent>> {
    let mut on = Vec::new();
    for item in on_field.seq()? {
        let s = item.text()?;
        let event = AlertEvent::parse(&s).ok_or_else(|| {
            let known: Vec<&str> = AlertEvent::ALL.iter().map(|e| e.as_str()).collect();
            item.error(format!(
                "unknown event \"{s}\": use one of {}",
                known.join(", ")
            ))
        })?;
        if on.contains(&event) {
            return Err(item.error(format!("event \"{s}\" is listed twice")));
        }
        on.push(event);
    }
    if on.is_empty() {
        return Err(on_field.error("list at least one event"));
    }
    Ok(on)
}

fn notify_channels(f: &Field<'_>, r: &Record<'_>, on: Vec<AlertEvent>) -> Result<NotifyRule> {
    let slack = r
        .field("slack")
        .map(|f| {
            let r = f.record(&["webhook_url", "token", "channel"])?;
            let webhook_url = r
                .field("webhook_url")
                .map(|f| f.url_or_secret())
                .transpose()?;
            let token = r.field("token").map(|f| f.secret_or_text()).transpose()?;
            let channel = r.field("channel").map(|f| f.secret_or_text()).transpose()?;
            match (&webhook_url, &token, &channel) {
                (Some(_), None, None) | (None, Some(_), Some(_)) => Ok(SlackChannel {
                    webhook_url,
                    token,
                    channel,
                }),
                (Some(_), _, _) => {
                    Err(f.error("use either webhook_url, or token and channel, not both"))
                }
                (None, None, None) => {
                    Err(f.error(r#"missing required key "webhook_url" (or "token" and "channel")"#))
                }
                (None, Some(_), None) => Err(f.error(r#"missing required key "channel""#)),
                (None, None, Some(_)) => Err(f.error(r#"missing required key "token""#)),
            }
        })
        .transpose()?;
    let email = r
        .field("email")
        .map(|f| {
            let r = f.record(&["to"])?;
            let to_field = r.required("to")?;
            let to: Vec<String> = to_field
                .seq()?
                .iter()
                .map(|item| {
                    let address = item.secret_or_text()?;
                    let valid = address.contains("${{")
                        || (address.split_once('@').is_some_and(|(local, domain)| {
                            !local.is_empty() && !domain.is_empty()
                        }) && !address.contains(char::is_whitespace));
                    if valid {
                        Ok(address)
                    } else {
                        Err(item.error(format!("invalid email address \"{address}\"")))
                    }
                })
                .collect::<Result<_>>()?;
            if to.is_empty() {
                return Err(to_field.error("list at least one address"));
            }
            Ok(EmailChannel { to })
        })
        .transpose()?;
    let dingtalk = r
        .field("dingtalk")
        .map(|f| {
            let r = f.record(&["webhook_url", "secret"])?;
            Ok(DingTalkChannel {
                webhook_url: r.required("webhook_url")?.url_or_secret()?,
                secret: r.field("secret").map(|f| f.secret_or_text()).transpose()?,
            })
        })
        .transpose()?;
    let webhook = r
        .field("webhook")
        .map(|f| {
            let r = f.record(&["url", "secret"])?;
            Ok(WebhookChannel {
                url: r.required("url")?.url_or_secret()?,
                secret: r.field("secret").map(|f| f.secret_or_text()).transpose()?,
            })
        })
        .transpose()?;
    if slack.is_none() && email.is_none() && dingtalk.is_none() && webhook.is_none() {
        return Err(f.error("missing a channel: add slack, email, dingtalk or webhook"));
    }
    Ok(NotifyRule {
        on,
        slack,
        email,
        dingtalk,
        webhook,
    })
}

//! Alerts (alerts.md): the event the notifier receives, which channels it
//! goes to, when a repeat is throttled, and how long a failed delivery waits
//! before its next attempt. Pure: the notifier and the store call these with
//! what they read.

use std::fmt;
use std::time::Duration;

use crate::workflow::{
    AlertEvent, DingTalkChannel, EmailChannel, NotifyRule, SlackChannel, WebhookChannel,
};

/// What the server default notifies about: the seed's rules, and pushes
/// whose webhook waited over an hour in the gateway's spool.
pub const DEFAULT_EVENTS: [AlertEvent; 7] = [
    AlertEvent::BuildFailed,
    AlertEvent::DeployFailed,
    AlertEvent::HealthCheckFailed,
    AlertEvent::RolledBack,
    AlertEvent::DeployTimeout,
    AlertEvent::HealthDown,
    AlertEvent::WebhookDelayed,
];

/// Longest wait between two attempts of one delivery.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60 * 60);

/// One event of a task or deployment (alerts.md, "Events").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique; receivers dedupe on it.
    pub id: String,
    pub kind: AlertEvent,
    /// RFC 3339, UTC.
    pub at: String,
    pub workflow_id: i64,
    pub workflow: String,
    /// The definition version whose `notify` rules apply: the task's.
    pub workflow_version: i32,
    pub task_id: Option<i64>,
    pub deployment_id: Option<i64>,
    pub environment: Option<String>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub commit: Option<String>,
    /// The commit message, when the push carried one.
    pub message: Option<String>,
    pub summary: String,
    pub error: Option<String>,
    /// `rolled_back`: why the rollback ran (`deploy_failed`,
    /// `health_check_failed`, `manual`).
    pub reason: Option<String>,
    /// `rolled_back`: `succeeded` or `failed`.
    pub outcome: Option<String>,
    /// A success after a failure of the same workflow and branch (or
    /// environment): always sent to those who subscribe to it.
    pub recovery: bool,
}

impl Event {
    /// Repeats are counted per event type, workflow, branch and environment.
    pub fn throttle_key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.kind,
            self.workflow_id,
            self.branch.as_deref().or(self.tag.as_deref()).unwrap_or(""),
            self.environment.as_deref().unwrap_or("")
        )
    }

    /// Whether this event goes out even when one like it went out within the
    /// throttle window: rollbacks, deploy timeouts and recoveries.
    pub fn bypasses_throttle(&self) -> bool {
        match self.kind {
            AlertEvent::RolledBack | AlertEvent::DeployTimeout => true,
            AlertEvent::TaskSucceeded | AlertEvent::DeploySucceeded => self.recovery,
            _ => false,
        }
    }

    /// The short commit, 12 hex digits as in image tags.
    pub fn commit_short(&self) -> Option<&str> {
        self.commit.as_deref().map(|c| c.get(..12).unwrap_or(c))
    }

    /// The first line of the commit message.
    pub fn title(&self) -> Option<&str> {
        self.message
            .as_deref()
            .and_then(|m| m.lines().next())
            .filter(|l| !l.trim().is_empty())
    }
}

/// Whether an event is held back because one like it was sent
/// `since_last_sent` ago, within `window`; `bypass` is
/// [`Event::bypasses_throttle`].
pub fn throttled(bypass: bool, since_last_sent: Option<Duration>, window: Duration) -> bool {
    !bypass && since_last_sent.is_some_and(|since| since < window)
}

/// How long to wait after `failed_attempts` failed attempts (at least one)
/// before the next: `base`, doubling each time, at most an hour. The
/// schedule is a function of the attempt count because the count is what
/// the database keeps between attempts.
pub fn retry_delay(failed_attempts: u32, base: Duration) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(20);
    base.saturating_mul(1 << doublings).min(MAX_RETRY_DELAY)
}

/// The kinds of channel (alerts.md, "Channels").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelKind {
    Slack,
    Email,
    DingTalk,
    Webhook,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 4] = [
        ChannelKind::Slack,
        ChannelKind::Email,
        ChannelKind::DingTalk,
        ChannelKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Email => "email",
            ChannelKind::DingTalk => "dingtalk",
            ChannelKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<ChannelKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a channel is configured: a rule of the workflow's `notify` list by
/// position, or the server default (`SLIPWAY_DEFAULT_NOTIFY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleRef {
    Workflow(usize),
    Default,
}

impl RuleRef {
    /// As stored: the position, or -1 for the server default.
    pub fn index(self) -> i32 {
        match self {
            RuleRef::Workflow(i) => i32::try_from(i).unwrap_or(i32::MAX),
            RuleRef::Default => -1,
        }
    }

    pub fn from_index(index: i32) -> Option<RuleRef> {
        match index {
            -1 => Some(RuleRef::Default),
            i => usize::try_from(i).ok().map(RuleRef::Workflow),
        }
    }
}

/// One channel of a rule, as written (placeholders not yet resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel<'a> {
    Slack(&'a SlackChannel),
    Email(&'a EmailChannel),
    DingTalk(&'a DingTalkChannel),
    Webhook(&'a WebhookChannel),
}

impl Channel<'_> {
    pub fn kind(&self) -> ChannelKind {
        match self {
            Channel::Slack(_) => ChannelKind::Slack,
            Channel::Email(_) => ChannelKind::Email,
            Channel::DingTalk(_) => ChannelKind::DingTalk,
            Channel::Webhook(_) => ChannelKind::Webhook,
        }
    }

    /// Every value written for it, where `${{ secrets.NAME }}` may stand.
    pub fn values(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        match self {
            Channel::Slack(s) => out.extend(
                [&s.webhook_url, &s.token, &s.channel]
                    .into_iter()
                    .filter_map(|v| v.as_deref()),
            ),
            Channel::Email(e) => out.extend(e.to.iter().map(String::as_str)),
            Channel::DingTalk(d) => {
                out.push(&d.webhook_url);
                out.extend(d.secret.as_deref());
            }
            Channel::Webhook(w) => {
                out.push(&w.url);
                out.extend(w.secret.as_deref());
            }
        }
        out
    }

    /// Where it sends, for people to read, without any secret: addresses
    /// and Slack channels as written, URLs only by scheme and host, and
    /// placeholders as written.
    pub fn target(&self) -> String {
        match self {
            Channel::Slack(s) => match (&s.webhook_url, &s.channel) {
                (Some(url), _) => format!("incoming webhook {}", url_origin(url)),
                (None, Some(channel)) => format!("chat.postMessage {channel}"),
                (None, None) => "slack".to_owned(),
            },
            Channel::Email(e) => e.to.join(", "),
            Channel::DingTalk(d) => format!("robot {}", url_origin(&d.webhook_url)),
            Channel::Webhook(w) => format!("POST {}", url_origin(&w.url)),
        }
    }
}

/// `scheme://host[:port]` of a URL (no user, path or query, which may carry
/// tokens); a value made of a placeholder is shown as written.
pub fn url_origin(url: &str) -> String {
    if url.trim_start().starts_with("${{") {
        return url.trim().to_owned();
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(url)".to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.contains("${{") {
        return format!("{scheme}://(secret)");
    }
    format!("{scheme}://{host}")
}

/// The channel of `kind` in a rule, if it has one.
pub fn channel(rule: &NotifyRule, kind: ChannelKind) -> Option<Channel<'_>> {
    match kind {
        ChannelKind::Slack => rule.slack.as_ref().map(Channel::Slack),
        ChannelKind::Email => rule.email.as_ref().map(Channel::Email),
        ChannelKind::DingTalk => rule.dingtalk.as_ref().map(Channel::DingTalk),
        ChannelKind::Webhook => rule.webhook.as_ref().map(Channel::Webhook),
    }
}

/// Every channel of a rule, in a fixed order.
pub fn channels(rule: &NotifyRule) -> impl Iterator<Item = Channel<'_>> {
    ChannelKind::ALL
        .into_iter()
        .filter_map(move |k| channel(rule, k))
}

/// The channels an event of `kind` goes to: every channel of every rule of
/// the workflow that lists it; with no rules at all, the server default's.
/// A channel configured alike in two rules is sent to once.
pub fn route<'a>(
    kind: AlertEvent,
    rules: &'a [NotifyRule],
    default: Option<&'a NotifyRule>,
) -> Vec<(RuleRef, Channel<'a>)> {
    let candidates: Vec<(RuleRef, &NotifyRule)> = if rules.is_empty() {
        default.map(|d| (RuleRef::Default, d)).into_iter().collect()
    } else {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| (RuleRef::Workflow(i), r))
            .collect()
    };
    let mut out: Vec<(RuleRef, Channel<'a>)> = Vec::new();
    for (at, rule) in candidates {
        if !rule.on.contains(&kind) {
            continue;
        }
        for c in channels(rule) {
            if !out.iter().any(|(_, seen)| *seen == c) {
                out.push((at, c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: AlertEvent) -> Event {
        Event {
            id: "e1".into(),
            kind,
            at: "2026-12-01T00:00:00Z".into(),
            workflow_id: 3,
            workflow: "hello".into(),
            workflow_version: 1,
            task_id: Some(17),
            deployment_id: None,
            environment: None,
            branch: Some("main".into()),
            tag: None,
            commit: Some("4f1c2a9b3d5e6f708192a3b4c5d6e7f8091a2b3c".into()),
            message: Some("fix health\n\nlonger text".into()),
            summary: "s".into(),
            error: None,
            reason: None,
            outcome: None,
            recovery: false,
        }
    }

    fn rule(on: &[AlertEvent], slack: Option<&str>, webhook: Option<&str>) -> NotifyRule {
        NotifyRule {
            on: on.to_vec(),
            slack: slack.map(|u| SlackChannel {
                webhook_url: Some(u.into()),
                token: None,
                channel: None,
            }),
            email: None,
            dingtalk: None,
            webhook: webhook.map(|u| WebhookChannel {
                url: u.into(),
                secret: None,
            }),
        }
    }

    #[test]
    fn throttling_table() {
        let window = Duration::from_secs(300);
        let recent = Some(Duration::from_secs(10));
        let old = Some(Duration::from_secs(301));
        let mut recovered = event(AlertEvent::TaskSucceeded);
        recovered.recovery = true;
        let cases = [
            (event(AlertEvent::BuildFailed), None, false),
            (event(AlertEvent::BuildFailed), recent, true),
            (event(AlertEvent::BuildFailed), old, false),
            (event(AlertEvent::RolledBack), recent, false),
            (event(AlertEvent::DeployTimeout), recent, false),
            (event(AlertEvent::TaskSucceeded), recent, true),
            (recovered, recent, false),
        ];
        for (e, since, want) in cases {
            let got = throttled(e.bypasses_throttle(), since, window);
            assert_eq!(got, want, "{:?} {since:?}", e.kind);
        }
        assert!(!throttled(false, recent, Duration::ZERO));
    }

    #[test]
    fn throttle_key_names_type_workflow_branch_environment() {
        let mut e = event(AlertEvent::DeployFailed);
        e.environment = Some("prod".into());
        assert_eq!(e.throttle_key(), "deploy_failed|3|main|prod");
        assert_eq!(
            event(AlertEvent::BuildFailed).commit_short(),
            Some("4f1c2a9b3d5e")
        );
        assert_eq!(event(AlertEvent::BuildFailed).title(), Some("fix health"));
    }

    #[test]
    fn retry_delays_double_and_stop_at_an_hour() {
        let base = Duration::from_secs(30);
        let got: Vec<u64> = (1..=6).map(|n| retry_delay(n, base).as_secs()).collect();
        assert_eq!(got, [30, 60, 120, 240, 480, 960]);
        // Five attempts span at least ten minutes with the default base.
        assert!(got[..4].iter().sum::<u64>() + got[4] >= 600);
        assert_eq!(retry_delay(40, base), MAX_RETRY_DELAY);
    }

    #[test]
    fn routing_follows_rules_then_default() {
        let rules = vec![
            rule(&[AlertEvent::BuildFailed], Some("https://a/1"), None),
            rule(
                &[AlertEvent::BuildFailed, AlertEvent::DeploySucceeded],
                Some("https://a/1"),
                Some("https://b/2"),
            ),
        ];
        let default = rule(&DEFAULT_EVENTS, None, Some("https://d/9"));
        let got: Vec<(RuleRef, ChannelKind)> =
            route(AlertEvent::BuildFailed, &rules, Some(&default))
                .into_iter()
                .map(|(r, c)| (r, c.kind()))
                .collect();
        // The same Slack hook in two rules is sent to once.
        assert_eq!(
            got,
            [
                (RuleRef::Workflow(0), ChannelKind::Slack),
                (RuleRef::Workflow(1), ChannelKind::Webhook)
            ]
        );
        assert!(route(AlertEvent::TaskStarted, &rules, Some(&default)).is_empty());
        let fallback = route(AlertEvent::RolledBack, &[], Some(&default));
        assert_eq!(fallback.len(), 1);
        assert_eq!(fallback[0].0, RuleRef::Default);
        assert!(route(AlertEvent::TaskStarted, &[], Some(&default)).is_empty());
        assert!(route(AlertEvent::BuildFailed, &[], None).is_empty());
    }

    #[test]
    fn targets_hide_secrets() {
        assert_eq!(
            url_origin("https://hooks.slack.com/services/T0/B0/XXXX"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            url_origin("http://u:pw@127.0.0.1:81/x?t=1"),
            "http://127.0.0.1:81"
        );
        assert_eq!(url_origin("${{ secrets.HOOK }}"), "${{ secrets.HOOK }}");
        assert_eq!(url_origin("nonsense"), "(url)");
        for i in [0, 5, -1] {
            assert_eq!(RuleRef::from_index(i).map(RuleRef::index), Some(i));
        }
        assert_eq!(RuleRef::from_index(-2), None);
    }
}

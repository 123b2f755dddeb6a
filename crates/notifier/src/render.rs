//! What a message says: the same facts (what happened, to which workflow,
//! branch, commit and environment, the error, a link to the dashboard) as
//! plain text, HTML for mail clients, Slack mrkdwn, DingTalk markdown, and
//! the JSON body of a webhook. Text from events (branch names, commit
//! messages, errors) is escaped for each format and otherwise passed through
//! as it is, in any script.

use domain::alert::Event;
use domain::workflow::AlertEvent;
use serde::Serialize;

/// Longest error text put in a message; logs hold the rest.
const MAX_ERROR_CHARS: usize = 1500;

/// The rendered parts of one message.
#[derive(Debug, Clone)]
pub struct Message {
    /// One line: what happened, to what.
    pub headline: String,
    /// The text part of an e-mail, and Slack's text for notifications.
    pub plain: String,
    /// The HTML part of an e-mail, for mail clients that show it.
    pub html: String,
    /// Slack's mrkdwn, for both webhooks and `chat.postMessage`.
    pub slack: String,
    /// DingTalk's markdown.
    pub markdown: String,
    /// The event's page on the dashboard.
    pub url: String,
}

/// The event's page: its task, else its workflow.
pub fn link(public_url: &str, event: &Event) -> String {
    let base = public_url.trim_end_matches('/');
    match event.task_id {
        Some(id) => format!("{base}/tasks/{id}"),
        None => format!("{base}/workflows/{}", event.workflow_id),
    }
}

fn title(event: &Event) -> &'static str {
    match event.kind {
        AlertEvent::TaskCreated => "Task queued",
        AlertEvent::TaskStarted => "Task started",
        AlertEvent::BuildFailed => "Build failed",
        AlertEvent::TaskSucceeded if event.recovery => "Task succeeded again",
        AlertEvent::TaskSucceeded => "Task succeeded",
        AlertEvent::TaskCancelled => "Task cancelled",
        AlertEvent::DeployStarted => "Deploy started",
        AlertEvent::DeploySucceeded if event.recovery => "Deployed, healthy again",
        AlertEvent::DeploySucceeded => "Deployed",
        AlertEvent::DeployFailed => "Deploy failed",
        AlertEvent::HealthCheckFailed => "Health check failed",
        AlertEvent::RolledBack if event.outcome.as_deref() == Some("failed") => "Rollback failed",
        AlertEvent::RolledBack => "Rolled back",
        AlertEvent::DeployTimeout => "Deploy timed out: needs a person",
        AlertEvent::AwaitingApproval => "Waiting for approval",
        AlertEvent::TaskStuck => "Task stuck in pending",
        AlertEvent::RunnerLost => "Runner lost",
        AlertEvent::WebhookDelayed => "Webhook delayed",
        AlertEvent::HealthDown => "Down: not answering its health check",
        AlertEvent::HealthRecovered => "Up again",
    }
}

fn icon(event: &Event) -> &'static str {
    match event.kind {
        AlertEvent::BuildFailed
        | AlertEvent::DeployFailed
        | AlertEvent::HealthCheckFailed
        | AlertEvent::HealthDown => "❌",
        AlertEvent::TaskSucceeded | AlertEvent::DeploySucceeded | AlertEvent::HealthRecovered => {
            "✅"
        }
        AlertEvent::RolledBack if event.outcome.as_deref() == Some("failed") => "🚨",
        AlertEvent::RolledBack => "↩️",
        AlertEvent::DeployTimeout
        | AlertEvent::TaskStuck
        | AlertEvent::RunnerLost
        | AlertEvent::WebhookDelayed => "⚠️",
        AlertEvent::TaskStarted | AlertEvent::DeployStarted => "▶️",
        AlertEvent::TaskCreated => "🕓",
        AlertEvent::TaskCancelled => "⏹️",
        AlertEvent::AwaitingApproval => "✋",
    }
}

/// The facts of an event as label and value, in order.
fn facts(event: &Event) -> Vec<(&'static str, String)> {
    let mut out = vec![("Workflow", event.workflow.clone())];
    if let Some(b) = &event.branch {
        out.push(("Branch", b.clone()));
    } else if let Some(t) = &event.tag {
        out.push(("Tag", t.clone()));
    }
    if let Some(c) = event.commit_short() {
        let commit = match event.title() {
            Some(t) => format!("{c} {t}"),
            None => c.to_owned(),
        };
        out.push(("Commit", commit));
    }
    if let Some(e) = &event.environment {
        out.push(("Environment", e.clone()));
    }
    if let Some(id) = event.task_id {
        out.push(("Task", format!("#{id}")));
    }
    if let Some(id) = event.deployment_id {
        out.push(("Deployment", format!("#{id}")));
    }
    if let Some(r) = &event.reason {
        out.push(("Reason", r.clone()));
    }
    out
}

fn error_text(event: &Event) -> Option<String> {
    let e = event.error.as_deref()?.trim();
    if e.is_empty() {
        return None;
    }
    let mut s: String = e.chars().take(MAX_ERROR_CHARS).collect();
    if e.chars().count() > MAX_ERROR_CHARS {
        s.push('…');
    }
    Some(s)
}

/// Renders `event` in every format; `test` titles it a test message.
pub fn render(event: &Event, public_url: &str, test: bool) -> Message {
    let url = link(public_url, event);
    let (title, icon) = if test {
        ("Test message", "🔔")
    } else {
        (title(event), icon(event))
    };
    let headline = format!("{icon} {title}: {}", event.workflow);
    let facts = facts(event);
    let error = error_text(event);

    let mut plain = format!("{headline}\n{}\n\n", event.summary);
    for (label, value) in &facts {
        plain.push_str(&format!("{label}: {value}\n"));
    }
    if let Some(e) = &error {
        plain.push_str(&format!("\nError:\n{e}\n"));
    }
    plain.push_str(&format!("\n{url}\n"));

    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\">\
         <h2>{}</h2><p>{}</p><table>",
        escape_html(&headline),
        escape_html(&event.summary)
    );
    for (label, value) in &facts {
        html.push_str(&format!(
            "<tr><th align=\"left\">{label}</th><td>{}</td></tr>",
            escape_html(value)
        ));
    }
    html.push_str("</table>");
    if let Some(e) = &error {
        html.push_str(&format!(
            "<p><b>Error</b></p><pre style=\"white-space:pre-wrap\">{}</pre>",
            escape_html(e)
        ));
    }
    html.push_str(&format!(
        "<p><a href=\"{}\">Open in Slipway</a></p></body></html>",
        escape_html(&url)
    ));

    let mut slack = format!(
        "{icon} *{title}*: *{}*\n{}\n",
        escape_slack(&event.workflow),
        escape_slack(&event.summary)
    );
    let line: Vec<String> = facts
        .iter()
        .skip(1)
        .map(|(label, value)| format!("*{label}:* `{}`", escape_slack(value).replace('`', "'")))
        .collect();
    if !line.is_empty() {
        slack.push_str(&line.join("  "));
        slack.push('\n');
    }
    if let Some(e) = &error {
        slack.push_str(&format!(
            "```{}```\n",
            escape_slack(e).replace("```", "'''")
        ));
    }
    slack.push_str(&format!("<{}|Open in Slipway>", escape_slack(&url)));

    let mut markdown = format!(
        "### {icon} {title}: {}\n\n{}\n\n",
        escape_markdown(&event.workflow),
        escape_markdown(&event.summary)
    );
    for (label, value) in facts.iter().skip(1) {
        markdown.push_str(&format!("- **{label}:** {}\n", escape_markdown(value)));
    }
    if let Some(e) = &error {
        markdown.push_str(&format!(
            "\n> {}\n",
            escape_markdown(e).replace('\n', "\n> ")
        ));
    }
    markdown.push_str(&format!("\n[Open in Slipway]({url})\n"));

    Message {
        headline,
        plain,
        html,
        slack,
        markdown,
        url,
    }
}

/// The body of a webhook delivery: the event as alerts.md lists it.
#[derive(Debug, Serialize)]
pub struct EventJson<'a> {
    /// The event's id: receivers dedupe on it, as a delivery may come twice.
    pub id: &'a str,
    /// What happened (`build_failed`, ...): what receivers branch on.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// When it happened, RFC 3339 UTC.
    pub at: &'a str,
    /// The workflow's name, for people reading the payload.
    pub workflow: &'a str,
    /// The workflow's id, for calls back to the API.
    pub workflow_id: i64,
    /// The task it is about, if any, for calls back to the API.
    pub task_id: Option<i64>,
    /// The branch built, when it was a branch.
    pub branch: Option<&'a str>,
    /// The tag built, when it was a tag.
    pub tag: Option<&'a str>,
    /// The full commit SHA.
    pub commit: Option<&'a str>,
    /// The environment of a deploy event.
    pub environment: Option<&'a str>,
    /// The deployment of a deploy event, for calls back to the API.
    pub deployment_id: Option<i64>,
    /// The event in a line, ready to show.
    pub summary: &'a str,
    /// Why it failed, in full, when it failed.
    pub error: Option<&'a str>,
    /// `rolled_back`: why the rollback ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// `rolled_back`: whether the rollback itself succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'a str>,
    /// A success after a failure: sent despite the throttle.
    pub recovery: bool,
    /// The event's page on the dashboard.
    pub url: &'a str,
    /// Set when the message is a test of the channel, not an event.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

pub fn event_json<'a>(event: &'a Event, url: &'a str, test: bool) -> EventJson<'a> {
    EventJson {
        id: &event.id,
        kind: event.kind.as_str(),
        at: &event.at,
        workflow: &event.workflow,
        workflow_id: event.workflow_id,
        task_id: event.task_id,
        branch: event.branch.as_deref(),
        tag: event.tag.as_deref(),
        commit: event.commit.as_deref(),
        environment: event.environment.as_deref(),
        deployment_id: event.deployment_id,
        summary: &event.summary,
        error: event.error.as_deref(),
        reason: event.reason.as_deref(),
        outcome: event.outcome.as_deref(),
        recovery: event.recovery,
        url,
        test,
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Slack's mrkdwn treats only these three as control characters.
fn escape_slack(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Markdown characters that would change how DingTalk shows a value.
fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '*' | '_' | '[' | ']' | '`' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            id: "e1".into(),
            kind: AlertEvent::BuildFailed,
            at: "2026-12-01T00:00:00.000Z".into(),
            workflow_id: 3,
            workflow: "hello-go".into(),
            workflow_version: 1,
            task_id: Some(17),
            deployment_id: None,
            environment: None,
            branch: Some("功能/登录".into()),
            tag: None,
            commit: Some("4f1c2a9b3d5e6f708192a3b4c5d6e7f8091a2b3c".into()),
            message: Some("修复 <health> & 登录\n\ndetails".into()),
            summary: "task 17: step test failed".into(),
            error: Some("step test exited with status 1".into()),
            reason: None,
            outcome: None,
            recovery: false,
        }
    }

    #[test]
    fn every_format_names_what_where_and_links() {
        let m = render(&event(), "http://ci.example/", false);
        assert_eq!(m.url, "http://ci.example/tasks/17");
        assert_eq!(m.headline, "❌ Build failed: hello-go");
        for text in [&m.plain, &m.html, &m.slack, &m.markdown] {
            assert!(text.contains("功能/登录"), "{text}");
            assert!(text.contains("4f1c2a9b3d5e"), "{text}");
            assert!(text.contains("step test exited with status 1"), "{text}");
            assert!(text.contains("http://ci.example/tasks/17"), "{text}");
        }
        assert!(m.plain.contains("修复 <health> & 登录"));
        assert!(m.html.contains("修复 &lt;health&gt; &amp; 登录"));
        assert!(m.slack.contains("修复 &lt;health&gt; &amp; 登录"));
        assert!(
            m.slack
                .ends_with("<http://ci.example/tasks/17|Open in Slipway>")
        );
        assert!(
            !m.plain.contains("details"),
            "only the first line of the message"
        );
    }

    #[test]
    fn titles_follow_outcomes() {
        let mut e = event();
        e.kind = AlertEvent::RolledBack;
        e.outcome = Some("failed".into());
        assert!(
            render(&e, "http://x", false)
                .headline
                .contains("Rollback failed")
        );
        e.kind = AlertEvent::TaskSucceeded;
        e.recovery = true;
        e.task_id = None;
        let m = render(&e, "http://x", false);
        assert!(m.headline.contains("succeeded again"));
        assert_eq!(m.url, "http://x/workflows/3");
    }

    #[test]
    fn webhook_json_has_the_alerts_md_fields() {
        let e = event();
        let json = serde_json::to_value(event_json(&e, "http://x/tasks/17", false)).expect("json");
        for key in [
            "id",
            "type",
            "at",
            "workflow",
            "task_id",
            "branch",
            "commit",
            "environment",
            "deployment_id",
            "summary",
            "error",
            "url",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        assert_eq!(json["type"], "build_failed");
        assert_eq!(json["branch"], "功能/登录");
        assert!(json.get("test").is_none());
    }
}

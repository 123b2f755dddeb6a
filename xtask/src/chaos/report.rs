//! What a chaos run came to: the figures it prints, and the requirements
//! whose failure fails the command.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::Size;
use crate::bench::pushes::{Answer, NoAnswer, Sent};

/// A task of the chaos workflow, as `GET /api/tasks` lists it.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: u64,
    pub commit: String,
    pub status: String,
    pub error: Option<String>,
}

/// An alert as `GET /api/alerts` lists it.
#[derive(Clone, Debug)]
pub struct Alert {
    pub event_id: String,
    /// The event's type.
    pub kind: String,
    pub task_id: u64,
    /// `throttled` (never sent), `pending`, `delivered` or `failed`.
    pub status: String,
}

/// Everything a run observed.
pub struct Outcome {
    pub size: Size,
    /// The commit of each push, by its index.
    pub shas: Vec<String>,
    pub sent: Vec<Sent>,
    /// When the gateway accepted no connections: from its kill to its
    /// port answering again, since the first push.
    pub gateway_down: Vec<(Duration, Duration)>,
    /// What was killed or started when, since the first push.
    pub kills: Vec<(Duration, String)>,
    pub tasks: Vec<Task>,
    /// From the last push's answer to the drain; `None` when the deadline
    /// came first.
    pub drained_after: Option<Duration>,
    pub alerts: Vec<Alert>,
    /// Each request the alert webhook received: its `X-Slipway-Event-Id`
    /// and body.
    pub receipts: Vec<(String, Value)>,
    /// How many times the supervisor started each service again.
    pub restarts: Vec<(String, u32)>,
}

/// How one push's failure counts.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Refusal {
    /// A non-2xx status.
    Status(u16),
    /// No answer, while the gateway was down.
    GatewayDown(NoAnswer),
    /// No answer, the gateway up.
    Other(NoAnswer),
}

impl Outcome {
    fn during_gateway_down(&self, s: &Sent) -> bool {
        self.gateway_down
            .iter()
            .any(|(from, to)| s.sent <= *to && s.done >= *from)
    }

    fn refusal(&self, s: &Sent) -> Option<Refusal> {
        match &s.answer {
            Answer::Status {
                code: 200..=299, ..
            } => None,
            Answer::Status { code, .. } => Some(Refusal::Status(*code)),
            Answer::None { kind, .. } if self.during_gateway_down(s) => {
                Some(Refusal::GatewayDown(*kind))
            }
            Answer::None { kind, .. } => Some(Refusal::Other(*kind)),
        }
    }

    fn refusals(&self) -> BTreeMap<Refusal, usize> {
        let mut by = BTreeMap::new();
        for s in &self.sent {
            if let Some(r) = self.refusal(s) {
                *by.entry(r).or_default() += 1;
            }
        }
        by
    }

    fn tasks_per_commit(&self) -> HashMap<&str, Vec<&Task>> {
        let mut per: HashMap<&str, Vec<&Task>> = HashMap::new();
        for t in &self.tasks {
            per.entry(t.commit.as_str()).or_default().push(t);
        }
        per
    }

    /// Pushes answered 2xx whose commit has no task, and those with more
    /// than one: `(index, tasks)`.
    fn accepted_without_one_task(&self) -> Vec<(usize, usize)> {
        let per = self.tasks_per_commit();
        self.sent
            .iter()
            .filter(|s| s.accepted())
            .filter_map(|s| {
                let n = self
                    .shas
                    .get(s.index)
                    .and_then(|sha| per.get(sha.as_str()))
                    .map_or(0, Vec::len);
                (n != 1).then_some((s.index, n))
            })
            .collect()
    }

    /// Tasks beyond the first of each commit.
    fn duplicates(&self) -> usize {
        self.tasks_per_commit()
            .values()
            .map(|ts| ts.len().saturating_sub(1))
            .sum()
    }

    /// How many receipts each event id had.
    fn receipts_by_event(&self) -> BTreeMap<&str, usize> {
        let mut by = BTreeMap::new();
        for (id, _) in &self.receipts {
            *by.entry(id.as_str()).or_default() += 1;
        }
        by
    }

    fn sent_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(|a| a.status != "throttled")
    }

    /// The printed report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            let _ = writeln!(out, "  {label:<52} {value}");
        };
        let accepted: Vec<&Sent> = self.sent.iter().filter(|s| s.accepted()).collect();
        let queued = accepted
            .iter()
            .filter(|s| matches!(s.answer, Answer::Status { queued: true, .. }))
            .count();
        line(
            "pushes sent",
            format!("{} over {}s", self.sent.len(), self.size.over.as_secs()),
        );
        line("answered 2xx", accepted.len().to_string());
        line("  of them spooled (\"queued\": true)", queued.to_string());
        let refusals = self.refusals();
        line("refused", refusals.values().sum::<usize>().to_string());
        for (r, n) in &refusals {
            let what = match r {
                Refusal::Status(code) => format!("  status {code}"),
                Refusal::GatewayDown(kind) => {
                    format!("  no answer while the gateway was down ({kind:?})")
                }
                Refusal::Other(kind) => format!("  no answer, the gateway up ({kind:?})"),
            };
            line(&what, n.to_string());
        }
        let per = self.tasks_per_commit();
        let refused_with_task = self
            .sent
            .iter()
            .filter(|s| !s.accepted())
            .filter(|s| {
                self.shas
                    .get(s.index)
                    .is_some_and(|sha| per.contains_key(sha.as_str()))
            })
            .count();
        line("tasks created", self.tasks.len().to_string());
        line(
            "  duplicates (more than one task for a commit)",
            self.duplicates().to_string(),
        );
        line(
            "  of pushes not answered 2xx",
            refused_with_task.to_string(),
        );
        let count = |status: &str| self.tasks.iter().filter(|t| t.status == status).count();
        line("tasks succeeded", count("success").to_string());
        line(
            "tasks failed or cancelled",
            (count("failed") + count("cancelled")).to_string(),
        );
        line(
            "tasks pending or running at the end",
            (count("pending") + count("running")).to_string(),
        );
        line(
            "time to drain (after the last push's answer)",
            self.drained_after.map_or_else(
                || "not drained".to_owned(),
                |d| format!("{:.1}s", d.as_secs_f64()),
            ),
        );
        let fired = self.sent_alerts().count();
        let throttled = self.alerts.len() - fired;
        let receipts = self.receipts_by_event();
        line(
            "alerts fired (GET /api/alerts, not throttled)",
            fired.to_string(),
        );
        line("  throttled (not sent, by design)", throttled.to_string());
        line("distinct event ids received", receipts.len().to_string());
        let dupes: Vec<(&str, usize)> = receipts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| (*id, *n))
            .collect();
        line(
            "duplicate receipts (same X-Slipway-Event-Id)",
            dupes.iter().map(|(_, n)| n - 1).sum::<usize>().to_string(),
        );
        for (id, n) in &dupes {
            let kind = self
                .alerts
                .iter()
                .find(|a| a.event_id == *id)
                .map_or("?", |a| a.kind.as_str());
            line(&format!("  {id}"), format!("{kind}, received {n} times"));
        }
        let restarts: Vec<String> = self
            .restarts
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        line("restarts by the supervisor", restarts.join(", "));
        let mut text = String::from("\nchaos\n");
        for (at, what) in &self.kills {
            let _ = writeln!(text, "  {:6.2}s  {what}", at.as_secs_f64());
        }
        for (from, to) in &self.gateway_down {
            let _ = writeln!(
                text,
                "  gateway refused connections from {:.2}s to {:.2}s",
                from.as_secs_f64(),
                to.as_secs_f64()
            );
        }
        text.push('\n');
        text.push_str(&out);
        text
    }

    /// The requirements that failed, one line each (none: the run passed).
    pub fn failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        let wrong = self.accepted_without_one_task();
        if !wrong.is_empty() {
            let shown: Vec<String> = wrong
                .iter()
                .take(10)
                .map(|(i, n)| format!("push {i}: {n} tasks"))
                .collect();
            failed.push(format!(
                "{} pushes answered 2xx have not exactly one task ({})",
                wrong.len(),
                shown.join(", ")
            ));
        }
        let not_ok: Vec<String> = self
            .tasks
            .iter()
            .filter(|t| t.status != "success")
            .map(|t| {
                format!(
                    "task {} {}{}",
                    t.id,
                    t.status,
                    t.error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        if !not_ok.is_empty() {
            let shown: Vec<&str> = not_ok.iter().take(10).map(String::as_str).collect();
            failed.push(format!(
                "{} tasks did not succeed: {}",
                not_ok.len(),
                shown.join("; ")
            ));
        }
        let refused: BTreeMap<Refusal, usize> = self
            .refusals()
            .into_iter()
            .filter(|(r, _)| !matches!(r, Refusal::GatewayDown(_)))
            .collect();
        if !refused.is_empty() {
            let by: Vec<String> = refused
                .iter()
                .map(|(r, n)| match r {
                    Refusal::Status(code) => format!("{n} with status {code}"),
                    Refusal::Other(kind) | Refusal::GatewayDown(kind) => {
                        format!("{n} without an answer ({kind:?})")
                    }
                })
                .collect();
            failed.push(format!(
                "pushes refused while the gateway was up: {}",
                by.join(", ")
            ));
        }
        let received: HashSet<&str> = self.receipts.iter().map(|(id, _)| id.as_str()).collect();
        let lost: Vec<String> = self
            .sent_alerts()
            .filter(|a| !received.contains(a.event_id.as_str()))
            .map(|a| format!("{} of task {} ({})", a.kind, a.task_id, a.status))
            .collect();
        if !lost.is_empty() {
            let shown: Vec<&str> = lost.iter().take(10).map(String::as_str).collect();
            failed.push(format!(
                "{} alerts never reached the webhook: {}",
                lost.len(),
                shown.join("; ")
            ));
        }
        let fired: HashSet<&str> = self.sent_alerts().map(|a| a.event_id.as_str()).collect();
        let unknown: Vec<&str> = received
            .iter()
            .filter(|id| !fired.contains(**id))
            .copied()
            .collect();
        if !unknown.is_empty() {
            failed.push(format!(
                "{} event ids received that no sent alert has: {}",
                unknown.len(),
                unknown
                    .iter()
                    .take(10)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.drained_after.is_none() {
            failed.push(format!(
                "not drained: no progress for {}s (or past {} minutes)",
                super::STALL.as_secs(),
                super::DRAIN_LIMIT.as_secs() / 60
            ));
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use super::{Alert, Outcome, Task};
    use crate::bench::pushes::{Answer, NoAnswer, Sent};
    use crate::chaos::Size;

    fn sent(index: usize, at: u64, answer: Answer) -> Sent {
        Sent {
            index,
            sent: Duration::from_millis(at),
            done: Duration::from_millis(at + 5),
            answer,
        }
    }

    fn ok(queued: bool) -> Answer {
        Answer::Status {
            code: 202,
            task_ids: vec![],
            queued,
        }
    }

    fn no_answer(kind: NoAnswer) -> Answer {
        Answer::None {
            kind,
            why: "connect: refused".to_owned(),
        }
    }

    fn task(id: u64, commit: &str, status: &str) -> Task {
        Task {
            id,
            commit: commit.to_owned(),
            status: status.to_owned(),
            error: None,
        }
    }

    fn alert(event_id: &str, task_id: u64, status: &str) -> Alert {
        Alert {
            event_id: event_id.to_owned(),
            kind: "task_succeeded".to_owned(),
            task_id,
            status: status.to_owned(),
        }
    }

    fn outcome() -> Outcome {
        Outcome {
            size: Size::SHORT,
            shas: ["a", "b", "c", "d"].map(str::to_owned).to_vec(),
            sent: vec![
                sent(0, 0, ok(false)),
                sent(1, 100, ok(true)),
                sent(2, 1000, no_answer(NoAnswer::Refused)),
                sent(3, 3000, ok(false)),
            ],
            gateway_down: vec![(Duration::from_millis(900), Duration::from_millis(1500))],
            kills: vec![(Duration::from_millis(900), "kill -9 gateway".to_owned())],
            tasks: vec![
                task(1, "a", "success"),
                task(2, "b", "success"),
                task(3, "d", "success"),
            ],
            drained_after: Some(Duration::from_secs(4)),
            alerts: vec![
                alert("e1", 1, "delivered"),
                alert("e2", 2, "delivered"),
                alert("e3", 3, "throttled"),
            ],
            receipts: vec![
                ("e1".to_owned(), Value::Null),
                ("e2".to_owned(), Value::Null),
                ("e2".to_owned(), Value::Null),
            ],
            restarts: vec![("gateway".to_owned(), 1)],
        }
    }

    #[test]
    fn a_run_within_the_requirements_passes_and_counts_its_duplicates() {
        let o = outcome();
        assert_eq!(o.failures(), Vec::<String>::new());
        let text = o.render();
        assert!(text.contains("duplicate receipts"), "{text}");
        assert!(text.contains("e2"), "{text}");
        assert!(
            text.contains("while the gateway was down (Refused)"),
            "{text}"
        );
    }

    #[test]
    fn refusals_with_the_gateway_up_lost_alerts_and_missing_tasks_fail() {
        let mut o = outcome();
        o.sent[3] = sent(
            3,
            3000,
            Answer::Status {
                code: 503,
                task_ids: vec![],
                queued: false,
            },
        );
        o.sent[2] = sent(2, 2000, no_answer(NoAnswer::Reset));
        o.tasks.retain(|t| t.commit != "b");
        o.receipts.retain(|(id, _)| id != "e1");
        o.receipts.push(("zz".to_owned(), Value::Null));
        o.drained_after = None;
        let failed = o.failures();
        assert_eq!(failed.len(), 5, "{failed:#?}");
        assert!(failed[0].contains("push 1: 0 tasks"), "{failed:#?}");
        assert!(failed[1].contains("1 with status 503") && failed[1].contains("(Reset)"));
        assert!(failed[2].contains("alerts never reached"));
        assert!(failed[3].contains("zz"));
        assert!(failed[4].contains("not drained"));
    }
}

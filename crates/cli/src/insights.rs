//! `slipway overview` and `slipway stats`: what runs where, and how
//! delivery goes.

use proto::json::{self, percent, span as seconds};

use crate::output::{or_dash, short, table, time};

/// One row per environment of every workflow (a workflow without
/// environments gets one row), with its last task.
pub fn overview_table(workflows: &[json::WorkflowOverview]) -> String {
    let mut rows = Vec::new();
    for w in workflows {
        let last = w.last_task.as_ref().map_or_else(
            || "-".to_owned(),
            |t| format!("{} {} {}", t.id, t.status, time(t.created_at.as_ref())),
        );
        if w.environments.is_empty() {
            rows.push(vec![
                w.workflow.clone(),
                last.clone(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
            ]);
        }
        for e in &w.environments {
            let waiting = e.awaiting_approval.as_ref().map_or_else(
                || "-".to_owned(),
                |a| format!("deployment {}", a.deployment_id),
            );
            rows.push(vec![
                w.workflow.clone(),
                last.clone(),
                e.environment.clone(),
                short(e.commit.as_ref()),
                or_dash(e.status.as_ref()),
                e.health.clone(),
                time(e.deployed_at.as_ref()),
                waiting,
            ]);
        }
    }
    table(
        &[
            "WORKFLOW",
            "LAST TASK",
            "ENVIRONMENT",
            "COMMIT",
            "LATEST DEPLOY",
            "HEALTH",
            "DEPLOYED",
            "AWAITING APPROVAL",
        ],
        &rows,
    )
}

/// The figures as a few lines and a table per environment.
pub fn stats_text(s: &json::WorkflowStats) -> String {
    let t = &s.tasks;
    let mut out = format!(
        "last {} days: {} tasks, {} succeeded, {} failed, {} cancelled; success rate {}\n\
         duration p50 {}, p90 {}; queued p50 {}\n\n",
        s.days,
        t.total,
        t.succeeded,
        t.failed,
        t.cancelled,
        percent(t.success_rate),
        seconds(t.duration_p50_s),
        seconds(t.duration_p90_s),
        seconds(t.queued_p50_s),
    );
    let rows: Vec<Vec<String>> = s
        .environments
        .iter()
        .map(|e| {
            vec![
                e.environment.clone(),
                e.deploys.to_string(),
                format!("{:.2}", e.deploys_per_day),
                percent(e.change_failure_rate),
                seconds(e.lead_time_p50_s),
                seconds(e.mttr_s),
                e.rollbacks.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ENVIRONMENT",
            "DEPLOYS",
            "PER DAY",
            "CHANGE FAILURE",
            "LEAD TIME P50",
            "MTTR",
            "ROLLBACKS",
        ],
        &rows,
    ));
    out
}

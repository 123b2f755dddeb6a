//! `GET /api/overview` and `GET /api/workflows/{id}/stats` (api.md,
//! "Insights"). A figure with nothing to compute from is `null`.

use serde::Serialize;

use super::time;

/// Seconds as people read them: `42.0s`, `10.2 min`, `1.5 h`, `2.0 d`;
/// `n/a` for a figure with nothing to compute from.
pub fn span(seconds: Option<f64>) -> String {
    match seconds {
        None => "n/a".to_owned(),
        Some(s) if s < 60.0 => format!("{s:.1}s"),
        Some(s) if s < 3600.0 => format!("{:.1} min", s / 60.0),
        Some(s) if s < 86_400.0 => format!("{:.1} h", s / 3600.0),
        Some(s) => format!("{:.1} d", s / 86_400.0),
    }
}

/// A rate as a percentage with one decimal; `n/a` without one.
pub fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "n/a".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

#[derive(Debug, Serialize)]
pub struct WorkflowOverview {
    pub workflow: String,
    pub workflow_id: i64,
    pub last_task: Option<LastTask>,
    pub environments: Vec<EnvironmentOverview>,
}

#[derive(Debug, Serialize)]
pub struct LastTask {
    pub id: i64,
    pub status: String,
    pub trigger: String,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    pub created_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EnvironmentOverview {
    pub environment: String,
    pub deployment_id: Option<i64>,
    pub commit: Option<String>,
    pub image: Option<String>,
    pub deployed_at: Option<String>,
    /// The state of the environment's newest deployment.
    pub status: Option<String>,
    pub health: String,
    pub health_checked_at: Option<String>,
    pub url: Option<String>,
    /// The task that built what runs, its commit's message and author.
    pub task_id: Option<i64>,
    pub message: Option<String>,
    pub author: Option<String>,
    pub awaiting_approval: Option<PendingApproval>,
}

#[derive(Debug, Serialize)]
pub struct PendingApproval {
    pub deployment_id: i64,
    pub task_id: Option<i64>,
    pub commit: Option<String>,
}

impl From<crate::WorkflowOverview> for WorkflowOverview {
    fn from(w: crate::WorkflowOverview) -> Self {
        Self {
            workflow: w.workflow,
            workflow_id: w.workflow_id,
            last_task: w.last_task.map(|t| LastTask {
                id: t.id,
                status: t.status,
                trigger: t.trigger,
                branch: t.branch,
                commit: t.commit,
                message: t.message,
                author: t.author,
                created_at: time(t.created_at),
                finished_at: time(t.finished_at),
            }),
            environments: w
                .environments
                .into_iter()
                .map(|e| EnvironmentOverview {
                    environment: e.environment,
                    deployment_id: e.deployment_id,
                    commit: e.commit,
                    image: e.image,
                    deployed_at: time(e.deployed_at),
                    status: e.status,
                    health: e.health,
                    health_checked_at: time(e.health_checked_at),
                    url: e.url,
                    task_id: e.task_id,
                    message: e.message,
                    author: e.author,
                    awaiting_approval: e.awaiting_approval.map(|a| PendingApproval {
                        deployment_id: a.deployment_id,
                        task_id: a.task_id,
                        commit: a.commit,
                    }),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct WorkflowStats {
    pub workflow_id: i64,
    pub days: i32,
    pub tasks: TaskStats,
    pub environments: Vec<EnvironmentStats>,
    pub daily: Vec<DayStats>,
}

#[derive(Debug, Default, Serialize)]
pub struct TaskStats {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub success_rate: Option<f64>,
    pub duration_p50_s: Option<f64>,
    pub duration_p90_s: Option<f64>,
    pub queued_p50_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct EnvironmentStats {
    pub environment: String,
    pub deploys: i64,
    pub deploys_per_day: f64,
    pub change_failure_rate: Option<f64>,
    pub lead_time_p50_s: Option<f64>,
    pub mttr_s: Option<f64>,
    pub rollbacks: i64,
}

#[derive(Debug, Serialize)]
pub struct DayStats {
    pub date: String,
    pub tasks: i64,
    pub failed: i64,
    pub duration_p50_s: Option<f64>,
    pub deploys: i64,
    pub succeeded: i64,
    pub duration_p90_s: Option<f64>,
    /// The day's deploys by environment.
    pub environments: Vec<DayDeploys>,
}

#[derive(Debug, Serialize)]
pub struct DayDeploys {
    pub environment: String,
    pub deploys: i64,
    pub failed: i64,
}

impl From<crate::WorkflowStats> for WorkflowStats {
    fn from(s: crate::WorkflowStats) -> Self {
        let tasks = s.tasks.map_or_else(TaskStats::default, |t| TaskStats {
            total: t.total,
            succeeded: t.succeeded,
            failed: t.failed,
            cancelled: t.cancelled,
            success_rate: t.success_rate,
            duration_p50_s: t.duration_p50_s,
            duration_p90_s: t.duration_p90_s,
            queued_p50_s: t.queued_p50_s,
        });
        Self {
            workflow_id: s.workflow_id,
            days: s.days,
            tasks,
            environments: s
                .environments
                .into_iter()
                .map(|e| EnvironmentStats {
                    environment: e.environment,
                    deploys: e.deploys,
                    deploys_per_day: e.deploys_per_day,
                    change_failure_rate: e.change_failure_rate,
                    lead_time_p50_s: e.lead_time_p50_s,
                    mttr_s: e.mttr_s,
                    rollbacks: e.rollbacks,
                })
                .collect(),
            daily: s
                .daily
                .into_iter()
                .map(|d| DayStats {
                    date: d.date,
                    tasks: d.tasks,
                    failed: d.failed,
                    duration_p50_s: d.duration_p50_s,
                    deploys: d.deploys,
                    succeeded: d.succeeded,
                    duration_p90_s: d.duration_p90_s,
                    environments: d
                        .environments
                        .into_iter()
                        .map(|e| DayDeploys {
                            environment: e.environment,
                            deploys: e.deploys,
                            failed: e.failed,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{percent, span};

    #[test]
    fn figures_read_in_units_that_fit() {
        assert_eq!(span(None), "n/a");
        assert_eq!(span(Some(42.0)), "42.0s");
        assert_eq!(span(Some(610.0)), "10.2 min");
        assert_eq!(span(Some(5400.0)), "1.5 h");
        assert_eq!(span(Some(172_800.0)), "2.0 d");
        assert_eq!(percent(Some(0.0833)), "8.3%");
        assert_eq!(percent(None), "n/a");
    }
}

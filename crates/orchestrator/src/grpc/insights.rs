//! The overview and a workflow's figures as proto messages.

use crate::app::{EnvironmentView, Stats, WorkflowNow};

pub fn overview(workflows: Vec<WorkflowNow>) -> proto::Overview {
    proto::Overview {
        workflows: workflows.into_iter().map(workflow).collect(),
    }
}

fn workflow(w: WorkflowNow) -> proto::WorkflowOverview {
    proto::WorkflowOverview {
        workflow: w.workflow.name,
        workflow_id: w.workflow.id,
        last_task: w.last_task.map(|t| proto::LastTask {
            id: t.id,
            status: t.status,
            trigger: t.trigger,
            branch: t.branch,
            commit: t.commit,
            message: t.message,
            created_at: Some(proto::timestamp(t.created_at)),
            finished_at: t.finished_at.map(proto::timestamp),
            author: t.author,
        }),
        environments: w.environments.into_iter().map(environment).collect(),
    }
}

fn environment(e: EnvironmentView) -> proto::EnvironmentOverview {
    let Some(now) = e.now else {
        return proto::EnvironmentOverview {
            environment: e.name,
            health: "unknown".to_owned(),
            url: e.url,
            ..proto::EnvironmentOverview::default()
        };
    };
    proto::EnvironmentOverview {
        environment: e.name,
        deployment_id: now.deployment_id,
        commit: now.commit,
        image: now.image,
        deployed_at: now.deployed_at.map(proto::timestamp),
        status: now.latest_status,
        health: now.health,
        url: e.url,
        task_id: now.task_id,
        message: now.message,
        author: now.author,
        health_checked_at: now.health_checked_at.map(proto::timestamp),
        awaiting_approval: now.awaiting_id.map(|id| proto::PendingApproval {
            deployment_id: id,
            task_id: now.awaiting_task_id,
            commit: now.awaiting_commit,
        }),
    }
}

pub fn stats(s: Stats) -> proto::WorkflowStats {
    let t = &s.figures.tasks;
    proto::WorkflowStats {
        workflow_id: s.workflow_id,
        days: s.days,
        tasks: Some(proto::TaskStats {
            total: t.total,
            succeeded: t.succeeded,
            failed: t.failed,
            cancelled: t.cancelled,
            success_rate: s.success_rate(),
            duration_p50_s: t.duration_p50_s,
            duration_p90_s: t.duration_p90_s,
            queued_p50_s: t.queued_p50_s,
        }),
        environments: s
            .figures
            .environments
            .iter()
            .map(|e| proto::EnvironmentStats {
                environment: e.environment.clone(),
                deploys: e.deploys,
                deploys_per_day: s.deploys_per_day(e),
                change_failure_rate: Stats::change_failure_rate(e),
                lead_time_p50_s: e.lead_time_p50_s,
                mttr_s: e.mttr_s,
                rollbacks: e.rollbacks,
            })
            .collect(),
        daily: s
            .figures
            .daily
            .iter()
            .map(|d| proto::DayStats {
                date: d.date.format("%Y-%m-%d").to_string(),
                tasks: d.tasks,
                failed: d.failed,
                duration_p50_s: d.duration_p50_s,
                deploys: d.deploys,
                succeeded: d.succeeded,
                duration_p90_s: d.duration_p90_s,
                environments: d
                    .environments
                    .iter()
                    .map(|e| proto::DayDeploys {
                        environment: e.environment.clone(),
                        deploys: e.deploys,
                        failed: e.failed,
                    })
                    .collect(),
            })
            .collect(),
    }
}

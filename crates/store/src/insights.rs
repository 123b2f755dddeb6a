//! The overview (what each environment of every workflow runs now, and the
//! last task) and a workflow's figures over a period (api.md, "Insights"),
//! computed in SQL over the stored tasks, deployments and rollbacks.
//!
//! Definitions shared by every figure: a *build* is a task that is not a
//! deploy-only task (`deploy`, `rollback`); a *deploy* is a finished
//! deployment that is not a rollback's and was not skipped; a *failed*
//! deploy failed, timed out or was rolled back.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Double, Nullable, Text, Timestamptz};

use crate::Result;

/// Task triggers of deploy-only tasks: not builds.
const DEPLOY_ONLY: &str = "('deploy', 'rollback')";
/// Deployment states of a finished deploy (skipped ones aside).
const FINISHED: &str = "('succeeded', 'failed', 'rolled_back', 'timed_out')";
/// Deployment states of a failed deploy.
const FAILED: &str = "('failed', 'rolled_back', 'timed_out')";

/// A workflow's newest task.
#[derive(Debug, Clone, QueryableByName)]
pub struct LastTask {
    #[diesel(sql_type = BigInt)]
    pub workflow_id: i64,
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Text)]
    pub trigger: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub branch: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub commit: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub message: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub author: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub finished_at: Option<DateTime<Utc>>,
}

/// The newest task of each workflow in `workflow_ids`.
pub fn last_tasks(conn: &mut PgConnection, workflow_ids: &[i64]) -> Result<Vec<LastTask>> {
    Ok(diesel::sql_query(
        "SELECT w.id AS workflow_id, t.id, t.status, t.trigger, t.branch, \
                t.commit_sha AS commit, t.message, t.author, t.created_at, t.finished_at \
         FROM unnest($1::bigint[]) AS w(id) \
         CROSS JOIN LATERAL ( \
             SELECT * FROM tasks WHERE tasks.workflow_id = w.id ORDER BY tasks.id DESC LIMIT 1 \
         ) t",
    )
    .bind::<diesel::sql_types::Array<BigInt>, _>(workflow_ids)
    .load(conn)?)
}

/// An environment as the overview shows it: what runs now, its health,
/// the state of its newest deploy and the newest one waiting for approval.
#[derive(Debug, Clone, QueryableByName)]
pub struct EnvironmentNow {
    #[diesel(sql_type = BigInt)]
    pub workflow_id: i64,
    #[diesel(sql_type = Text)]
    pub environment: String,
    /// The current deployment: healthy after its watch, not since replaced.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub deployment_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub image: Option<String>,
    /// When it became current.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub deployed_at: Option<DateTime<Utc>>,
    /// The runner host it runs on.
    #[diesel(sql_type = Nullable<Text>)]
    pub host: Option<String>,
    /// The task that built it, and its commit.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub task_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub commit: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub message: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub author: Option<String>,
    /// up | down | unknown, as probed for the current deployment.
    #[diesel(sql_type = Text)]
    pub health: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub health_checked_at: Option<DateTime<Utc>>,
    /// The newest deployment of the environment that was not skipped.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub latest_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub latest_status: Option<String>,
    /// The newest deployment waiting for approval, and its task.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub awaiting_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub awaiting_task_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub awaiting_commit: Option<String>,
}

/// Every environment with a row (deployed, or deploying, at least once) of
/// the workflows in `workflow_ids`.
pub fn environments_now(
    conn: &mut PgConnection,
    workflow_ids: &[i64],
) -> Result<Vec<EnvironmentNow>> {
    Ok(diesel::sql_query(
        "SELECT e.workflow_id, e.name AS environment, \
                c.id AS deployment_id, c.image, c.finished_at AS deployed_at, c.host, \
                ct.id AS task_id, ct.commit_sha AS commit, ct.message, ct.author, \
                CASE WHEN c.id IS NOT NULL AND e.health_deployment_id = c.id \
                     THEN e.health ELSE 'unknown' END AS health, \
                CASE WHEN e.health_deployment_id = c.id THEN e.health_checked_at END \
                     AS health_checked_at, \
                l.id AS latest_id, l.status AS latest_status, \
                a.id AS awaiting_id, a.task_id AS awaiting_task_id, \
                at.commit_sha AS awaiting_commit \
         FROM environments e \
         LEFT JOIN deployments c ON c.id = e.current_deployment_id \
         LEFT JOIN tasks ct ON ct.id = c.task_id \
         LEFT JOIN LATERAL ( \
             SELECT d.id, d.status FROM deployments d \
             WHERE d.workflow_id = e.workflow_id AND d.environment = e.name \
               AND d.status <> 'skipped' \
             ORDER BY d.id DESC LIMIT 1 \
         ) l ON true \
         LEFT JOIN LATERAL ( \
             SELECT d.id, d.task_id FROM deployments d \
             WHERE d.workflow_id = e.workflow_id AND d.environment = e.name \
               AND d.status = 'awaiting_approval' \
             ORDER BY d.id DESC LIMIT 1 \
         ) a ON true \
         LEFT JOIN tasks at ON at.id = a.task_id \
         WHERE e.workflow_id = ANY($1) \
         ORDER BY e.workflow_id, e.name",
    )
    .bind::<diesel::sql_types::Array<BigInt>, _>(workflow_ids)
    .load(conn)?)
}

/// A workflow's builds over a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFigures {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Of the builds that succeeded or failed, start to end.
    pub duration_p50_s: Option<f64>,
    pub duration_p90_s: Option<f64>,
    /// Of the builds that started, queued to started.
    pub queued_p50_s: Option<f64>,
}

/// The builds of the whole period (`date` `None`) or of one day.
#[derive(QueryableByName)]
struct BuildRow {
    #[diesel(sql_type = Nullable<Date>)]
    date: Option<NaiveDate>,
    #[diesel(sql_type = BigInt)]
    tasks: i64,
    #[diesel(sql_type = BigInt)]
    succeeded: i64,
    #[diesel(sql_type = BigInt)]
    failed: i64,
    #[diesel(sql_type = BigInt)]
    cancelled: i64,
    #[diesel(sql_type = Nullable<Double>)]
    duration_p50_s: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    duration_p90_s: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    queued_p50_s: Option<f64>,
}

/// One environment's deploys over a period.
#[derive(Debug, Clone, Default, PartialEq, QueryableByName)]
pub struct EnvironmentFigures {
    #[diesel(sql_type = Text)]
    pub environment: String,
    #[diesel(sql_type = BigInt)]
    pub deploys: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
    /// Commit (or task creation) to the deploy that made it current.
    #[diesel(sql_type = Nullable<Double>)]
    pub lead_time_p50_s: Option<f64>,
    /// Mean of each failed deploy's finish to the next succeeded deploy's.
    #[diesel(sql_type = Nullable<Double>)]
    pub mttr_s: Option<f64>,
    #[diesel(sql_type = BigInt)]
    pub rollbacks: i64,
}

/// One day (UTC) with activity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayFigures {
    pub date: NaiveDate,
    pub tasks: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub duration_p50_s: Option<f64>,
    pub duration_p90_s: Option<f64>,
    pub deploys: i64,
    /// That day's deploys by environment.
    pub environments: Vec<DayDeploys>,
}

/// One environment's deploys on one day.
#[derive(Debug, Clone, Default, PartialEq, QueryableByName)]
pub struct DayDeploys {
    #[diesel(sql_type = Date)]
    pub date: NaiveDate,
    #[diesel(sql_type = Text)]
    pub environment: String,
    #[diesel(sql_type = BigInt)]
    pub deploys: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
}

/// A workflow's figures since `since`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub tasks: TaskFigures,
    /// Every environment with a deploy or a rollback in the period.
    pub environments: Vec<EnvironmentFigures>,
    pub daily: Vec<DayFigures>,
}

/// A workflow's builds since `since`, of the whole period and of each day.
///
/// The one scan of the period's tasks is most of the figures' time: it may
/// use both cores, and sorts in memory.
pub fn builds(conn: &mut PgConnection, workflow_id: i64, since: DateTime<Utc>) -> Result<Builds> {
    conn.build_transaction().read_only().run(|conn| {
        for setting in [
            "SET LOCAL work_mem = '32MB'",
            "SET LOCAL parallel_setup_cost = 0",
            "SET LOCAL parallel_tuple_cost = 0.001",
            "SET LOCAL min_parallel_table_scan_size = 0",
        ] {
            diesel::sql_query(setting).execute(conn)?;
        }
        let rows: Vec<BuildRow> = diesel::sql_query(format!(
            "SELECT CASE WHEN GROUPING(day) = 0 THEN day END AS date, count(*) AS tasks, \
                    count(*) FILTER (WHERE status = 'success') AS succeeded, \
                    count(*) FILTER (WHERE status = 'failed') AS failed, \
                    count(*) FILTER (WHERE status = 'cancelled') AS cancelled, \
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY run) \
                        FILTER (WHERE status IN ('success', 'failed')) AS duration_p50_s, \
                    percentile_cont(0.9) WITHIN GROUP (ORDER BY run) \
                        FILTER (WHERE status IN ('success', 'failed')) AS duration_p90_s, \
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY queued) AS queued_p50_s \
             FROM ( \
                 SELECT (created_at AT TIME ZONE 'UTC')::date AS day, status, \
                        date_part('epoch', finished_at - started_at) AS run, \
                        date_part('epoch', started_at - queued_at) AS queued \
                 FROM tasks \
                 WHERE workflow_id = $1 AND created_at >= $2 AND trigger NOT IN {DEPLOY_ONLY} \
             ) b \
             GROUP BY GROUPING SETS ((), (day)) \
             ORDER BY date NULLS FIRST",
        ))
        .bind::<BigInt, _>(workflow_id)
        .bind::<Timestamptz, _>(since)
        .load(conn)?;
        Ok(Builds(rows))
    })
}

/// A workflow's builds over a period, as [`builds`] read them.
pub struct Builds(Vec<BuildRow>);

/// A workflow's deploys since `since`: per environment, and per day and
/// environment.
pub fn deploys(conn: &mut PgConnection, workflow_id: i64, since: DateTime<Utc>) -> Result<Deploys> {
    conn.build_transaction().read_only().repeatable_read().run(|conn| {
        let environments: Vec<EnvironmentFigures> = diesel::sql_query(format!(
            "WITH d AS ( \
                 SELECT d.id, d.environment, d.status, d.finished_at, d.task_id \
                 FROM deployments d \
                 WHERE d.workflow_id = $1 AND d.created_at >= $2 \
                   AND d.trigger <> 'rollback' AND d.status IN {FINISHED} \
             ), per AS ( \
                 SELECT environment, count(*) AS deploys, \
                        count(*) FILTER (WHERE status IN {FAILED}) AS failed \
                 FROM d GROUP BY environment \
             ), lead AS ( \
                 SELECT d.environment, percentile_cont(0.5) WITHIN GROUP (ORDER BY \
                        date_part('epoch', d.finished_at - coalesce(c.committed_at, t.created_at))) \
                        AS lead_time_p50_s \
                 FROM d JOIN tasks t ON t.id = d.task_id \
                 LEFT JOIN task_commits c ON c.task_id = t.id \
                 WHERE d.status = 'succeeded' GROUP BY d.environment \
             ), recovery AS ( \
                 SELECT d.environment, \
                        avg(date_part('epoch', r.finished_at - d.finished_at)) AS mttr_s \
                 FROM d CROSS JOIN LATERAL ( \
                     SELECT s.finished_at FROM deployments s \
                     WHERE s.workflow_id = $1 AND s.environment = d.environment \
                       AND s.id > d.id AND s.trigger <> 'rollback' AND s.status = 'succeeded' \
                     ORDER BY s.id LIMIT 1 \
                 ) r \
                 WHERE d.status IN {FAILED} GROUP BY d.environment \
             ), back AS ( \
                 SELECT environment, count(*) AS rollbacks FROM rollbacks \
                 WHERE workflow_id = $1 AND created_at >= $2 GROUP BY environment \
             ) \
             SELECT e.environment, coalesce(per.deploys, 0) AS deploys, \
                    coalesce(per.failed, 0) AS failed, lead.lead_time_p50_s, \
                    recovery.mttr_s, coalesce(back.rollbacks, 0) AS rollbacks \
             FROM (SELECT environment FROM per UNION SELECT environment FROM back) e \
             LEFT JOIN per USING (environment) \
             LEFT JOIN lead USING (environment) \
             LEFT JOIN recovery USING (environment) \
             LEFT JOIN back USING (environment) \
             ORDER BY e.environment",
        ))
        .bind::<BigInt, _>(workflow_id)
        .bind::<Timestamptz, _>(since)
        .load(conn)?;

        let deploys: Vec<DayDeploys> = diesel::sql_query(format!(
            "SELECT (finished_at AT TIME ZONE 'UTC')::date AS date, environment, \
                    count(*) AS deploys, count(*) FILTER (WHERE status IN {FAILED}) AS failed \
             FROM deployments \
             WHERE workflow_id = $1 AND created_at >= $2 \
               AND trigger <> 'rollback' AND status IN {FINISHED} \
             GROUP BY 1, 2 ORDER BY 1, 2",
        ))
        .bind::<BigInt, _>(workflow_id)
        .bind::<Timestamptz, _>(since)
        .load(conn)?;

        Ok(Deploys {
            environments,
            days: deploys,
        })
    })
}

/// A workflow's deploys over a period, as [`deploys`] read them.
pub struct Deploys {
    environments: Vec<EnvironmentFigures>,
    days: Vec<DayDeploys>,
}

/// The period's figures and its days (those with a build or a deploy).
pub fn assemble(builds: Builds, deploys: Deploys) -> Figures {
    let Builds(builds) = builds;
    let Deploys {
        environments,
        days: deploys,
    } = deploys;
    let mut tasks = TaskFigures::default();
    let mut days: BTreeMap<NaiveDate, DayFigures> = BTreeMap::new();
    for b in builds {
        match b.date {
            None => {
                tasks = TaskFigures {
                    total: b.tasks,
                    succeeded: b.succeeded,
                    failed: b.failed,
                    cancelled: b.cancelled,
                    duration_p50_s: b.duration_p50_s,
                    duration_p90_s: b.duration_p90_s,
                    queued_p50_s: b.queued_p50_s,
                };
            }
            Some(date) => {
                days.insert(
                    date,
                    DayFigures {
                        date,
                        tasks: b.tasks,
                        succeeded: b.succeeded,
                        failed: b.failed,
                        duration_p50_s: b.duration_p50_s,
                        duration_p90_s: b.duration_p90_s,
                        ..DayFigures::default()
                    },
                );
            }
        }
    }
    for d in deploys {
        let day = days.entry(d.date).or_insert_with(|| DayFigures {
            date: d.date,
            ..DayFigures::default()
        });
        day.deploys += d.deploys;
        day.environments.push(d);
    }
    Figures {
        tasks,
        environments,
        daily: days.into_values().collect(),
    }
}

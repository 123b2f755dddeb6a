//! Deployments, rollbacks and environments. A deployment is created
//! `pending` (or `awaiting_approval`) and starts only when its environment
//! is free and no older deployment of it waits, so deploys of one
//! environment never overlap and run oldest first; one older than the
//! environment's current version is `skipped`. The environment's current
//! deployment moves only when a deploy succeeded. Every status change goes
//! through `domain::state::DeploymentStatus::apply` and writes its event.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use domain::image::{Digest, ImageRef};
use domain::state::{DeploymentEvent, DeploymentStatus};

use crate::events::{self, Event};
use crate::schema::{deployments, environments, rollbacks, tasks, workflows};
use crate::{Error, Result};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deployments)]
pub struct DeploymentRow {
    pub id: i64,
    pub workflow_id: i64,
    pub task_id: Option<i64>,
    pub environment: String,
    pub image: String,
    pub status: String,
    pub trigger: String,
    pub previous_deployment_id: Option<i64>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The runner host it was started on: where later deploys, rollbacks
    /// and probes of a routed environment go.
    pub host: Option<String>,
    /// When the edge proxy last sent the environment's traffic to it.
    pub switched_at: Option<DateTime<Utc>>,
    /// When its container stopped after a newer version took over.
    pub retired_at: Option<DateTime<Utc>>,
}

impl DeploymentRow {
    pub fn status(&self) -> Result<DeploymentStatus> {
        self.status
            .parse()
            .map_err(|e: domain::state::UnknownStatus| Error::Corrupt(e.to_string()))
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rollbacks)]
pub struct RollbackRow {
    pub id: i64,
    pub workflow_id: i64,
    pub environment: String,
    pub deployment_id: Option<i64>,
    pub from_deployment_id: Option<i64>,
    pub to_deployment_id: Option<i64>,
    pub reason: String,
    pub status: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub via_deployment_id: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = environments)]
pub struct EnvironmentRow {
    pub workflow_id: i64,
    pub name: String,
    pub current_deployment_id: Option<i64>,
    pub previous_deployment_id: Option<i64>,
    pub updated_at: DateTime<Utc>,
    /// The deployment the edge proxy sends a routed environment's traffic
    /// to: the candidate from its switch on, before it becomes current.
    pub serving_deployment_id: Option<i64>,
}

/// A deployment to create.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub workflow_id: i64,
    pub task_id: Option<i64>,
    pub environment: String,
    pub image: String,
    pub trigger: String,
    /// False for an `auto: false` environment: it waits for approval.
    pub auto: bool,
}

pub(crate) fn get_row(conn: &mut PgConnection, id: i64) -> Result<DeploymentRow> {
    deployments::table
        .find(id)
        .select(DeploymentRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound)
}

fn lock_row(conn: &mut PgConnection, id: i64) -> Result<DeploymentRow> {
    deployments::table
        .find(id)
        .for_update()
        .select(DeploymentRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound)
}

/// The environment's row, created on first use, locked for the transaction.
pub(crate) fn lock_environment(
    conn: &mut PgConnection,
    workflow_id: i64,
    name: &str,
) -> Result<EnvironmentRow> {
    diesel::insert_into(environments::table)
        .values((
            environments::workflow_id.eq(workflow_id),
            environments::name.eq(name),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(environments::table
        .find((workflow_id, name))
        .for_update()
        .select(EnvironmentRow::as_select())
        .first(conn)?)
}

fn event(
    conn: &mut PgConnection,
    kind: &str,
    d: &DeploymentRow,
    summary: String,
    error: Option<&str>,
) -> Result<()> {
    emit(conn, kind, d, summary, error, |_| {})
}

/// Records an event of deployment `d`; `more` fills in what only some
/// events carry (a rollback's reason and outcome, a recovery).
fn emit<'a>(
    conn: &mut PgConnection,
    kind: &'a str,
    d: &'a DeploymentRow,
    summary: String,
    error: Option<&'a str>,
    more: impl FnOnce(&mut Event<'a>),
) -> Result<()> {
    let mut e = Event {
        kind,
        workflow_id: d.workflow_id,
        task_id: d.task_id,
        deployment_id: Some(d.id),
        environment: Some(&d.environment),
        summary,
        error,
        ..Event::default()
    };
    more(&mut e);
    events::emit(conn, &e)?;
    Ok(())
}

/// Creates a deployment: `pending`, or `awaiting_approval` (with its event).
pub fn create(conn: &mut PgConnection, new: &NewDeployment) -> Result<DeploymentRow> {
    conn.transaction(|conn| {
        let mut status = DeploymentStatus::Pending;
        if !new.auto {
            status = status.apply(DeploymentEvent::HoldForApproval)?;
        }
        let row: DeploymentRow = diesel::insert_into(deployments::table)
            .values((
                deployments::workflow_id.eq(new.workflow_id),
                deployments::task_id.eq(new.task_id),
                deployments::environment.eq(&new.environment),
                deployments::image.eq(&new.image),
                deployments::status.eq(status.as_str()),
                deployments::trigger.eq(&new.trigger),
            ))
            .returning(DeploymentRow::as_returning())
            .get_result(conn)?;
        if status == DeploymentStatus::AwaitingApproval {
            let summary = format!("{} waits for approval to deploy", row.environment);
            event(conn, "awaiting_approval", &row, summary, None)?;
        }
        Ok(row)
    })
}

/// What asking to start a deployment came to.
#[derive(Debug, Clone)]
pub enum Start {
    /// It is deploying now; `previous` is the environment's current one.
    Started {
        deployment: Box<DeploymentRow>,
        previous: Option<Box<DeploymentRow>>,
    },
    /// Another deploy of the environment runs, or an older one waits.
    Busy,
    /// A newer version is already on the environment.
    Skipped(Box<DeploymentRow>),
}

/// Starts a pending deployment when its environment is free and it is the
/// oldest waiting, on the runner host `host`; skips it when the environment
/// already runs a version from a newer task.
pub fn start(conn: &mut PgConnection, id: i64, host: Option<&str>) -> Result<Start> {
    conn.transaction(|conn| {
        let probe = get_row(conn, id)?;
        let env = lock_environment(conn, probe.workflow_id, &probe.environment)?;
        let d = lock_row(conn, id)?;
        let status = d.status()?;
        let busy: i64 = deployments::table
            .filter(deployments::workflow_id.eq(d.workflow_id))
            .filter(deployments::environment.eq(&d.environment))
            .filter(
                deployments::status
                    .eq_any([
                        DeploymentStatus::Deploying.as_str(),
                        DeploymentStatus::Verifying.as_str(),
                    ])
                    .or(deployments::status
                        .eq(DeploymentStatus::Pending.as_str())
                        .and(deployments::id.lt(d.id))),
            )
            .count()
            .get_result(conn)?;
        if busy > 0 {
            return Ok(Start::Busy);
        }
        let previous = match env.current_deployment_id {
            Some(current) => Some(get_row(conn, current)?),
            None => None,
        };
        let outdated = match (&previous, d.task_id) {
            (Some(p), Some(mine)) => {
                p.task_id.is_some_and(|theirs| theirs > mine) && d.trigger == "auto"
            }
            _ => false,
        };
        let now = Utc::now();
        if outdated {
            let next = status.apply(DeploymentEvent::Skip)?;
            let row = diesel::update(deployments::table.find(id))
                .set((
                    deployments::status.eq(next.as_str()),
                    deployments::finished_at.eq(now),
                    deployments::error.eq("outdated: a newer version is already deployed"),
                ))
                .returning(DeploymentRow::as_returning())
                .get_result(conn)?;
            return Ok(Start::Skipped(Box::new(row)));
        }
        let next = status.apply(DeploymentEvent::Start)?;
        let row: DeploymentRow = diesel::update(deployments::table.find(id))
            .set((
                deployments::status.eq(next.as_str()),
                deployments::started_at.eq(now),
                deployments::previous_deployment_id.eq(env.current_deployment_id),
                deployments::host.eq(host),
            ))
            .returning(DeploymentRow::as_returning())
            .get_result(conn)?;
        let summary = format!("deploying {} to {}", row.image, row.environment);
        event(conn, "deploy_started", &row, summary, None)?;
        Ok(Start::Started {
            deployment: Box::new(row),
            previous: previous.map(Box::new),
        })
    })
}

/// A status change reported by the runner doing the deploy. `alert` is the
/// event to record for a failure (`deploy_failed` or `health_check_failed`).
pub fn advance(
    conn: &mut PgConnection,
    id: i64,
    change: DeploymentEvent,
    error: Option<&str>,
    alert: Option<&str>,
) -> Result<DeploymentRow> {
    conn.transaction(|conn| {
        let probe = get_row(conn, id)?;
        let env = lock_environment(conn, probe.workflow_id, &probe.environment)?;
        let d = lock_row(conn, id)?;
        let next = d.status()?.apply(change)?;
        let now = Utc::now();
        let finished = next.is_finished().then_some(now);
        let row: DeploymentRow = diesel::update(deployments::table.find(id))
            .set((
                deployments::status.eq(next.as_str()),
                deployments::error.eq(error.or(d.error.as_deref())),
                deployments::finished_at.eq(finished.or(d.finished_at)),
            ))
            .returning(DeploymentRow::as_returning())
            .get_result(conn)?;
        match change {
            DeploymentEvent::Succeed => finish_manual_rollback(conn, &row, true, None)?,
            DeploymentEvent::Fail | DeploymentEvent::TimeOut => {
                finish_manual_rollback(conn, &row, false, error)?
            }
            _ => {}
        }
        match change {
            DeploymentEvent::Succeed => {
                diesel::update(environments::table.find((row.workflow_id, &row.environment)))
                    .set((
                        environments::previous_deployment_id.eq(env.current_deployment_id),
                        environments::current_deployment_id.eq(row.id),
                        environments::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                let summary = format!("{} is healthy on {}", row.image, row.environment);
                let recovery = recovers(conn, row.workflow_id, &row.environment, row.id)?;
                emit(conn, "deploy_succeeded", &row, summary, None, |e| {
                    e.recovery = recovery;
                })?;
            }
            DeploymentEvent::Fail => {
                serve_current(conn, &row)?;
                let kind = alert.unwrap_or("deploy_failed");
                let summary = format!("deploy of {} to {} failed", row.image, row.environment);
                event(conn, kind, &row, summary, error)?;
            }
            DeploymentEvent::TimeOut => {
                let summary = format!(
                    "deploy to {} ran past its timeout; left for a person",
                    row.environment
                );
                event(conn, "deploy_timeout", &row, summary, error)?;
            }
            _ => {}
        }
        Ok(row)
    })
}

/// Whether a deployment that succeeded follows a failed one of the same
/// environment.
fn recovers(
    conn: &mut PgConnection,
    workflow_id: i64,
    environment: &str,
    deployment_id: i64,
) -> Result<bool> {
    let last: Option<String> = deployments::table
        .filter(deployments::workflow_id.eq(workflow_id))
        .filter(deployments::environment.eq(environment))
        .filter(deployments::id.ne(deployment_id))
        .filter(deployments::status.eq_any(["succeeded", "failed", "rolled_back", "timed_out"]))
        .order(deployments::finished_at.desc().nulls_last())
        .select(deployments::status)
        .first(conn)
        .optional()?;
    Ok(last.is_some_and(|s| s != "succeeded"))
}

/// A rollback of a failed deployment to `to` (the previous healthy one);
/// when it succeeded the failed deployment becomes `rolled_back`.
pub fn record_rollback(
    conn: &mut PgConnection,
    failed_id: i64,
    to: Option<i64>,
    reason: &str,
    succeeded: bool,
    error: Option<&str>,
) -> Result<RollbackRow> {
    conn.transaction(|conn| {
        let failed = lock_row(conn, failed_id)?;
        let now = Utc::now();
        let status = if succeeded { "succeeded" } else { "failed" };
        let row: RollbackRow = diesel::insert_into(rollbacks::table)
            .values((
                rollbacks::workflow_id.eq(failed.workflow_id),
                rollbacks::environment.eq(&failed.environment),
                rollbacks::deployment_id.eq(failed.id),
                rollbacks::from_deployment_id.eq(failed.id),
                rollbacks::to_deployment_id.eq(to),
                rollbacks::reason.eq(reason),
                rollbacks::status.eq(status),
                rollbacks::error.eq(error),
                rollbacks::finished_at.eq(now),
            ))
            .returning(RollbackRow::as_returning())
            .get_result(conn)?;
        if succeeded {
            let next = failed.status()?.apply(DeploymentEvent::RollBack)?;
            diesel::update(deployments::table.find(failed.id))
                .set(deployments::status.eq(next.as_str()))
                .execute(conn)?;
        }
        let summary = match (succeeded, to) {
            (true, Some(to)) => format!("{} rolled back to deployment {to}", failed.environment),
            (false, Some(to)) => format!(
                "rollback of {} to deployment {to} failed",
                failed.environment
            ),
            (_, None) => format!(
                "{} has no previous version to roll back to; it is left stopped",
                failed.environment
            ),
        };
        emit(conn, "rolled_back", &failed, summary, error, |e| {
            e.reason = Some(reason);
            e.outcome = Some(status);
        })?;
        Ok(row)
    })
}

/// A change of where a routed environment's traffic goes (edge.md), as the
/// runner deploying it reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    /// The deployment the edge proxy sends the traffic to now.
    pub serving: Option<i64>,
    /// Deployments whose containers stopped now.
    pub retired: Vec<i64>,
}

/// Records a traffic change of the environment of deployment `d`: the
/// serving deployment becomes the environment's (`switched_at` now, unless
/// it already served), retired ones get `retired_at` (once, so a repeated
/// report changes nothing). Every deployment named must be one of `d`'s
/// environment. Retiring the deployment that serves leaves none serving.
pub(crate) fn switch_traffic(
    conn: &mut PgConnection,
    d: &DeploymentRow,
    traffic: &Traffic,
) -> Result<EnvironmentRow> {
    let env = lock_environment(conn, d.workflow_id, &d.environment)?;
    for &id in traffic.serving.iter().chain(&traffic.retired) {
        let other = deployments::table
            .find(id)
            .filter(deployments::workflow_id.eq(d.workflow_id))
            .filter(deployments::environment.eq(&d.environment))
            .select(DeploymentRow::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "deployment {id} is not a deployment of environment {} of workflow {}",
                    d.environment, d.workflow_id
                ))
            })?;
        if traffic.serving == Some(id) {
            if traffic.retired.contains(&id) {
                return Err(Error::Invalid(format!(
                    "deployment {id} cannot both serve and be retired"
                )));
            }
            if other.retired_at.is_some() {
                return Err(Error::Invalid(format!(
                    "deployment {id} was retired: it cannot serve again"
                )));
            }
        }
    }
    let now = Utc::now();
    let mut serving = env.serving_deployment_id;
    if let Some(id) = traffic.serving
        && serving != Some(id)
    {
        diesel::update(deployments::table.find(id))
            .set(deployments::switched_at.eq(now))
            .execute(conn)?;
        serving = Some(id);
    }
    if !traffic.retired.is_empty() {
        diesel::update(
            deployments::table
                .filter(deployments::id.eq_any(&traffic.retired))
                .filter(deployments::retired_at.is_null()),
        )
        .set(deployments::retired_at.eq(now))
        .execute(conn)?;
        if serving.is_some_and(|id| traffic.retired.contains(&id)) {
            serving = None;
        }
    }
    if serving == env.serving_deployment_id {
        return Ok(env);
    }
    Ok(
        diesel::update(environments::table.find((d.workflow_id, &d.environment)))
            .set((
                environments::serving_deployment_id.eq(serving),
                environments::updated_at.eq(now),
            ))
            .returning(EnvironmentRow::as_returning())
            .get_result(conn)?,
    )
}

/// A deployment as users read it.
#[derive(Debug, Clone)]
pub struct DeploymentRecord {
    pub row: DeploymentRow,
    /// The rollback that followed it, if any.
    pub rollback: Option<RollbackRow>,
    /// The commit of the task whose image it deploys: the version a user
    /// recognises, which the image's digest does not tell.
    pub commit: Option<String>,
}

pub fn get(conn: &mut PgConnection, id: i64) -> Result<DeploymentRecord> {
    let row = get_row(conn, id)?;
    let mut records = records(conn, vec![row])?;
    records.pop().ok_or(Error::NotFound)
}

/// The rows with their rollbacks and their tasks' commits, in their order.
fn records(conn: &mut PgConnection, rows: Vec<DeploymentRow>) -> Result<Vec<DeploymentRecord>> {
    let ids: Vec<i64> = rows.iter().map(|d| d.id).collect();
    let all: Vec<RollbackRow> = rollbacks::table
        .filter(rollbacks::deployment_id.eq_any(&ids))
        .order(rollbacks::id.desc())
        .select(RollbackRow::as_select())
        .load(conn)?;
    let task_ids: Vec<i64> = rows.iter().filter_map(|d| d.task_id).collect();
    let commits: Vec<(i64, Option<String>)> = tasks::table
        .filter(tasks::id.eq_any(&task_ids))
        .select((tasks::id, tasks::commit_sha))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let rollback = all
                .iter()
                .find(|r| r.deployment_id == Some(row.id))
                .cloned();
            let commit = commits
                .iter()
                .find(|(id, _)| Some(*id) == row.task_id)
                .and_then(|(_, c)| c.clone());
            DeploymentRecord {
                row,
                rollback,
                commit,
            }
        })
        .collect())
}

/// A task's deployments, in the order they were made.
pub fn for_task(conn: &mut PgConnection, task_id: i64) -> Result<Vec<DeploymentRecord>> {
    let rows = deployments::table
        .filter(deployments::task_id.eq(task_id))
        .order(deployments::id.asc())
        .select(DeploymentRow::as_select())
        .load(conn)?;
    records(conn, rows)
}

/// Which deployments [`list`] answers; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    pub workflow_id: Option<i64>,
    pub environment: Option<String>,
    pub status: Option<DeploymentStatus>,
}

/// Deployments, newest first.
pub fn list(
    conn: &mut PgConnection,
    filter: &DeploymentFilter,
    limit: i64,
) -> Result<Vec<DeploymentRecord>> {
    let mut query = deployments::table
        .select(DeploymentRow::as_select())
        .order(deployments::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(w) = filter.workflow_id {
        query = query.filter(deployments::workflow_id.eq(w));
    }
    if let Some(e) = &filter.environment {
        query = query.filter(deployments::environment.eq(e.clone()));
    }
    if let Some(s) = filter.status {
        query = query.filter(deployments::status.eq(s.as_str()));
    }
    let rows = query.load(conn)?;
    records(conn, rows)
}

/// Rollbacks, newest first.
pub fn rollbacks(
    conn: &mut PgConnection,
    workflow_id: Option<i64>,
    environment: Option<&str>,
) -> Result<Vec<RollbackRow>> {
    let mut query = rollbacks::table
        .select(RollbackRow::as_select())
        .order(rollbacks::id.desc())
        .limit(500)
        .into_boxed();
    if let Some(w) = workflow_id {
        query = query.filter(rollbacks::workflow_id.eq(w));
    }
    if let Some(e) = environment {
        query = query.filter(rollbacks::environment.eq(e.to_owned()));
    }
    Ok(query.load(conn)?)
}

/// An environment with the deployments its row points at.
#[derive(Debug, Clone)]
pub struct EnvironmentView {
    pub name: String,
    /// Its row; `None` for an environment of the definition that no
    /// deployment has started on yet.
    pub environment: Option<EnvironmentRow>,
    /// What runs there now.
    pub current: Option<DeploymentRecord>,
    /// The one before: where a rollback goes by default.
    pub previous: Option<DeploymentRecord>,
    /// What the edge proxy sends the traffic to (routed environments).
    pub serving: Option<DeploymentRow>,
    /// Its newest deployment that was not skipped, whatever came of it: a
    /// failed deploy (and its rollback) while `current` stays as it was.
    pub latest: Option<DeploymentRecord>,
}

/// A workflow's environments with their current, previous, serving and
/// latest deployments: every one of `defined` (the names in the workflow's
/// current definition), in that order, deployed to or not, then those that
/// were deployed to and are no longer defined, by name.
pub fn environments(
    conn: &mut PgConnection,
    workflow_id: i64,
    defined: &[String],
) -> Result<Vec<EnvironmentView>> {
    let mut rows: Vec<EnvironmentRow> = environments::table
        .filter(environments::workflow_id.eq(workflow_id))
        .order(environments::name.asc())
        .select(EnvironmentRow::as_select())
        .load(conn)?;
    let mut named: Vec<(String, Option<EnvironmentRow>)> = defined
        .iter()
        .map(|name| {
            let row = rows
                .iter()
                .position(|r| &r.name == name)
                .map(|i| rows.remove(i));
            (name.clone(), row)
        })
        .collect();
    named.extend(rows.into_iter().map(|r| (r.name.clone(), Some(r))));
    let mut out = Vec::with_capacity(named.len());
    for (name, environment) in named {
        let ids = environment.as_ref().map_or([None; 3], |e| {
            [
                e.current_deployment_id,
                e.previous_deployment_id,
                e.serving_deployment_id,
            ]
        });
        let [current, previous, serving] = ids.map(|id| id.map(|id| get_row(conn, id)));
        let mut record = |row: Option<Result<DeploymentRow>>| -> Result<Option<DeploymentRecord>> {
            match row.transpose()? {
                Some(row) => Ok(records(conn, vec![row])?.pop()),
                None => Ok(None),
            }
        };
        let current = record(current)?;
        let previous = record(previous)?;
        let serving = serving.transpose()?;
        let latest = deployments::table
            .filter(deployments::workflow_id.eq(workflow_id))
            .filter(deployments::environment.eq(&name))
            .filter(deployments::status.ne(DeploymentStatus::Skipped.as_str()))
            .order(deployments::id.desc())
            .select(DeploymentRow::as_select())
            .first(conn)
            .optional()?;
        let latest = match latest {
            Some(row) => records(conn, vec![row])?.pop(),
            None => None,
        };
        out.push(EnvironmentView {
            name,
            environment,
            current,
            previous,
            serving,
            latest,
        });
    }
    Ok(out)
}

/// A routed environment served from one host, and the deployment its
/// traffic goes to.
#[derive(Debug, Clone)]
pub struct ServedRoute {
    pub workflow_id: i64,
    /// The workflow's name.
    pub workflow: String,
    pub environment: String,
    pub deployment: DeploymentRow,
    /// The definition the deployment was made with (its task's version of
    /// the workflow), whose `route` and target the proxy serves.
    pub definition: String,
}

/// Every environment of a live workflow whose serving deployment was made
/// on `host`, by workflow and environment: what a runner of that host puts
/// back into its edge proxy.
pub fn served_from(conn: &mut PgConnection, host: &str) -> Result<Vec<ServedRoute>> {
    let rows: Vec<(EnvironmentRow, DeploymentRow, String, i32, Option<i32>)> = environments::table
        .inner_join(
            deployments::table
                .on(environments::serving_deployment_id.eq(deployments::id.nullable())),
        )
        .inner_join(workflows::table.on(workflows::id.eq(environments::workflow_id)))
        .left_join(tasks::table.on(deployments::task_id.eq(tasks::id.nullable())))
        .filter(deployments::host.eq(host))
        .filter(workflows::deleted_at.is_null())
        .order((environments::workflow_id.asc(), environments::name.asc()))
        .select((
            EnvironmentRow::as_select(),
            DeploymentRow::as_select(),
            workflows::name,
            workflows::version,
            tasks::workflow_version.nullable(),
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(env, deployment, workflow, current, made_with)| {
            let made_with = made_with.unwrap_or(current);
            let definition = match crate::workflows::definition(conn, env.workflow_id, made_with) {
                Err(Error::NotFound) => {
                    crate::workflows::definition(conn, env.workflow_id, current)?
                }
                found => found?,
            };
            Ok(ServedRoute {
                workflow_id: env.workflow_id,
                workflow,
                environment: env.name,
                deployment,
                definition,
            })
        })
        .collect()
}

/// `registry/name@sha256:...` from a task's pushed reference and digest.
pub(crate) fn by_digest(reference: &str, digest: &str) -> Result<String> {
    let pinned = ImageRef::parse(reference)
        .and_then(|image| Ok(image.pinned(&Digest::parse(digest)?)))
        .map_err(|e| Error::Corrupt(e.to_string()))?;
    Ok(pinned.to_string())
}

/// Ends the manual rollback a deployment carries out, if any.
fn finish_manual_rollback(
    conn: &mut PgConnection,
    d: &DeploymentRow,
    succeeded: bool,
    error: Option<&str>,
) -> Result<()> {
    let status = if succeeded { "succeeded" } else { "failed" };
    let ended: Vec<RollbackRow> = diesel::update(
        rollbacks::table
            .filter(rollbacks::via_deployment_id.eq(d.id))
            .filter(rollbacks::status.eq("running")),
    )
    .set((
        rollbacks::status.eq(status),
        rollbacks::error.eq(error),
        rollbacks::finished_at.eq(Utc::now()),
    ))
    .returning(RollbackRow::as_returning())
    .get_results(conn)?;
    for r in ended {
        let summary = format!(
            "{} rolled back by hand to deployment {}: {status}",
            r.environment,
            r.to_deployment_id.unwrap_or_default()
        );
        emit(conn, "rolled_back", d, summary, error, |e| {
            e.reason = Some("manual");
            e.outcome = Some(status);
        })?;
    }
    Ok(())
}

/// Skips the deploys of a task that ended before they started (they waited
/// for their environment): they never will, and later deploys of the
/// environment must not wait behind them.
pub(crate) fn skip_waiting(
    conn: &mut PgConnection,
    task_id: i64,
    deployment_id: Option<i64>,
) -> Result<()> {
    let waiting: Vec<i64> = deployments::table
        .filter(
            deployments::task_id
                .eq(task_id)
                .or(deployments::id.nullable().eq(deployment_id)),
        )
        .filter(deployments::status.eq(DeploymentStatus::Pending.as_str()))
        .select(deployments::id)
        .load(conn)?;
    for id in waiting {
        advance(
            conn,
            id,
            DeploymentEvent::Skip,
            Some("the task ended before the deploy started"),
            None,
        )?;
    }
    Ok(())
}

/// Fails the deploys a task still had under way when it ended (its runner
/// was lost, it was cancelled mid-deploy), so their environment is not held
/// busy forever. Returns them as they are now.
pub(crate) fn fail_in_flight(
    conn: &mut PgConnection,
    task_id: i64,
    deployment_id: Option<i64>,
    why: &str,
) -> Result<Vec<DeploymentRow>> {
    let in_flight: Vec<DeploymentRow> = deployments::table
        .filter(
            deployments::task_id
                .eq(task_id)
                .or(deployments::id.nullable().eq(deployment_id)),
        )
        .filter(deployments::status.eq_any([
            DeploymentStatus::Deploying.as_str(),
            DeploymentStatus::Verifying.as_str(),
        ]))
        .select(DeploymentRow::as_select())
        .load(conn)?;
    in_flight
        .into_iter()
        .map(|d| {
            advance(
                conn,
                d.id,
                DeploymentEvent::Fail,
                Some(why),
                Some("deploy_failed"),
            )
        })
        .collect()
}

/// A failed deploy no longer serves its routed environment: its runner
/// switched the route back (or withdrew it) before saying so, or was lost,
/// or the task ended under it. The records send the traffic back to the
/// environment's current version (which keeps running through a deploy
/// until it is retired), or to none, and a runner of its host puts that
/// route back into the proxy when it starts again.
fn serve_current(conn: &mut PgConnection, failed: &DeploymentRow) -> Result<()> {
    let env = lock_environment(conn, failed.workflow_id, &failed.environment)?;
    if env.serving_deployment_id != Some(failed.id) {
        return Ok(());
    }
    let current = match env.current_deployment_id {
        Some(id) => Some(get_row(conn, id)?),
        None => None,
    };
    let serving = current.filter(|c| c.retired_at.is_none()).map(|c| c.id);
    diesel::update(environments::table.find((failed.workflow_id, &failed.environment)))
        .set((
            environments::serving_deployment_id.eq(serving),
            environments::updated_at.eq(Utc::now()),
        ))
        .execute(conn)?;
    Ok(())
}

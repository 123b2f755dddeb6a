//! Creating tasks: one (with a savepoint, or inside the caller's
//! transaction), or many in a few statements for them all; each with its
//! steps, commit time, outbox entry and `task_created` event.

use std::collections::HashMap;

use super::*;

/// Creates a pending task with its steps and its outbox entry, atomically
/// (a savepoint when the caller already holds a transaction).
///
/// A task that deploys to routed environments (edge.md) needs, besides its
/// workflow's labels, the label of the host that serves them, so that the
/// new version starts beside the one its proxy serves: a deploy-only task
/// the host of its environment, any other task the host of the workflow's
/// routed environments when they are all served from one.
pub fn create(conn: &mut PgConnection, new: &NewTask, step_names: &[String]) -> Result<i64> {
    conn.transaction(|conn| create_within(conn, new, step_names))
}

/// [`create`] for a caller that holds a transaction already and undoes it
/// on an error (no savepoint of its own).
pub fn create_within(conn: &mut PgConnection, new: &NewTask, step_names: &[String]) -> Result<i64> {
    let mut new = new.clone();
    if let Some(host) = serving_host(conn, &new)? {
        let labels = Labels::from_key(&new.runs_on).map_err(|e| Error::Corrupt(e.to_string()))?;
        new.runs_on = labels.with_host(&host).key();
    }
    let id: i64 = diesel::insert_into(tasks::table)
        .values(&new)
        .returning(tasks::id)
        .get_result(conn)?;
    if let Some(at) = new.committed_at {
        record_commit_time(conn, id, at)?;
    }
    insert_steps(conn, id, step_names)?;
    outbox::push(conn, id)?;
    events::emit(
        conn,
        &Event {
            kind: "task_created",
            workflow_id: new.workflow_id,
            task_id: Some(id),
            summary: format!("task {id} queued"),
            ..Event::default()
        },
    )?;
    Ok(id)
}

/// Creates pending tasks as [`create_within`] does, each with its steps,
/// commit time, outbox entry and `task_created` event, in a few statements
/// for them all (the caller holds the transaction); their ids, in order.
pub fn create_many(conn: &mut PgConnection, tasks: &[(NewTask, Vec<String>)]) -> Result<Vec<i64>> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let mut hosts: HashMap<(i64, Option<i64>), Option<String>> = HashMap::new();
    let mut rows = Vec::with_capacity(tasks.len());
    for (new, _) in tasks {
        let mut new = new.clone();
        let key = (new.workflow_id, new.deployment_id);
        let host = match hosts.get(&key) {
            Some(host) => host.clone(),
            None => {
                let host = serving_host(conn, &new)?;
                hosts.insert(key, host.clone());
                host
            }
        };
        if let Some(host) = host {
            let labels =
                Labels::from_key(&new.runs_on).map_err(|e| Error::Corrupt(e.to_string()))?;
            new.runs_on = labels.with_host(&host).key();
        }
        rows.push(new);
    }
    // Rows come back in the order of their values.
    let ids: Vec<i64> = diesel::insert_into(tasks::table)
        .values(&rows)
        .returning(tasks::id)
        .get_results(conn)?;
    if ids.len() != rows.len() {
        return Err(Error::Corrupt(format!(
            "{} tasks inserted, {} ids returned",
            rows.len(),
            ids.len()
        )));
    }
    let commits: Vec<_> = rows
        .iter()
        .zip(&ids)
        .filter_map(|(new, id)| {
            new.committed_at.map(|at| {
                (
                    task_commits::task_id.eq(*id),
                    task_commits::committed_at.eq(at),
                )
            })
        })
        .collect();
    if !commits.is_empty() {
        diesel::insert_into(task_commits::table)
            .values(commits)
            .on_conflict_do_nothing()
            .execute(conn)?;
    }
    let steps: Vec<_> = tasks
        .iter()
        .zip(&ids)
        .flat_map(|((_, names), id)| {
            names.iter().enumerate().map(move |(position, name)| {
                (
                    steps::task_id.eq(*id),
                    steps::position.eq(i32::try_from(position).unwrap_or(i32::MAX)),
                    steps::name.eq(name),
                    steps::status.eq(StepStatus::Pending.as_str()),
                )
            })
        })
        .collect();
    if !steps.is_empty() {
        diesel::insert_into(steps::table)
            .values(steps)
            .execute(conn)?;
    }
    outbox::push_many(conn, &ids)?;
    let created: Vec<(i64, i64, Option<&str>)> = rows
        .iter()
        .zip(&ids)
        .map(|(new, id)| (*id, new.workflow_id, new.branch.as_deref()))
        .collect();
    events::tasks_created(conn, &created)?;
    Ok(ids)
}

/// The one host serving the routed environments `new` deploys to, if any.
fn serving_host(conn: &mut PgConnection, new: &NewTask) -> Result<Option<String>> {
    use crate::schema::{deployments, environments};
    let environment = match new.deployment_id {
        Some(id) => Some(
            deployments::table
                .find(id)
                .select(deployments::environment)
                .first::<String>(conn)?,
        ),
        None => None,
    };
    let mut query = environments::table
        .inner_join(
            deployments::table
                .on(environments::serving_deployment_id.eq(deployments::id.nullable())),
        )
        .filter(environments::workflow_id.eq(new.workflow_id))
        .filter(deployments::host.is_not_null())
        .select(deployments::host.assume_not_null())
        .distinct()
        .into_boxed();
    if let Some(environment) = environment {
        query = query.filter(environments::name.eq(environment));
    }
    let hosts: Vec<String> = query.load(conn)?;
    Ok(match hosts.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    })
}

fn insert_steps(conn: &mut PgConnection, task_id: i64, names: &[String]) -> Result<()> {
    let rows: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(position, name)| {
            (
                steps::task_id.eq(task_id),
                steps::position.eq(i32::try_from(position).unwrap_or(i32::MAX)),
                steps::name.eq(name),
                steps::status.eq(StepStatus::Pending.as_str()),
            )
        })
        .collect();
    diesel::insert_into(steps::table)
        .values(rows)
        .execute(conn)?;
    Ok(())
}

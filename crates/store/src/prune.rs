//! Retention (workflow.md, "Caches and retention"): deleting a workflow's
//! finished tasks that are past both of its limits, with their steps, logs,
//! events, alerts, deliveries, commit statuses and deployments, one small
//! transaction per batch so nothing else waits on the pruner for long.
//!
//! What a rollback or a delivery in flight may still need is never pruned:
//! the tasks (build and carrier) of every environment's current, previous
//! and serving deployment, tasks with a deployment not finished, and tasks
//! whose events are not yet published (or were published within the
//! retention), or whose deliveries or commit statuses are still pending.
//! The registry manifests of pruned tasks' images that nothing retained
//! uses are queued in `image_deletions` for a runner to delete.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};

use domain::image::ImageRef;

use crate::Result;
use crate::schema::{
    alerts, commit_statuses, deliveries, deployments, events, image_deletions, log_chunks, outbox,
    rollbacks, steps, tasks, workflow_versions, workflows,
};

/// The limits of one workflow's retention in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Tasks finished longer ago than this many days may go...
    pub days: u32,
    /// ...unless they are among the workflow's newest `keep_last`.
    pub keep_last: u32,
}

/// Rows one pruning removed, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub tasks: i64,
    pub steps: i64,
    pub log_chunks: i64,
    /// The bytes of the log chunks removed.
    pub log_bytes: i64,
    pub events: i64,
    pub alerts: i64,
    pub deliveries: i64,
    pub commit_statuses: i64,
    pub deployments: i64,
    pub rollbacks: i64,
    /// Registry manifests queued for deletion.
    pub images: i64,
}

impl Pruned {
    /// The row counts by kind, as the metrics name them (images are
    /// counted when a runner deleted them, not here).
    pub fn by_kind(&self) -> [(&'static str, i64); 9] {
        [
            ("tasks", self.tasks),
            ("steps", self.steps),
            ("log_chunks", self.log_chunks),
            ("events", self.events),
            ("alerts", self.alerts),
            ("deliveries", self.deliveries),
            ("commit_statuses", self.commit_statuses),
            ("deployments", self.deployments),
            ("rollbacks", self.rollbacks),
        ]
    }

    fn add(&mut self, other: &Pruned) {
        self.tasks += other.tasks;
        self.steps += other.steps;
        self.log_chunks += other.log_chunks;
        self.log_bytes += other.log_bytes;
        self.events += other.events;
        self.alerts += other.alerts;
        self.deliveries += other.deliveries;
        self.commit_statuses += other.commit_statuses;
        self.deployments += other.deployments;
        self.rollbacks += other.rollbacks;
        self.images += other.images;
    }

    /// The sum of `batches`.
    pub fn total<'a>(batches: impl IntoIterator<Item = &'a Pruned>) -> Pruned {
        let mut sum = Pruned::default();
        for b in batches {
            sum.add(b);
        }
        sum
    }
}

/// One batch to prune.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub workflow_id: i64,
    pub limits: Limits,
    /// The time the limits are measured from.
    pub now: DateTime<Utc>,
    /// When the pass this batch belongs to began: the workflow's last
    /// pruning figures add up the batches of one pass.
    pub pass_started: DateTime<Utc>,
    /// Only tasks with a larger id: where the previous batch of the pass
    /// stopped.
    pub after: i64,
    /// At most this many tasks (besides the deploy-only tasks that carried
    /// out their deployments, which go with them).
    pub size: i64,
    /// Queue the registry manifests of pruned images for deletion
    /// (`SLIPWAY_REGISTRY_DELETE`).
    pub delete_images: bool,
}

/// What a batch did, and where the next one starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Done {
    pub pruned: Pruned,
    /// `Some(id)`: the batch was full, the next starts after `id`;
    /// `None`: the workflow has nothing more to prune in this pass.
    pub next: Option<i64>,
}

/// Every workflow, deleted ones too (their history would otherwise grow
/// forever), with its latest version and that version's definition.
pub fn workflows(conn: &mut PgConnection) -> Result<Vec<(i64, i32, String)>> {
    Ok(workflows::table
        .inner_join(
            workflow_versions::table.on(workflow_versions::workflow_id
                .eq(workflows::id)
                .and(workflow_versions::version.eq(workflows::version))),
        )
        .order(workflows::id.asc())
        .select((
            workflows::id,
            workflows::version,
            workflow_versions::definition,
        ))
        .load(conn)?)
}

/// Finished, older than the cutoff (`$3`), everything about it published
/// before the cutoff and nothing left to send: the conditions on a task
/// `a` itself.
fn settled(a: &str) -> String {
    format!(
        "{a}.status IN ('success', 'failed', 'cancelled')
         AND COALESCE({a}.finished_at, {a}.created_at) < $3
         AND NOT EXISTS (SELECT 1 FROM events ev WHERE ev.task_id = {a}.id
                         AND (ev.published_at IS NULL OR ev.published_at >= $3))
         AND NOT EXISTS (SELECT 1 FROM events ev
                         JOIN alerts al ON al.event_id = ev.id
                         JOIN deliveries dl ON dl.alert_id = al.id
                         WHERE ev.task_id = {a}.id AND dl.status = 'pending')
         AND NOT EXISTS (SELECT 1 FROM commit_statuses cs
                         WHERE cs.task_id = {a}.id AND cs.status = 'pending')"
    )
}

/// A deployment `d` that a rollback or a deploy under way needs: unfinished,
/// or current, previous or serving on its environment.
const NEEDED_DEPLOYMENT: &str = "(d.status IN ('pending', 'awaiting_approval', 'deploying', 'verifying')
     OR EXISTS (SELECT 1 FROM environments e
                WHERE d.id IN (e.current_deployment_id, e.previous_deployment_id, e.serving_deployment_id)))";

/// The tasks of workflow `$1` after id `$2` that may go, oldest first, at
/// most `$5`, locked (rows another transaction holds are left for later).
/// `$4` is `keep_last`: only tasks at or below the id of the newest task
/// not among the newest `keep_last` qualify. A build task goes only with
/// the deploy-only tasks that carried out its deployments, so each of those
/// must qualify too.
fn candidates_sql() -> String {
    format!(
        "WITH boundary AS (
             SELECT id FROM tasks WHERE workflow_id = $1 ORDER BY id DESC OFFSET $4 LIMIT 1
         )
         SELECT t.id FROM tasks t
         WHERE t.workflow_id = $1 AND t.id > $2
           AND t.id <= (SELECT id FROM boundary)
           AND {settled_t}
           AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.task_id = t.id AND {NEEDED_DEPLOYMENT})
           AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.id = t.deployment_id AND {NEEDED_DEPLOYMENT})
           AND NOT EXISTS (
               SELECT 1 FROM deployments d JOIN tasks c ON c.deployment_id = d.id
               WHERE d.task_id = t.id
                 AND NOT (c.workflow_id = $1 AND c.id <= (SELECT id FROM boundary) AND {settled_c}))
         ORDER BY t.id
         LIMIT $5
         FOR UPDATE OF t SKIP LOCKED",
        settled_t = settled("t"),
        settled_c = settled("c"),
    )
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct Sum {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Prunes one batch of a workflow's tasks in one transaction; records the
/// figures on the workflow when it removed any.
pub fn batch(conn: &mut PgConnection, b: &Batch) -> Result<Done> {
    let Some(cutoff) = chrono::Duration::try_days(i64::from(b.limits.days))
        .and_then(|days| b.now.checked_sub_signed(days))
    else {
        // Further back than time goes: nothing is that old.
        return Ok(Done::default());
    };
    conn.transaction(|conn| {
        // Never queue behind another writer: whatever waits is left for
        // the next pass.
        diesel::sql_query("SET LOCAL lock_timeout = '2s'").execute(conn)?;
        let found: Vec<Id> = diesel::sql_query(candidates_sql())
            .bind::<BigInt, _>(b.workflow_id)
            .bind::<BigInt, _>(b.after)
            .bind::<Timestamptz, _>(cutoff)
            .bind::<BigInt, _>(i64::from(b.limits.keep_last))
            .bind::<BigInt, _>(b.size)
            .load(conn)?;
        let next = (i64::try_from(found.len()).unwrap_or(i64::MAX) >= b.size)
            .then(|| found.iter().map(|f| f.id).max())
            .flatten();
        let mut ids: Vec<i64> = found.iter().map(|f| f.id).collect();
        if ids.is_empty() {
            return Ok(Done {
                pruned: Pruned::default(),
                next,
            });
        }
        // The deploy-only tasks that carried out these tasks' deployments
        // go with them (the candidates' query checked they may).
        let carriers: Vec<i64> = tasks::table
            .inner_join(deployments::table.on(tasks::deployment_id.eq(deployments::id.nullable())))
            .filter(deployments::task_id.eq_any(&ids))
            .select(tasks::id)
            .load(conn)?;
        ids.extend(carriers);
        ids.sort_unstable();
        ids.dedup();
        let images = if b.delete_images {
            pushed_images(conn, &ids)?
        } else {
            Vec::new()
        };
        let mut pruned = delete(conn, &ids)?;
        pruned.images = queue_images(conn, b.workflow_id, &images)?;
        record(conn, b, &pruned)?;
        Ok(Done { pruned, next })
    })
}

/// The images of these tasks (about to be deleted) that Slipway pushed:
/// external CI pushed a `workflow_run` task's, and a pull request's was
/// never pushed. `(repository, digest)`.
fn pushed_images(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<(String, String)>> {
    let rows: Vec<(Option<String>, Option<String>)> = tasks::table
        .filter(tasks::id.eq_any(ids))
        .filter(tasks::image_digest.is_not_null())
        .filter(tasks::trigger.ne_all(["workflow_run", "pull_request"]))
        .select((tasks::image_reference, tasks::image_digest))
        .load(conn)?;
    let mut images: Vec<(String, String)> = rows
        .into_iter()
        .filter_map(|(reference, digest)| {
            let image = ImageRef::parse(reference.as_deref()?).ok()?;
            // A registry's API only: Docker Hub's images are not ours.
            image.registry.as_ref()?;
            Some((image.repository(), digest?))
        })
        .collect();
    images.sort();
    images.dedup();
    Ok(images)
}

/// Deletes the tasks `ids` and everything hanging off them; returns the
/// counts.
fn delete(conn: &mut PgConnection, ids: &[i64]) -> Result<Pruned> {
    let deployment_ids: Vec<i64> = deployments::table
        .filter(deployments::task_id.eq_any(ids))
        .select(deployments::id)
        .load(conn)?;
    let event_ids: Vec<String> = events::table
        .filter(
            events::task_id
                .eq_any(ids.iter().copied().map(Some).collect::<Vec<_>>())
                .or(events::deployment_id
                    .eq_any(deployment_ids.iter().copied().map(Some).collect::<Vec<_>>())),
        )
        .select(events::id)
        .load(conn)?;
    let alert_ids: Vec<i64> = alerts::table
        .filter(alerts::event_id.eq_any(&event_ids))
        .select(alerts::id)
        .load(conn)?;
    let log_bytes: Sum = diesel::sql_query(
        "SELECT COALESCE(sum(octet_length(data)), 0)::bigint AS n FROM log_chunks WHERE task_id = ANY($1)",
    )
    .bind::<diesel::sql_types::Array<BigInt>, _>(ids)
    .get_result(conn)?;
    let n = |rows: usize| i64::try_from(rows).unwrap_or(i64::MAX);
    let mut pruned = Pruned {
        log_bytes: log_bytes.n,
        ..Pruned::default()
    };
    pruned.deliveries = n(diesel::delete(
        deliveries::table.filter(deliveries::alert_id.eq_any(&alert_ids)),
    )
    .execute(conn)?);
    pruned.alerts =
        n(diesel::delete(alerts::table.filter(alerts::id.eq_any(&alert_ids))).execute(conn)?);
    pruned.commit_statuses = n(diesel::delete(
        commit_statuses::table.filter(
            commit_statuses::event_id
                .eq_any(&event_ids)
                .or(commit_statuses::task_id.eq_any(ids)),
        ),
    )
    .execute(conn)?);
    pruned.events =
        n(diesel::delete(events::table.filter(events::id.eq_any(&event_ids))).execute(conn)?);
    let nullable: Vec<Option<i64>> = deployment_ids.iter().copied().map(Some).collect();
    pruned.rollbacks = n(diesel::delete(
        rollbacks::table.filter(
            rollbacks::deployment_id
                .eq_any(&nullable)
                .or(rollbacks::via_deployment_id.eq_any(&nullable)),
        ),
    )
    .execute(conn)?);
    // The deploy-only tasks of these deployments are among `ids`: they let
    // go of them first.
    diesel::update(tasks::table.filter(tasks::id.eq_any(ids)))
        .set(tasks::deployment_id.eq(None::<i64>))
        .execute(conn)?;
    pruned.deployments = n(diesel::delete(
        deployments::table.filter(deployments::id.eq_any(&deployment_ids)),
    )
    .execute(conn)?);
    pruned.log_chunks = n(diesel::delete(
        log_chunks::table.filter(log_chunks::task_id.eq_any(ids)),
    )
    .execute(conn)?);
    pruned.steps =
        n(diesel::delete(steps::table.filter(steps::task_id.eq_any(ids))).execute(conn)?);
    diesel::delete(outbox::table.filter(outbox::task_id.eq_any(ids))).execute(conn)?;
    pruned.tasks = n(diesel::delete(tasks::table.filter(tasks::id.eq_any(ids))).execute(conn)?);
    Ok(pruned)
}

/// Queues for deletion the manifests among `images` (of tasks just
/// deleted) that no task or deployment left uses; returns how many were
/// queued. The same digest may serve several tasks (a rebuild with every
/// layer cached): one still retained keeps it.
fn queue_images(
    conn: &mut PgConnection,
    workflow_id: i64,
    images: &[(String, String)],
) -> Result<i64> {
    let mut queued = 0;
    for (repository, digest) in images {
        if crate::image_deletions::in_use(conn, digest)? {
            continue;
        }
        let added = diesel::insert_into(image_deletions::table)
            .values((
                image_deletions::workflow_id.eq(workflow_id),
                image_deletions::repository.eq(repository),
                image_deletions::digest.eq(digest),
            ))
            .on_conflict_do_nothing()
            .execute(conn)?;
        queued += i64::try_from(added).unwrap_or(0);
    }
    Ok(queued)
}

/// Records a batch's figures on its workflow: the first batch of a pass
/// replaces the last pruning's, later ones add to them.
fn record(conn: &mut PgConnection, b: &Batch, pruned: &Pruned) -> Result<()> {
    if pruned.tasks == 0 {
        return Ok(());
    }
    diesel::sql_query(
        "UPDATE workflows SET
             last_pruned_tasks = CASE WHEN last_pruned_at >= $2 THEN last_pruned_tasks + $4 ELSE $4 END,
             last_pruned_log_bytes = CASE WHEN last_pruned_at >= $2 THEN last_pruned_log_bytes + $5 ELSE $5 END,
             last_pruned_images = CASE WHEN last_pruned_at >= $2 THEN last_pruned_images + $6 ELSE $6 END,
             last_pruned_at = $3
         WHERE id = $1",
    )
    .bind::<BigInt, _>(b.workflow_id)
    .bind::<Timestamptz, _>(b.pass_started)
    .bind::<Timestamptz, _>(b.now)
    .bind::<BigInt, _>(pruned.tasks)
    .bind::<BigInt, _>(pruned.log_bytes)
    .bind::<BigInt, _>(pruned.images)
    .execute(conn)?;
    Ok(())
}

/// A workflow's last pruning that removed anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = workflows)]
pub struct LastPruned {
    #[diesel(column_name = last_pruned_at)]
    pub at: Option<DateTime<Utc>>,
    #[diesel(column_name = last_pruned_tasks)]
    pub tasks: i64,
    #[diesel(column_name = last_pruned_log_bytes)]
    pub log_bytes: i64,
    #[diesel(column_name = last_pruned_images)]
    pub images: i64,
}

/// The last pruning of workflow `id`.
pub fn last_pruned(conn: &mut PgConnection, id: i64) -> Result<LastPruned> {
    workflows::table
        .find(id)
        .select(LastPruned::as_select())
        .first(conn)
        .optional()?
        .ok_or(crate::Error::NotFound)
}

/// The bytes of every task log stored (the log chunks' data): a scan of
/// the table, for the pruner to measure after its pass rather than for
/// every scrape.
pub fn log_bytes(conn: &mut PgConnection) -> Result<i64> {
    let sum: Sum = diesel::sql_query(
        "SELECT COALESCE(sum(octet_length(data)), 0)::bigint AS n FROM log_chunks",
    )
    .get_result(conn)?;
    Ok(sum.n)
}

//! The overview and a workflow's figures (api.md, "Insights"): the store
//! computes them, this module lays them over each workflow's definition
//! (its environments are listed even before their first deploy) and
//! derives the rates.

use std::collections::HashMap;

use chrono::{Duration, Utc};
use domain::workflow::Workflow;
use proto::{ApiError, ErrorCode};
use store::insights::{EnvironmentFigures, EnvironmentNow, Figures, LastTask};
use store::workflows::WorkflowRow;

use super::App;
use super::deploys::LOCAL_HOST;

/// The period `GET /api/workflows/{id}/stats` covers when it names none.
pub const DEFAULT_DAYS: i32 = 30;
/// The longest period it covers.
pub const MAX_DAYS: i32 = 365;

/// A workflow in the overview.
#[derive(Debug)]
pub struct WorkflowNow {
    pub workflow: WorkflowRow,
    pub last_task: Option<LastTask>,
    pub environments: Vec<EnvironmentView>,
}

/// An environment in the overview: its definition's name, what runs
/// there (`None`: nothing yet) and where it is served.
#[derive(Debug)]
pub struct EnvironmentView {
    pub name: String,
    pub now: Option<EnvironmentNow>,
    pub url: Option<String>,
}

/// A workflow's figures over `days`, with every environment of its
/// definition.
#[derive(Debug)]
pub struct Stats {
    pub workflow_id: i64,
    pub days: i32,
    pub figures: Figures,
}

impl Stats {
    /// Succeeded over finished builds.
    pub fn success_rate(&self) -> Option<f64> {
        let t = &self.figures.tasks;
        let finished = t.succeeded + t.failed + t.cancelled;
        ratio(t.succeeded, finished)
    }

    pub fn deploys_per_day(&self, env: &EnvironmentFigures) -> f64 {
        env.deploys as f64 / f64::from(self.days)
    }

    pub fn change_failure_rate(env: &EnvironmentFigures) -> Option<f64> {
        ratio(env.failed, env.deploys)
    }
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl App {
    /// Every live workflow with its newest task and its environments.
    pub async fn overview(&self) -> Result<Vec<WorkflowNow>, ApiError> {
        let (workflows, last_tasks, environments) = self
            .db("overview", |conn| {
                let workflows = store::workflows::live_with_definitions(conn)?;
                let ids: Vec<i64> = workflows.iter().map(|(w, _)| w.id).collect();
                let last = store::insights::last_tasks(conn, &ids)?;
                let environments = store::insights::environments_now(conn, &ids)?;
                Ok((workflows, last, environments))
            })
            .await?;
        let mut last_tasks: HashMap<i64, LastTask> =
            last_tasks.into_iter().map(|t| (t.workflow_id, t)).collect();
        let mut by_workflow: HashMap<i64, Vec<EnvironmentNow>> = HashMap::new();
        for env in environments {
            by_workflow.entry(env.workflow_id).or_default().push(env);
        }
        Ok(workflows
            .into_iter()
            .map(|(workflow, definition)| {
                // A definition that no longer parses still shows what runs.
                let spec = self
                    .spec(workflow.id, workflow.version, &definition)
                    .inspect_err(|e| tracing::warn!(workflow = %workflow.name, error = %e.message, "stored definition no longer parses"))
                    .ok();
                let rows = by_workflow.remove(&workflow.id).unwrap_or_default();
                WorkflowNow {
                    last_task: last_tasks.remove(&workflow.id),
                    environments: environments_of(spec.as_deref(), rows),
                    workflow,
                }
            })
            .collect())
    }

    /// The figures of `workflow_id` over its last `days` (1..=365, default 30).
    pub async fn workflow_stats(
        &self,
        workflow_id: i64,
        days: Option<i32>,
    ) -> Result<Stats, ApiError> {
        let days = days.unwrap_or(DEFAULT_DAYS);
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("days must be between 1 and {MAX_DAYS}"),
            ));
        }
        let since = Utc::now() - Duration::days(i64::from(days));
        let what = format!("workflow {workflow_id}");
        let (workflow, definition) = self
            .db(&what, move |conn| {
                let workflow = store::workflows::live(conn, workflow_id)?;
                let definition = store::workflows::definition(conn, workflow_id, workflow.version)?;
                Ok((workflow, definition))
            })
            .await?;
        // The builds' scan is most of the time: the deploys are read beside it.
        let (builds, deploys) = tokio::try_join!(
            self.db(&what, move |conn| store::insights::builds(
                conn,
                workflow_id,
                since
            )),
            self.db(&what, move |conn| store::insights::deploys(
                conn,
                workflow_id,
                since
            )),
        )?;
        let mut figures = store::insights::assemble(builds, deploys);
        if let Ok(spec) = self.spec(workflow_id, workflow.version, &definition) {
            figures.environments = in_definition_order(&spec, figures.environments);
        }
        Ok(Stats {
            workflow_id,
            days,
            figures,
        })
    }
}

/// The definition's environments in order, each with its row when it has
/// one, then the rows of environments the definition no longer names.
fn environments_of(spec: Option<&Workflow>, rows: Vec<EnvironmentNow>) -> Vec<EnvironmentView> {
    let mut rows: Vec<Option<EnvironmentNow>> = rows.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for deploy in spec.map(|s| s.deploy.as_slice()).unwrap_or_default() {
        let name = deploy.environment.as_str();
        let now = rows
            .iter_mut()
            .find(|r| r.as_ref().is_some_and(|r| r.environment == name))
            .and_then(Option::take);
        let url = match (&deploy.route, &deploy.health) {
            (Some(route), _) => {
                let host = now.as_ref().and_then(|n| n.host.as_deref());
                Some(route.url(host.unwrap_or(LOCAL_HOST)))
            }
            (None, Some(health)) => health.url.clone(),
            (None, None) => None,
        };
        out.push(EnvironmentView {
            name: name.to_owned(),
            now,
            url,
        });
    }
    out.extend(rows.into_iter().flatten().map(|now| EnvironmentView {
        name: now.environment.clone(),
        now: Some(now),
        url: None,
    }));
    out
}

/// Figures in the order of the definition's environments, with zeros for
/// one without deploys, then the others.
fn in_definition_order(
    spec: &Workflow,
    mut figures: Vec<EnvironmentFigures>,
) -> Vec<EnvironmentFigures> {
    let mut out = Vec::new();
    for deploy in &spec.deploy {
        let name = deploy.environment.as_str();
        match figures.iter().position(|f| f.environment == name) {
            Some(at) => out.push(figures.remove(at)),
            None => out.push(EnvironmentFigures {
                environment: name.to_owned(),
                ..EnvironmentFigures::default()
            }),
        }
    }
    out.append(&mut figures);
    out
}

//! The front page (the overview: every workflow by environment, what runs
//! there, its health, what waits for approval, the last task) and each
//! workflow's insights page (its delivery figures as charts).

use actix_web::HttpResponse;
use actix_web::web::{Data, Path, Query};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::charts::{self, Days};
use super::image::ImageView;
use super::time::Stamp;
use super::view::{short, subject};
use super::{Layout, PageError, Session, render};
use crate::State;
use crate::api::id;
use crate::json::{EnvironmentOverview, WorkflowOverview, WorkflowStats, percent, span};

/// The periods the insights page offers, in days.
const PERIODS: [i32; 4] = [7, 30, 90, 365];

/// A time for a `<time>` element; `None` when unknown.
fn stamp(ts: &Option<String>) -> Option<Stamp> {
    Some(Stamp::of(ts)).filter(|s| !s.is_empty())
}

/// What an environment of a workflow shows on the front page.
pub struct EnvCell {
    pub environment: String,
    /// Nothing deployed yet.
    pub never: bool,
    pub commit: String,
    /// The image's tag, else the commit; and its short digest.
    pub version: String,
    pub digest: String,
    /// The whole image reference, for the title.
    pub image: String,
    pub subject: String,
    pub author: String,
    pub deployed: Option<Stamp>,
    /// up | down | unknown.
    pub health: String,
    /// The newest deploy's state, when it is not what runs (a deploy
    /// under way, waiting, failed...).
    pub latest: String,
    pub url: String,
    pub task_id: Option<i64>,
    /// The newest deploy waiting for approval: its task and commit.
    pub awaiting: Option<(i64, String)>,
}

impl From<&EnvironmentOverview> for EnvCell {
    fn from(e: &EnvironmentOverview) -> Self {
        let latest = e.status.clone().unwrap_or_default();
        let image = e.image.as_deref().map(ImageView::parse).unwrap_or_default();
        EnvCell {
            environment: e.environment.clone(),
            never: e.deployment_id.is_none(),
            commit: short(&e.commit),
            version: image.version(e.commit.as_deref()),
            digest: image.digest.clone(),
            image: image.full.clone(),
            subject: subject(&e.message),
            author: e.author.clone().unwrap_or_default(),
            deployed: stamp(&e.deployed_at),
            health: e.health.clone(),
            latest: if latest == "succeeded" {
                String::new()
            } else {
                latest
            },
            url: e.url.clone().unwrap_or_default(),
            task_id: e.task_id,
            awaiting: e
                .awaiting_approval
                .as_ref()
                .and_then(|a| Some((a.task_id?, short(&a.commit)))),
        }
    }
}

pub struct LastCell {
    pub id: i64,
    pub status: String,
    pub trigger: String,
    pub branch: String,
    pub subject: String,
    pub created: Option<Stamp>,
}

pub struct OverviewRow {
    pub workflow_id: i64,
    pub workflow: String,
    pub last: Option<LastCell>,
    /// One per column of the page; `None` where the workflow has no such
    /// environment.
    pub cells: Vec<Option<EnvCell>>,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub layout: Layout,
    /// Every environment name, in the order the workflows define them.
    pub columns: Vec<String>,
    pub rows: Vec<OverviewRow>,
    pub awaiting: usize,
}

impl OverviewPage {
    pub fn new(layout: Layout, workflows: &[WorkflowOverview]) -> Self {
        let mut columns: Vec<String> = Vec::new();
        for w in workflows {
            for e in &w.environments {
                if !columns.contains(&e.environment) {
                    columns.push(e.environment.clone());
                }
            }
        }
        let rows: Vec<OverviewRow> = workflows
            .iter()
            .map(|w| OverviewRow {
                workflow_id: w.workflow_id,
                workflow: w.workflow.clone(),
                last: w.last_task.as_ref().map(|t| LastCell {
                    id: t.id,
                    status: t.status.clone(),
                    trigger: t.trigger.clone(),
                    branch: t.branch.clone().unwrap_or_default(),
                    subject: subject(&t.message),
                    created: stamp(&t.created_at),
                }),
                cells: columns
                    .iter()
                    .map(|c| {
                        w.environments
                            .iter()
                            .find(|e| &e.environment == c)
                            .map(EnvCell::from)
                    })
                    .collect(),
            })
            .collect();
        let awaiting = rows
            .iter()
            .flat_map(|r| r.cells.iter().flatten())
            .filter(|c| c.awaiting.is_some())
            .count();
        OverviewPage {
            layout,
            columns,
            rows,
            awaiting,
        }
    }
}

pub async fn overview_page(
    state: Data<State>,
    session: Session,
) -> Result<HttpResponse, PageError> {
    let workflows: Vec<WorkflowOverview> = state
        .client()
        .get_overview(proto::Empty {})
        .await?
        .into_inner()
        .workflows
        .into_iter()
        .map(WorkflowOverview::from)
        .collect();
    let layout = Layout::load(&state, &session).await;
    let flash = !layout.flash.is_empty();
    render(&OverviewPage::new(layout, &workflows), flash)
}

/// A figure as the page shows it.
pub struct Figure {
    pub label: &'static str,
    pub value: String,
}

/// One environment's row of figures.
pub struct EnvFigures {
    pub environment: String,
    pub colour: String,
    pub deploys: i64,
    pub per_day: String,
    pub change_failure: String,
    pub lead_time: String,
    pub mttr: String,
    pub rollbacks: i64,
}

#[derive(Template)]
#[template(path = "insights.html")]
pub struct InsightsPage {
    pub layout: Layout,
    pub workflow_id: i64,
    pub workflow: String,
    pub days: i32,
    pub periods: Vec<i32>,
    pub figures: Vec<Figure>,
    pub environments: Vec<EnvFigures>,
    pub durations_svg: String,
    pub success_svg: String,
    pub deploys_svg: String,
    pub change_failure_svg: String,
    pub lead_time_svg: String,
    pub mttr_svg: String,
}

impl InsightsPage {
    pub fn new(layout: Layout, workflow: String, stats: &WorkflowStats) -> Self {
        let t = &stats.tasks;
        let figures = vec![
            Figure {
                label: "Builds",
                value: t.total.to_string(),
            },
            Figure {
                label: "Success rate",
                value: percent(t.success_rate),
            },
            Figure {
                label: "Duration p50",
                value: span(t.duration_p50_s),
            },
            Figure {
                label: "Duration p90",
                value: span(t.duration_p90_s),
            },
            Figure {
                label: "Queued p50",
                value: span(t.queued_p50_s),
            },
        ];
        let environments: Vec<EnvFigures> = stats
            .environments
            .iter()
            .enumerate()
            .map(|(i, e)| EnvFigures {
                environment: e.environment.clone(),
                colour: charts::colour(i),
                deploys: e.deploys,
                per_day: format!("{:.2}", e.deploys_per_day),
                change_failure: percent(e.change_failure_rate),
                lead_time: span(e.lead_time_p50_s),
                mttr: span(e.mttr_s),
                rollbacks: e.rollbacks,
            })
            .collect();
        let names: Vec<String> = stats
            .environments
            .iter()
            .map(|e| e.environment.clone())
            .collect();
        let days = Days::new(Utc::now().date_naive(), stats.days, &stats.daily);
        InsightsPage {
            layout,
            workflow_id: stats.workflow_id,
            workflow,
            days: stats.days,
            periods: PERIODS.to_vec(),
            figures,
            environments,
            durations_svg: charts::durations(&days),
            success_svg: charts::success(&days),
            deploys_svg: charts::deploys(&days, &names),
            change_failure_svg: charts::per_environment(
                &stats.environments,
                |e| e.change_failure_rate,
                |v| format!("{:.0}%", v * 100.0),
            ),
            lead_time_svg: charts::per_environment(
                &stats.environments,
                |e| e.lead_time_p50_s,
                |v| span(Some(v)),
            ),
            mttr_svg: charts::per_environment(&stats.environments, |e| e.mttr_s, |v| span(Some(v))),
        }
    }
}

#[derive(Deserialize)]
pub struct InsightsQuery {
    days: Option<i32>,
}

pub async fn insights_page(
    state: Data<State>,
    session: Session,
    path: Path<String>,
    query: Query<InsightsQuery>,
) -> Result<HttpResponse, PageError> {
    let workflow_id = id(&path.into_inner(), "workflow")?;
    let mut client = state.client();
    let workflow = client
        .get_workflow(proto::GetWorkflowRequest { id: workflow_id })
        .await?
        .into_inner()
        .name;
    let stats = WorkflowStats::from(
        client
            .get_workflow_stats(proto::GetWorkflowStatsRequest {
                workflow_id,
                days: query.into_inner().days,
            })
            .await?
            .into_inner(),
    );
    let layout = Layout::load(&state, &session).await;
    let flash = !layout.flash.is_empty();
    render(&InsightsPage::new(layout, workflow, &stats), flash)
}

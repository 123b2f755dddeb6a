//! `/api/overview` and `/api/workflows/{id}/stats` (api.md, "Insights").

use actix_web::HttpResponse;
use actix_web::web::{Data, Path, Query};
use serde::Deserialize;

use super::path_id;
use crate::State;
use crate::error::HttpError;
use crate::json::{WorkflowOverview, WorkflowStats};

pub async fn overview(state: Data<State>) -> Result<HttpResponse, HttpError> {
    let workflows = state
        .client()
        .get_overview(proto::Empty {})
        .await?
        .into_inner()
        .workflows;
    let out: Vec<WorkflowOverview> = workflows.into_iter().map(WorkflowOverview::from).collect();
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    days: Option<i32>,
}

pub async fn stats(
    state: Data<State>,
    path: Path<String>,
    query: Query<StatsQuery>,
) -> Result<HttpResponse, HttpError> {
    let workflow_id = path_id(path, "workflow")?;
    let stats = state
        .client()
        .get_workflow_stats(proto::GetWorkflowStatsRequest {
            workflow_id,
            days: query.into_inner().days,
        })
        .await?
        .into_inner();
    Ok(HttpResponse::Ok().json(WorkflowStats::from(stats)))
}

//! `/api/alerts`: what fired, for which task or deployment, and how each
//! channel's delivery went.

use actix_web::HttpResponse;
use actix_web::web::{Data, Query};
use serde::Deserialize;

use crate::State;
use crate::error::HttpError;
use crate::json::Alert;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<i64>,
    workflow_id: Option<i64>,
    task_id: Option<i64>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub async fn list(state: Data<State>, query: Query<ListQuery>) -> Result<HttpResponse, HttpError> {
    let q = query.into_inner();
    let alerts = state
        .client()
        .list_alerts(proto::ListAlertsRequest {
            limit: q.limit,
            workflow_id: q.workflow_id,
            task_id: q.task_id,
            r#type: q.kind,
        })
        .await?
        .into_inner()
        .alerts;
    let out: Vec<Alert> = alerts.into_iter().map(Alert::from).collect();
    Ok(HttpResponse::Ok().json(out))
}

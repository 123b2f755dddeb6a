//! The alerts page: what fired, newest first, with each channel's delivery
//! and when a pending one is tried again; filtered by workflow and event
//! type (through `ListAlerts`), refreshed in place.

use actix_web::HttpResponse;
use actix_web::web::{Data, Query};
use askama::Template;
use domain::workflow::AlertEvent;
use serde::Deserialize;

use super::tasks::{Choice, workflows};
use super::view::AlertRow;
use super::{Layout, PageError, Session, fragment, render};
use crate::State;
use crate::json::Alert;

/// How many alerts the page shows.
const ALERT_PAGE: i64 = 100;

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    layout: Layout,
    rows: Vec<AlertRow>,
    workflows: Vec<Choice>,
    kinds: Vec<Choice>,
    /// Where the script fetches fresh rows (the same filters).
    src: String,
}

#[derive(Template)]
#[template(path = "alert_rows.html")]
struct Rows {
    rows: Vec<AlertRow>,
}

#[derive(Deserialize)]
pub struct AlertsQuery {
    workflow_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl AlertsQuery {
    /// The filters; an empty field (the form's "all") or an unknown type is
    /// no filter.
    fn filters(&self) -> (Option<i64>, Option<AlertEvent>) {
        let workflow = self
            .workflow_id
            .as_deref()
            .and_then(|w| w.parse::<i64>().ok());
        let kind = self
            .kind
            .as_deref()
            .and_then(|k| AlertEvent::ALL.into_iter().find(|e| e.as_str() == k));
        (workflow, kind)
    }

    fn query(&self) -> String {
        let (workflow_id, kind) = self.filters();
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(w) = workflow_id {
            q.append_pair("workflow_id", &w.to_string());
        }
        if let Some(k) = kind {
            q.append_pair("type", k.as_str());
        }
        q.finish()
    }
}

async fn list(state: &State, q: &AlertsQuery) -> Result<Vec<AlertRow>, PageError> {
    let (workflow_id, kind) = q.filters();
    let alerts = state
        .client()
        .list_alerts(proto::ListAlertsRequest {
            limit: Some(ALERT_PAGE),
            workflow_id,
            r#type: kind.map(|k| k.as_str().to_owned()),
            ..Default::default()
        })
        .await?
        .into_inner()
        .alerts;
    Ok(alerts
        .into_iter()
        .map(|a| AlertRow::from(&Alert::from(a)))
        .collect())
}

pub async fn page(
    state: Data<State>,
    session: Session,
    query: Query<AlertsQuery>,
) -> Result<HttpResponse, PageError> {
    let rows = list(&state, &query).await?;
    let (workflow_id, kind) = query.filters();
    let workflows = workflows(&state).await?;
    let layout = Layout::load(&state, &session).await;
    let flash = !layout.flash.is_empty();
    render(
        &AlertsPage {
            layout,
            rows,
            workflows: workflows
                .iter()
                .map(|w| Choice {
                    value: w.id.to_string(),
                    label: w.name.clone(),
                    selected: workflow_id == Some(w.id),
                })
                .collect(),
            kinds: AlertEvent::ALL
                .iter()
                .map(|k| Choice {
                    value: k.as_str().to_owned(),
                    label: k.as_str().to_owned(),
                    selected: kind == Some(*k),
                })
                .collect(),
            src: format!("/ui/alerts?{}", query.query()),
        },
        flash,
    )
}

pub async fn rows(
    state: Data<State>,
    _: Session,
    query: Query<AlertsQuery>,
) -> Result<HttpResponse, PageError> {
    fragment(&Rows {
        rows: list(&state, &query).await?,
    })
}

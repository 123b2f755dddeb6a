//! The approvals page: every deployment waiting for an approval, oldest
//! first, with its approve form; what the navigation's count links to.

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use actix_web::web::Data;
use askama::Template;

use super::view::{Approval, DeployRow, deploy_confirm};
use super::{Layout, PageError, Session, render};
use crate::State;
use crate::json::{Deployment, Environment};

/// One waiting deployment, with the workflow it belongs to.
struct Waiting {
    workflow: String,
    workflow_id: i64,
    approval: Approval,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage {
    layout: Layout,
    rows: Vec<Waiting>,
}

pub async fn page(state: Data<State>, session: Session) -> Result<HttpResponse, PageError> {
    let mut client = state.client();
    let waiting: Vec<Deployment> = client
        .list_deployments(proto::ListDeploymentsRequest {
            status: Some("awaiting_approval".to_owned()),
            limit: Some(500),
            ..Default::default()
        })
        .await?
        .into_inner()
        .deployments
        .into_iter()
        .map(Deployment::from)
        .collect();
    let names: BTreeMap<i64, String> = super::tasks::workflows(&state)
        .await?
        .into_iter()
        .map(|w| (w.id, w.name))
        .collect();
    // Each workflow's environments, to warn of an older version.
    let mut envs: BTreeMap<i64, Vec<Environment>> = BTreeMap::new();
    for d in &waiting {
        if envs.contains_key(&d.workflow_id) {
            continue;
        }
        let list = super::environments_or_none(&mut client, d.workflow_id).await;
        envs.insert(d.workflow_id, list);
    }
    let rows = waiting
        .iter()
        .rev()
        .filter_map(|d| {
            let row = DeployRow::from(d);
            let environments = envs.get(&d.workflow_id).map_or(&[][..], Vec::as_slice);
            let (confirm, older) =
                deploy_confirm(d.task_id?, &row.version, &d.environment, environments);
            Some(Waiting {
                workflow: names.get(&d.workflow_id).cloned().unwrap_or_default(),
                workflow_id: d.workflow_id,
                approval: Approval {
                    deployment: row,
                    confirm,
                    older,
                },
            })
        })
        .collect();
    let layout = Layout::load(&state, &session).await;
    let flash = !layout.flash.is_empty();
    render(&ApprovalsPage { layout, rows }, flash)
}

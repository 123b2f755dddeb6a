//! The workflow pages: the list with each workflow's last run, and a
//! workflow with its run form, its environments (every one of its
//! definition, with what runs there and how the latest deploy went), the
//! approvals waiting, its deploy history and rollbacks.

use actix_web::HttpResponse;
use actix_web::web::{Data, Path};
use askama::Template;
use futures_util::future::join_all;

use super::view::{Approval, DeployRow, EnvRow, RollbackRow, WorkflowRow, deploy_confirm};
use super::{Layout, PageError, Session, fragment, render};
use crate::State;
use crate::api::id;
use crate::json::{Deployment, Environment, Rollback, Task, Workflow};

/// How many deployments the history shows.
const HISTORY: i64 = 50;

#[derive(Template)]
#[template(path = "workflows.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<WorkflowRow>,
}

#[derive(Template)]
#[template(path = "workflow_rows.html")]
struct Rows {
    rows: Vec<WorkflowRow>,
}

/// Every workflow with its newest task.
async fn list(state: &State) -> Result<Vec<WorkflowRow>, PageError> {
    let workflows = super::tasks::workflows(state).await?;
    let lasts = join_all(workflows.iter().map(|w| {
        let mut client = state.client();
        let workflow_id = w.id;
        async move {
            client
                .list_tasks(proto::ListTasksRequest {
                    workflow_id: Some(workflow_id),
                    limit: Some(1),
                    ..Default::default()
                })
                .await
                .ok()
                .and_then(|r| r.into_inner().tasks.into_iter().next())
                .map(Task::from)
        }
    }))
    .await;
    Ok(workflows
        .iter()
        .zip(&lasts)
        .map(|(w, last)| WorkflowRow::new(w, last.as_ref()))
        .collect())
}

pub async fn list_page(state: Data<State>, session: Session) -> Result<HttpResponse, PageError> {
    let rows = list(&state).await?;
    let layout = Layout::load(&state, &session).await;
    let flash = !layout.flash.is_empty();
    render(&ListPage { layout, rows }, flash)
}

pub async fn rows(state: Data<State>, _: Session) -> Result<HttpResponse, PageError> {
    fragment(&Rows {
        rows: list(&state).await?,
    })
}

/// The parts of the workflow page that change as it runs and deploys.
struct Live {
    workflow_id: i64,
    environments: Vec<EnvRow>,
    awaiting: Vec<Approval>,
    history: Vec<DeployRow>,
    rollbacks: Vec<RollbackRow>,
    csrf: String,
}

#[derive(Template)]
#[template(path = "workflow.html")]
struct WorkflowPage {
    layout: Layout,
    workflow: WorkflowRow,
    definition: String,
    /// The run form's branch: the last run's, else `main`.
    branch: String,
    live: Live,
}

#[derive(Template)]
#[template(path = "workflow_live.html")]
struct LiveFragment {
    live: Live,
}

async fn live(state: &State, workflow_id: i64, csrf: String) -> Result<Live, PageError> {
    let mut client = state.client();
    let environments: Vec<Environment> = client
        .list_environments(proto::ListEnvironmentsRequest { workflow_id })
        .await?
        .into_inner()
        .environments
        .into_iter()
        .map(Environment::from)
        .collect();
    let deployments = |status: Option<&str>, limit: i64| proto::ListDeploymentsRequest {
        workflow_id: Some(workflow_id),
        limit: Some(limit),
        status: status.map(str::to_owned),
        ..Default::default()
    };
    let history: Vec<Deployment> = client
        .list_deployments(deployments(None, HISTORY))
        .await?
        .into_inner()
        .deployments
        .into_iter()
        .map(Deployment::from)
        .collect();
    let waiting: Vec<Deployment> = client
        .list_deployments(deployments(Some("awaiting_approval"), 100))
        .await?
        .into_inner()
        .deployments
        .into_iter()
        .map(Deployment::from)
        .collect();
    let rollbacks: Vec<Rollback> = client
        .list_rollbacks(proto::ListRollbacksRequest {
            workflow_id: Some(workflow_id),
            ..Default::default()
        })
        .await?
        .into_inner()
        .rollbacks
        .into_iter()
        .map(Rollback::from)
        .collect();
    Ok(Live {
        workflow_id,
        awaiting: waiting
            .iter()
            .rev()
            .filter_map(|d| {
                let row = DeployRow::from(d);
                let (confirm, older) =
                    deploy_confirm(d.task_id?, &row.version, &d.environment, &environments);
                Some(Approval {
                    deployment: row,
                    confirm,
                    older,
                })
            })
            .collect(),
        environments: environments.iter().map(EnvRow::from).collect(),
        history: history.iter().map(DeployRow::from).collect(),
        rollbacks: rollbacks.iter().map(RollbackRow::from).collect(),
        csrf,
    })
}

pub async fn page(
    state: Data<State>,
    session: Session,
    path: Path<String>,
) -> Result<HttpResponse, PageError> {
    let workflow_id = id(&path.into_inner(), "workflow")?;
    let mut client = state.client();
    let workflow = Workflow::from(
        client
            .get_workflow(proto::GetWorkflowRequest { id: workflow_id })
            .await?
            .into_inner(),
    );
    let last = client
        .list_tasks(proto::ListTasksRequest {
            workflow_id: Some(workflow_id),
            limit: Some(1),
            ..Default::default()
        })
        .await?
        .into_inner()
        .tasks
        .into_iter()
        .next()
        .map(Task::from);
    let live = live(&state, workflow_id, session.csrf()).await?;
    let layout = Layout::load(&state, &session).await;
    let flash = !layout.flash.is_empty();
    render(
        &WorkflowPage {
            layout,
            definition: workflow.definition.clone().unwrap_or_default(),
            branch: last
                .as_ref()
                .and_then(|t| t.branch.clone())
                .filter(|b| is_plain_branch(b))
                .unwrap_or_else(|| "main".to_owned()),
            workflow: WorkflowRow::new(&workflow, last.as_ref()),
            live,
        },
        flash,
    )
}

/// A fork's branch (`owner:branch`) is not one a run can check out.
fn is_plain_branch(branch: &str) -> bool {
    !branch.contains(':')
}

pub async fn live_part(
    state: Data<State>,
    session: Session,
    path: Path<String>,
) -> Result<HttpResponse, PageError> {
    let workflow_id = id(&path.into_inner(), "workflow")?;
    fragment(&LiveFragment {
        live: live(&state, workflow_id, session.csrf()).await?,
    })
}

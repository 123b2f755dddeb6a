//! One function per command: call the public API, print the answer.

use std::io::Read;
use std::path::Path;

use proto::json;
use proto::{ApiError, ErrorCode};
use serde_json::json as j;

use crate::args::{Cli, Command, Format, SecretCommand, Wait, WorkflowCommand};
use crate::client::{self, Client};
use crate::error::{Error, exit, invalid_workflow};
use crate::insights;
use crate::output::{self, fields, or_dash, short, table, time};

/// Runs the command; returns the exit code of a success (a task the
/// command waited for may have failed).
pub async fn run(cli: Cli) -> Result<u8, Error> {
    let format = cli.output;
    // Offline: no connection, so no setting of one can get in the way.
    let mut c = match &cli.command {
        Command::Validate { file } => return validate(file, format),
        _ => client::connect(
            &cli.orchestrator_url,
            cli.ca.as_deref(),
            cli.token.as_deref(),
        )?,
    };
    let c = &mut c;
    match cli.command {
        Command::Validate { file } => validate(&file, format),
        Command::Workflow(WorkflowCommand::Apply { file }) => apply(c, &file, format).await,
        Command::Workflow(WorkflowCommand::Show { workflow }) => {
            let id = client::workflow(c, &workflow).await?.id;
            let w = c
                .get_workflow(proto::GetWorkflowRequest { id })
                .await?
                .into_inner();
            output::show(format, &json::Workflow::from(w), |w| {
                w.definition.clone().unwrap_or_default()
            })?;
            Ok(exit::SUCCESS)
        }
        Command::Workflows => {
            let list: Vec<json::Workflow> = c
                .list_workflows(proto::ListWorkflowsRequest {})
                .await?
                .into_inner()
                .workflows
                .into_iter()
                .map(json::Workflow::from)
                .collect();
            output::show(format, &list, |list| workflows_table(list))?;
            Ok(exit::SUCCESS)
        }
        Command::Run(run) => {
            let workflow_id = client::workflow(c, &run.workflow).await?.id;
            let task_id = c
                .run_workflow(proto::RunWorkflowRequest {
                    workflow_id,
                    branch: run.branch,
                    commit: run.commit,
                })
                .await?
                .into_inner()
                .task_id;
            started(c, task_id, &run.wait, format).await
        }
        Command::Tasks(q) => {
            let workflow_id = client::workflow_id(c, q.workflow.as_deref()).await?;
            let tasks: Vec<json::Task> = c
                .list_tasks(proto::ListTasksRequest {
                    workflow_id,
                    status: q.status,
                    limit: q.limit,
                    before: q.before,
                })
                .await?
                .into_inner()
                .tasks
                .into_iter()
                .map(json::Task::from)
                .collect();
            output::show(format, &tasks, |tasks| tasks_table(tasks))?;
            Ok(exit::SUCCESS)
        }
        Command::Task { task } => {
            let t = get_task(c, task).await?;
            output::show(format, &t, task_detail)?;
            Ok(exit::SUCCESS)
        }
        Command::Logs(logs) => {
            if logs.follow {
                let status = client::follow(c, logs.task, true).await?;
                return ended(c, logs.task, &status, Format::Table).await;
            }
            let text = c
                .get_logs(proto::GetLogsRequest {
                    task_id: logs.task,
                    step: logs.step,
                })
                .await?
                .into_inner()
                .text;
            output::write_bytes(&mut std::io::stdout().lock(), &text)?;
            Ok(exit::SUCCESS)
        }
        Command::Retry { task, wait } => {
            let task_id = c
                .retry_task(proto::RetryTaskRequest { id: task })
                .await?
                .into_inner()
                .task_id;
            started(c, task_id, &wait, format).await
        }
        Command::Cancel { task } => {
            c.cancel_task(proto::CancelTaskRequest { id: task }).await?;
            output::show(format, &j!({ "task_id": task }), |_| {
                format!("cancelling task {task}")
            })?;
            Ok(exit::SUCCESS)
        }
        Command::Deploy {
            task,
            environment,
            wait,
        } => {
            let a = c
                .deploy_task(proto::DeployTaskRequest {
                    task_id: task,
                    environment,
                })
                .await?
                .into_inner();
            let answer = j!({"deployment_id": a.deployment_id, "task_id": a.task_id});
            carried_out(c, answer, a.task_id, &wait, format, || {
                format!("deployment {} (task {})", a.deployment_id, a.task_id)
            })
            .await
        }
        Command::Rollback {
            workflow,
            environment,
            to,
            wait,
        } => {
            let workflow_id = client::workflow(c, &workflow).await?.id;
            let a = c
                .rollback_environment(proto::RollbackEnvironmentRequest {
                    workflow_id,
                    environment,
                    deployment_id: to,
                })
                .await?
                .into_inner();
            let answer = j!({
                "rollback_id": a.rollback_id,
                "deployment_id": a.deployment_id,
                "task_id": a.task_id,
            });
            carried_out(c, answer, a.task_id, &wait, format, || {
                format!(
                    "rollback {} as deployment {} (task {})",
                    a.rollback_id, a.deployment_id, a.task_id
                )
            })
            .await
        }
        Command::Environments { workflow } => {
            let workflow_id = client::workflow(c, &workflow).await?.id;
            let envs: Vec<json::Environment> = c
                .list_environments(proto::ListEnvironmentsRequest { workflow_id })
                .await?
                .into_inner()
                .environments
                .into_iter()
                .map(json::Environment::from)
                .collect();
            output::show(format, &envs, |envs| environments_table(envs))?;
            Ok(exit::SUCCESS)
        }
        Command::Overview => {
            let list: Vec<json::WorkflowOverview> = c
                .get_overview(proto::Empty {})
                .await?
                .into_inner()
                .workflows
                .into_iter()
                .map(json::WorkflowOverview::from)
                .collect();
            output::show(format, &list, |list| insights::overview_table(list))?;
            Ok(exit::SUCCESS)
        }
        Command::Stats { workflow, days } => {
            let workflow_id = client::workflow(c, &workflow).await?.id;
            let stats = json::WorkflowStats::from(
                c.get_workflow_stats(proto::GetWorkflowStatsRequest {
                    workflow_id,
                    days: Some(days),
                })
                .await?
                .into_inner(),
            );
            output::show(format, &stats, insights::stats_text)?;
            Ok(exit::SUCCESS)
        }
        Command::Deployments(q) => {
            let workflow_id = client::workflow_id(c, q.workflow.as_deref()).await?;
            let list: Vec<json::Deployment> = c
                .list_deployments(proto::ListDeploymentsRequest {
                    workflow_id,
                    environment: q.environment,
                    limit: q.limit,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .deployments
                .into_iter()
                .map(json::Deployment::from)
                .collect();
            output::show(format, &list, |list| deployments_table(list))?;
            Ok(exit::SUCCESS)
        }
        Command::Rollbacks {
            workflow,
            environment,
        } => {
            let workflow_id = client::workflow_id(c, workflow.as_deref()).await?;
            let list: Vec<json::Rollback> = c
                .list_rollbacks(proto::ListRollbacksRequest {
                    workflow_id,
                    environment,
                })
                .await?
                .into_inner()
                .rollbacks
                .into_iter()
                .map(json::Rollback::from)
                .collect();
            output::show(format, &list, |list| rollbacks_table(list))?;
            Ok(exit::SUCCESS)
        }
        Command::Alerts {
            limit,
            workflow,
            task,
        } => {
            let workflow_id = client::workflow_id(c, workflow.as_deref()).await?;
            let list: Vec<json::Alert> = c
                .list_alerts(proto::ListAlertsRequest {
                    limit,
                    workflow_id,
                    task_id: task,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .alerts
                .into_iter()
                .map(json::Alert::from)
                .collect();
            output::show(format, &list, |list| alerts_table(list))?;
            Ok(exit::SUCCESS)
        }
        Command::Secrets { workflow } => {
            let workflow_id = client::workflow(c, &workflow).await?.id;
            let names = c
                .list_secrets(proto::ListSecretsRequest { workflow_id })
                .await?
                .into_inner()
                .names;
            output::show(format, &names, |names| names.join("\n"))?;
            Ok(exit::SUCCESS)
        }
        Command::Secret(SecretCommand::Set {
            workflow,
            name,
            value,
        }) => {
            let value = match value {
                Some(v) => v,
                None => stdin_value()?,
            };
            let w = client::workflow(c, &workflow).await?;
            c.set_secret(proto::SetSecretRequest {
                workflow_id: w.id,
                name: name.clone(),
                value,
            })
            .await?;
            output::show(format, &j!({"workflow_id": w.id, "name": name}), |_| {
                format!("secret {name} set for workflow {}", w.name)
            })?;
            Ok(exit::SUCCESS)
        }
    }
}

fn read(file: &Path) -> Result<String, Error> {
    std::fs::read_to_string(file)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", file.display())))
}

/// A secret's value from stdin, without the newline a terminal or `echo`
/// adds.
fn stdin_value() -> Result<String, Error> {
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .map_err(|e| Error::Io(format!("cannot read the secret from stdin: {e}")))?;
    let trimmed = value.strip_suffix('\n').unwrap_or(&value);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}

/// Offline: the server's parser, and its 422 answer when the file is bad.
fn validate(file: &Path, format: Format) -> Result<u8, Error> {
    let definition = read(file)?;
    let spec = domain::workflow::parse(&definition).map_err(|e| invalid_workflow(&e))?;
    let answer = j!({
        "valid": true,
        "name": spec.name.to_string(),
        "repo": spec.repo.to_string(),
        "steps": spec.steps.iter().map(|s| s.name.to_string()).collect::<Vec<_>>(),
        "environments": spec.deploy.iter().map(|d| d.environment.to_string()).collect::<Vec<_>>(),
    });
    output::show(format, &answer, |_| {
        format!(
            "{}: valid workflow {} ({} steps)",
            file.display(),
            spec.name,
            spec.steps.len()
        )
    })?;
    Ok(exit::SUCCESS)
}

/// Creates the workflow, or, when its name is taken, makes this definition
/// that workflow's new version (unless it is already its definition).
async fn apply(c: &mut Client, file: &Path, format: Format) -> Result<u8, Error> {
    let definition = read(file)?;
    let created = c
        .create_workflow(proto::CreateWorkflowRequest {
            definition: definition.clone(),
        })
        .await;
    let (verb, w) = match created {
        Ok(w) => ("created", w.into_inner()),
        Err(status) => {
            let err = ApiError::from(status);
            if err.code != ErrorCode::Conflict {
                return Err(err.into());
            }
            // The server accepted the definition up to the name: ours parses.
            let name = domain::workflow::parse(&definition)
                .map_err(|e| invalid_workflow(&e))?
                .name
                .to_string();
            let id = client::workflow(c, &name).await?.id;
            let current = c
                .get_workflow(proto::GetWorkflowRequest { id })
                .await?
                .into_inner();
            if current.definition.as_deref() == Some(definition.as_str()) {
                ("unchanged", current)
            } else {
                let w = c
                    .update_workflow(proto::UpdateWorkflowRequest { id, definition })
                    .await?
                    .into_inner();
                ("updated", w)
            }
        }
    };
    let mut w = json::Workflow::from(w);
    w.definition = None;
    output::show(format, &w, |w| {
        format!(
            "{verb} workflow {} (id {}, version {})",
            w.name, w.id, w.version
        )
    })?;
    Ok(exit::SUCCESS)
}

/// A new task: print its id, and with `--wait` follow it to its end.
async fn started(c: &mut Client, task_id: i64, wait: &Wait, format: Format) -> Result<u8, Error> {
    if !wait.wait {
        output::show(format, &j!({ "task_id": task_id }), |_| {
            format!("task {task_id}")
        })?;
        return Ok(exit::SUCCESS);
    }
    if format == Format::Table {
        output::line(&format!("task {task_id}"))?;
    }
    let status = client::follow(c, task_id, format == Format::Table).await?;
    ended(c, task_id, &status, format).await
}

/// A deploy or rollback, carried out by a deploy-only task.
async fn carried_out(
    c: &mut Client,
    answer: serde_json::Value,
    task_id: i64,
    wait: &Wait,
    format: Format,
    human: impl FnOnce() -> String,
) -> Result<u8, Error> {
    if !wait.wait {
        output::show(format, &answer, |_| human())?;
        return Ok(exit::SUCCESS);
    }
    if format == Format::Table {
        output::line(&human())?;
    }
    let status = client::follow(c, task_id, format == Format::Table).await?;
    ended(c, task_id, &status, format).await
}

/// The end of a followed task: one line on stderr (or, with `--output
/// json`, the task on stdout), and the exit code its status gives.
async fn ended(c: &mut Client, task_id: i64, status: &str, format: Format) -> Result<u8, Error> {
    let task = get_task(c, task_id).await?;
    match format {
        Format::Json => output::json(&task)?,
        Format::Table => match &task.error {
            Some(error) => eprintln!("task {task_id} {status}: {error}"),
            None => eprintln!("task {task_id} {status}"),
        },
    }
    Ok(if status == "success" {
        exit::SUCCESS
    } else {
        exit::TASK_FAILED
    })
}

async fn get_task(c: &mut Client, id: i64) -> Result<json::Task, Error> {
    let t = c.get_task(proto::GetTaskRequest { id }).await?.into_inner();
    Ok(json::Task::from(t))
}

fn workflows_table(list: &[json::Workflow]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| {
            vec![
                w.id.to_string(),
                w.name.clone(),
                w.version.to_string(),
                time(w.updated_at.as_ref()),
                w.repo.clone(),
            ]
        })
        .collect();
    table(&["ID", "NAME", "VERSION", "UPDATED", "REPO"], &rows)
}

/// Where a task was triggered: its branch or tag.
fn git_ref(t: &json::Task) -> String {
    match (&t.branch, &t.tag) {
        (_, Some(tag)) => format!("tag {tag}"),
        (Some(branch), None) => branch.clone(),
        (None, None) => "-".to_owned(),
    }
}

fn tasks_table(tasks: &[json::Task]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.workflow.clone(),
                t.status.clone(),
                t.trigger.clone(),
                git_ref(t),
                short(t.commit.as_ref()),
                time(t.created_at.as_ref()),
                or_dash(t.error.as_ref()),
            ]
        })
        .collect();
    table(
        &[
            "ID", "WORKFLOW", "STATUS", "TRIGGER", "REF", "COMMIT", "CREATED", "ERROR",
        ],
        &rows,
    )
}

fn task_detail(t: &json::Task) -> String {
    let image = t.image.as_ref().map(|i| {
        format!(
            "{}@{}",
            i["reference"].as_str().unwrap_or("-"),
            i["digest"].as_str().unwrap_or("-")
        )
    });
    let mut out = fields(&[
        ("task", Some(t.id.to_string())),
        (
            "workflow",
            Some(format!("{} (version {})", t.workflow, t.workflow_version)),
        ),
        ("status", Some(t.status.clone())),
        (
            "trigger",
            Some(format!("{} (attempt {})", t.trigger, t.attempt)),
        ),
        ("retry of", t.retry_of.map(|id| id.to_string())),
        (
            "pr",
            t.pull_request.as_ref().map(|p| {
                format!(
                    "#{} {} ({} into {}{}) {}",
                    p.number,
                    p.title,
                    p.source_branch,
                    p.target_branch,
                    if p.fork { ", from a fork" } else { "" },
                    p.url
                )
            }),
        ),
        ("ref", Some(git_ref(t))),
        ("commit", t.commit.clone()),
        (
            "message",
            t.message
                .as_ref()
                .map(|m| m.lines().next().unwrap_or("").to_owned()),
        ),
        ("author", t.author.clone()),
        ("created", Some(time(t.created_at.as_ref()))),
        ("started", t.started_at.as_ref().map(|s| time(Some(s)))),
        ("finished", t.finished_at.as_ref().map(|s| time(Some(s)))),
        ("error", t.error.clone()),
        ("image", image),
    ]);
    let steps: Vec<Vec<String>> = t
        .steps
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.status.clone(),
                or_dash(s.exit_code),
                time(s.started_at.as_ref()),
                time(s.finished_at.as_ref()),
                or_dash(s.error.as_ref()),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["STEP", "STATUS", "EXIT", "STARTED", "FINISHED", "ERROR"],
        &steps,
    ));
    if !t.deployments.is_empty() {
        out.push('\n');
        out.push_str(&deployments_table(&t.deployments));
    }
    if !t.commit_statuses.is_empty() {
        let rows: Vec<Vec<String>> = t
            .commit_statuses
            .iter()
            .map(|c| {
                vec![
                    c.context.clone(),
                    c.state.clone(),
                    c.description.clone(),
                    format!("{} ({} attempts)", c.status, c.attempts),
                    or_dash(c.last_error.as_ref()),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &["CONTEXT", "STATE", "DESCRIPTION", "DELIVERY", "ERROR"],
            &rows,
        ));
    }
    out
}

fn deployments_table(list: &[json::Deployment]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            let status = match &d.rollback {
                Some(r) => format!("{} (rollback {} {})", d.status, r.id, r.status),
                None => d.status.clone(),
            };
            vec![
                d.id.to_string(),
                d.environment.clone(),
                status,
                d.trigger.clone(),
                or_dash(d.task_id),
                time(d.created_at.as_ref()),
                d.image.clone(),
            ]
        })
        .collect();
    table(
        &[
            "DEPLOYMENT",
            "ENVIRONMENT",
            "STATUS",
            "TRIGGER",
            "TASK",
            "CREATED",
            "IMAGE",
        ],
        &rows,
    )
}

fn environments_table(envs: &[json::Environment]) -> String {
    let describe = |d: &Option<json::Deployment>| {
        d.as_ref()
            .map_or_else(|| "-".to_owned(), |d| format!("{} ({})", d.id, d.status))
    };
    let rows: Vec<Vec<String>> = envs
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                describe(&e.current),
                describe(&e.previous),
                or_dash(e.serving_deployment_id),
                or_dash(e.route.as_ref().map(|r| &r.url)),
                e.current
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |d| d.image.clone()),
            ]
        })
        .collect();
    table(
        &[
            "ENVIRONMENT",
            "CURRENT",
            "PREVIOUS",
            "SERVING",
            "URL",
            "IMAGE",
        ],
        &rows,
    )
}

fn rollbacks_table(list: &[json::Rollback]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.environment.clone(),
                r.status.clone(),
                r.reason.clone(),
                or_dash(r.from_deployment_id),
                or_dash(r.to_deployment_id),
                time(r.created_at.as_ref()),
                or_dash(r.error.as_ref()),
            ]
        })
        .collect();
    table(
        &[
            "ROLLBACK",
            "ENVIRONMENT",
            "STATUS",
            "REASON",
            "FROM",
            "TO",
            "CREATED",
            "ERROR",
        ],
        &rows,
    )
}

fn alerts_table(list: &[json::Alert]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                a.kind.clone(),
                a.status.to_owned(),
                a.workflow.clone(),
                or_dash(a.task_id),
                time(a.created_at.as_ref()),
                a.summary.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ALERT", "TYPE", "STATUS", "WORKFLOW", "TASK", "CREATED", "SUMMARY",
        ],
        &rows,
    )
}

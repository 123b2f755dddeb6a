//! The command line: global settings and one subcommand per operation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "slipway",
    version,
    about = "Command-line client of Slipway's public gRPC API"
)]
pub struct Cli {
    /// The orchestrator's gRPC address.
    #[arg(
        long,
        env = "SLIPWAY_ORCHESTRATOR_URL",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub orchestrator_url: String,

    /// A PEM file of the CA that signed the orchestrator's certificate,
    /// trusted instead of the system roots for an https:// URL.
    #[arg(long, env = "SLIPWAY_ORCHESTRATOR_CA", global = true)]
    pub ca: Option<PathBuf>,

    /// The API's bearer token.
    #[arg(long, env = "SLIPWAY_API_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,

    /// How answers are printed: tables for people, or JSON shaped as the
    /// REST API answers.
    #[arg(short, long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update workflows.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// List the workflows.
    Workflows,
    /// Start a task of a workflow by hand.
    Run(Run),
    /// List tasks, newest first.
    Tasks(Tasks),
    /// Show one task with its steps and deployments.
    Task {
        #[arg(value_parser = id)]
        task: i64,
    },
    /// Print a task's log; with -f, follow it live until the task ends.
    Logs(Logs),
    /// Run a failed or cancelled task again, as a new task.
    Retry {
        #[arg(value_parser = id)]
        task: i64,
        #[command(flatten)]
        wait: Wait,
    },
    /// Stop a pending or running task.
    Cancel {
        #[arg(value_parser = id)]
        task: i64,
    },
    /// Deploy a task's image to an environment (approve, or deploy again).
    Deploy {
        #[arg(value_parser = id)]
        task: i64,
        environment: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Put an environment back on its previous healthy deployment.
    Rollback {
        /// Workflow name or id.
        workflow: String,
        environment: String,
        /// The deployment to go back to (default: the previous healthy one).
        #[arg(long, value_parser = id)]
        to: Option<i64>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Each environment's current and previous deployment.
    Environments {
        /// Workflow name or id.
        workflow: String,
    },
    /// List deployments, newest first.
    Deployments(Deployments),
    /// List rollbacks.
    Rollbacks {
        /// Workflow name or id.
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        environment: Option<String>,
    },
    /// Every workflow, what each environment runs now, its health, what
    /// waits for approval, and the last task.
    Overview,
    /// A workflow's delivery figures: builds, deploys, change failure rate,
    /// lead time, time to recover.
    Stats {
        /// Workflow name or id.
        workflow: String,
        /// The period, in days (1-365).
        #[arg(long, default_value_t = 30)]
        days: i32,
    },
    /// List alerts with each channel's delivery status, newest first.
    Alerts {
        #[arg(long)]
        limit: Option<i64>,
        /// Workflow name or id.
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, value_parser = id)]
        task: Option<i64>,
    },
    /// List the names of a workflow's secrets (never their values).
    Secrets {
        /// Workflow name or id.
        workflow: String,
    },
    /// Set workflow secrets.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Check a workflow file offline, as the server would.
    Validate { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Create the workflow of FILE, or a new version when its name exists.
    Apply { file: PathBuf },
    /// Show a workflow; as a table, its definition.
    Show {
        /// Workflow name or id.
        workflow: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret; the value is read from standard input unless --value.
    Set {
        /// Workflow name or id.
        workflow: String,
        name: String,
        /// The value (it then shows in the shell's history and `ps`).
        #[arg(long)]
        value: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct Wait {
    /// Follow the task's log until it ends; exit non-zero unless it succeeds.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct Run {
    /// Workflow name or id.
    pub workflow: String,
    /// The branch to run.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The commit (40 hex digits); default: the branch head.
    #[arg(long)]
    pub commit: Option<String>,
    #[command(flatten)]
    pub wait: Wait,
}

#[derive(Debug, Args)]
pub struct Tasks {
    /// Workflow name or id.
    #[arg(long)]
    pub workflow: Option<String>,
    /// pending, running, success, failed or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub limit: Option<i64>,
    /// Only tasks older than this task id (the next page).
    #[arg(long, value_parser = id)]
    pub before: Option<i64>,
}

#[derive(Debug, Args)]
pub struct Logs {
    #[arg(value_parser = id)]
    pub task: i64,
    /// Follow the log live until the task ends; exit non-zero unless it
    /// succeeds.
    #[arg(short, long, conflicts_with = "step")]
    pub follow: bool,
    /// Only this step's log.
    #[arg(long)]
    pub step: Option<String>,
}

#[derive(Debug, Args)]
pub struct Deployments {
    /// Workflow name or id.
    #[arg(long)]
    pub workflow: Option<String>,
    #[arg(long)]
    pub environment: Option<String>,
    #[arg(long)]
    pub limit: Option<i64>,
}

/// A task, deployment or workflow id: a positive integer.
fn id(s: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not an id (a positive integer)"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}

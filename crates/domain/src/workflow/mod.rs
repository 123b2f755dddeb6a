//! Workflow definitions (workflow.md, YAML version 1): the typed form every
//! service works with, and [`parse`], which builds it from the user's YAML or
//! explains, with key path, line and column, why it cannot.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::labels::Labels;

mod deploy;
mod field;
mod limits;
mod notify;
mod parse;
mod patterns;
mod repo;
mod routes;
mod secrets;
mod template;
mod values;
mod yaml;

#[cfg(test)]
mod tests;

pub use deploy::fixed_host_port;
pub use limits::{Limits, OutOfRange};
pub use parse::{SpecError, parse, parse_default_notify, parse_stored, parse_with};
pub use patterns::{PatternError, Patterns};
pub use repo::RepoUrl;
pub use routes::claimed_elsewhere;
pub use secrets::{resolve_secrets, secret_refs};
pub use template::{Template, TemplateVars};
pub use values::{
    AlertEvent, EnvName, EventKind, MAX_DURATION, RollbackMode, SecretName, StepName, ValueError,
    WorkflowName, format_duration, parse_duration,
};
pub(crate) use values::{CLONE_STEP, DEPLOY_STEP_PREFIX, IMAGE_STEP};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    pub name: WorkflowName,
    pub repo: RepoUrl,
    pub on: Triggers,
    /// What a newer task does to older ones of the same branch or pull request.
    pub concurrency: Concurrency,
    /// Labels a runner needs to take the workflow's tasks (`runs_on`).
    pub runs_on: Labels,
    /// Variables for every step, below the step's own `env`.
    pub env: BTreeMap<String, String>,
    /// Server-side secrets exposed to steps as variables of the same name.
    pub secrets: Vec<SecretName>,
    /// Budget of clone, steps and image build together.
    pub timeout: Duration,
    pub steps: Vec<Step>,
    pub image: Option<ImageSpec>,
    /// Environments in promotion order.
    pub deploy: Vec<DeploySpec>,
    /// Empty: the server's default rules apply (alerts.md).
    pub notify: Vec<NotifyRule>,
    /// Directories kept between tasks on the runner's host (workflow.md,
    /// Caches and retention).
    pub cache: Vec<CacheSpec>,
    /// How long the workflow's history is kept.
    pub retention: Retention,
}

/// One entry of `cache`: directories restored before the steps and saved
/// after a successful task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// Relative to the workspace, never leaving it.
    pub paths: Vec<String>,
    /// The key is the hash of these files' contents; empty: one cache per
    /// branch.
    pub key_files: Vec<String>,
}

/// `retention`: a finished task is pruned once it is older than `days` and
/// not among the workflow's newest `keep_last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// `None`: the server's `SLIPWAY_RETENTION_DAYS`.
    pub days: Option<u32>,
    /// `None`: [`Retention::DEFAULT_KEEP_LAST`].
    pub keep_last: Option<u32>,
}

impl Retention {
    pub const DEFAULT_KEEP_LAST: u32 = 100;

    /// The limits in force, `(days, keep_last)`, given the server's default
    /// days.
    pub fn in_force(&self, default_days: u32) -> (u32, u32) {
        (
            self.days.unwrap_or(default_days),
            self.keep_last.unwrap_or(Self::DEFAULT_KEEP_LAST),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Triggers {
    /// `None`: pushes do not trigger. Without an `on` key this is
    /// `Some(PushTrigger::default())`, every branch push.
    pub push: Option<PushTrigger>,
    pub workflow_run: Option<WorkflowRunTrigger>,
    /// `None`: pull and merge requests do not trigger.
    pub pull_request: Option<PullRequestTrigger>,
}

/// `concurrency` (forges.md, Cancel in progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Concurrency {
    /// A newer task for the same branch (push) or pull request cancels this
    /// workflow's older pending and running ones.
    pub cancel_in_progress: bool,
}

/// Filters of `on.pull_request`; see [`Workflow::match_pull_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestTrigger {
    /// Target branch globs; `None`: any target.
    pub branches: Option<Patterns>,
    /// The actions that trigger.
    pub types: Vec<PullRequestAction>,
    /// Whether draft pull requests run.
    pub drafts: bool,
    pub forks: ForkPolicy,
}

impl PullRequestTrigger {
    pub const DEFAULT_TYPES: [PullRequestAction; 3] = [
        PullRequestAction::Opened,
        PullRequestAction::Synchronize,
        PullRequestAction::Reopened,
    ];
}

/// What a workflow does with pull requests from forks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkPolicy {
    /// They do not run (the default): their steps would run a stranger's code.
    Ignore,
    /// They run, in containers only and without secrets.
    Run,
}

/// What happened to a pull request, in GitHub's words (GitLab's actions are
/// mapped to them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullRequestAction {
    Opened,
    Synchronize,
    Reopened,
    Closed,
    Edited,
    Labeled,
    ReadyForReview,
}

impl PullRequestAction {
    pub const ALL: [PullRequestAction; 7] = [
        PullRequestAction::Opened,
        PullRequestAction::Synchronize,
        PullRequestAction::Reopened,
        PullRequestAction::Closed,
        PullRequestAction::Edited,
        PullRequestAction::Labeled,
        PullRequestAction::ReadyForReview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PullRequestAction::Opened => "opened",
            PullRequestAction::Synchronize => "synchronize",
            PullRequestAction::Reopened => "reopened",
            PullRequestAction::Closed => "closed",
            PullRequestAction::Edited => "edited",
            PullRequestAction::Labeled => "labeled",
            PullRequestAction::ReadyForReview => "ready_for_review",
        }
    }

    pub fn parse(s: &str) -> Option<PullRequestAction> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Filters of `on.push`; see [`Workflow::match_push`] for how they combine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushTrigger {
    pub branches: Option<Patterns>,
    pub tags: Option<Patterns>,
    pub paths: Option<Patterns>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRunTrigger {
    /// GitHub Actions workflow names; a successful run of one triggers.
    pub workflows: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: StepName,
    /// Script for `sh -e`.
    pub run: String,
    /// Container to run in; `None` runs on the runner's host.
    pub image: Option<String>,
    /// `None`: whatever remains of the task's budget.
    pub timeout: Option<Duration>,
    pub env: BTreeMap<String, String>,
    pub continue_on_error: bool,
    pub when: Option<When>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct When {
    pub branch: Option<Patterns>,
    pub event: Option<Vec<EventKind>>,
}

impl When {
    /// Whether a step with this filter runs for a task started by `event` on
    /// `branch` (`None` for tag pushes and anything without a branch).
    pub fn allows(&self, branch: Option<&str>, event: EventKind) -> bool {
        let branch_ok = match &self.branch {
            None => true,
            Some(patterns) => branch.is_some_and(|b| patterns.matches(b)),
        };
        let event_ok = match &self.event {
            None => true,
            Some(events) => events.contains(&event),
        };
        branch_ok && event_ok
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Repository name under the configured registry: lowercase `[a-z0-9._/-]`.
    pub name: String,
    /// Build context, relative to the repository root.
    pub context: String,
    pub dockerfile: String,
    pub tags: Vec<Template>,
    pub build_args: BTreeMap<String, Template>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploySpec {
    pub environment: EnvName,
    /// False: the environment waits for approval.
    pub auto: bool,
    pub branches: Option<Patterns>,
    pub target: Target,
    /// Served through the edge proxy (edge.md); `None` keeps stop-then-start.
    pub route: Option<Route>,
    pub health: Option<HealthCheck>,
    pub rollback: RollbackMode,
    pub timeout: Duration,
}

impl DeploySpec {
    /// Whether commits of `branch` go to this environment (`None`: the task
    /// has no branch, e.g. a tag push, which passes only without a filter).
    pub fn allows_branch(&self, branch: Option<&str>) -> bool {
        match &self.branches {
            None => true,
            Some(patterns) => branch.is_some_and(|b| patterns.matches(b)),
        }
    }
}

/// Values may hold `${{ secrets.NAME }}` placeholders, kept verbatim here and
/// resolved when the deploy runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Container(ContainerTarget),
    Compose(ComposeTarget),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerTarget {
    pub name: String,
    /// Docker `-p` specs, e.g. `18081:8080`.
    pub ports: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Docker `-v` specs, e.g. `hello-data-dev:/data`.
    pub volumes: Vec<String>,
    pub network: Option<String>,
    /// Docker restart policy: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    pub restart: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeTarget {
    /// Path inside the repository.
    pub file: String,
    pub project: String,
    /// The service whose image is replaced.
    pub service: String,
}

/// How an environment is served through the edge proxy (edge.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Lowercase host names, a leading `*.` allowed.
    pub domains: Vec<String>,
    pub tls: RouteTls,
    /// A host port also served in plain HTTP.
    pub listen: Option<u16>,
    /// The app's port inside its container (or compose service).
    pub port: u16,
    /// How long the old version lives after it stops getting traffic.
    pub drain: Duration,
    /// Where each domain and the `listen` port were written, for errors
    /// about a name another environment already uses.
    pub claims: Vec<(RouteClaim, Spot)>,
}

/// A name only one environment may serve: a domain or a `listen` port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteClaim {
    Domain(String),
    Listen(u16),
}

impl std::fmt::Display for RouteClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteClaim::Domain(d) => write!(f, "domain {d}"),
            RouteClaim::Listen(p) => write!(f, "listen port {p}"),
        }
    }
}

/// Where a value was written: its key path, line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spot {
    pub path: String,
    pub line: usize,
    pub column: usize,
}

impl Spot {
    /// An error about the value written here.
    pub fn error(&self, message: impl Into<String>) -> SpecError {
        SpecError {
            path: self.path.clone(),
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

/// Certificates of a route's domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteTls {
    /// ACME (Let's Encrypt or ZeroSSL through the proxy).
    #[default]
    Auto,
    /// The proxy's own certificate authority.
    Internal,
    /// Plain HTTP on the proxy's HTTP port.
    Off,
}

impl RouteTls {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteTls::Auto => "auto",
            RouteTls::Internal => "internal",
            RouteTls::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(RouteTls::Auto),
            "internal" => Some(RouteTls::Internal),
            "off" => Some(RouteTls::Off),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Where an environment without `route` is probed; `None` on a routed
    /// environment that only gives `path`.
    pub url: Option<String>,
    /// Path and query probed on a routed environment's candidate (`url`'s
    /// when given, else `path`, default `/`).
    pub path: String,
    pub expect_status: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub watch: Duration,
}

/// Which events go to which channels. Channel values may hold
/// `${{ secrets.NAME }}` placeholders, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRule {
    pub on: Vec<AlertEvent>,
    pub slack: Option<SlackChannel>,
    pub email: Option<EmailChannel>,
    pub dingtalk: Option<DingTalkChannel>,
    pub webhook: Option<WebhookChannel>,
}

/// Either `webhook_url`, or `token` and `channel` (checked by the parser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackChannel {
    pub webhook_url: Option<String>,
    pub token: Option<String>,
    pub channel: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailChannel {
    pub to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DingTalkChannel {
    pub webhook_url: String,
    /// Signing secret; with it, requests are signed (alerts.md).
    pub secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookChannel {
    pub url: String,
    /// HMAC key for `X-Slipway-Signature`.
    pub secret: Option<String>,
}

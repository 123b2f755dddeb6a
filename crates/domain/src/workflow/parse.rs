//! Walks the located YAML tree into a [`Workflow`], checking the rules of
//! workflow.md on the way, so that every error carries the key path and the
//! line and column of the offending value (or of the mapping missing a key).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use super::yaml::{self, Node, Pos, Value};
use super::*;

const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const DEFAULT_DEPLOY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a workflow was rejected, e.g.
/// `deploy[1].health.timeout: invalid duration "5 minutes" at line 31, column 16`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// Key path like `steps[2].env.FOO`; empty for the document as a whole.
    pub path: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

impl SpecError {
    fn at(path: &str, pos: Pos, message: impl Into<String>) -> SpecError {
        SpecError {
            path: path.to_owned(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(
            f,
            "{} at line {}, column {}",
            self.message, self.line, self.column
        )
    }
}

type Result<T, E = SpecError> = std::result::Result<T, E>;

/// Parses and validates a workflow definition.
pub fn parse(yaml: &str) -> Result<Workflow> {
    let root = yaml::load(yaml)
        .map_err(|e| SpecError::at("", e.pos, e.message))?
        .ok_or_else(|| {
            SpecError::at(
                "",
                Pos::START,
                "empty document: expected a mapping with name, repo and steps",
            )
        })?;
    let root = Field {
        node: &root,
        path: String::new(),
        key_pos: None,
    };
    if root.node.is_null() {
        // A nested `key:` without a value reads as an empty mapping; a
        // document that is only `~` is more likely a mistake.
        return Err(root.type_error("a mapping"));
    }
    workflow(&root)
}

fn workflow(root: &Field<'_>) -> Result<Workflow> {
    let r = root.record(&[
        "name", "repo", "on", "runs_on", "env", "secrets", "timeout", "steps", "image", "deploy",
        "notify",
    ])?;
    let name = r.required("name")?.parse_with(WorkflowName::parse)?;
    let repo = r.required("repo")?.parse_with(RepoUrl::parse)?;
    let on = match r.present("on") {
        // Without `on`, every branch push triggers (workflow.md, Rules).
        None => Triggers {
            push: Some(PushTrigger::default()),
            workflow_run: None,
        },
        Some(on) => triggers(&on)?,
    };
    let runs_on = r.field("runs_on").map(|f| runs_on(&f)).transpose()?;
    let env = r.field("env").map(|f| env_vars(&f, false)).transpose()?;
    let secrets = r.field("secrets").map(|f| secrets(&f)).transpose()?;
    let timeout = r
        .field("timeout")
        .map(|f| f.positive_duration())
        .transpose()?;

    let mut steps = Vec::new();
    let mut step_names = HashSet::new();
    for f in r
        .field("steps")
        .map(|f| f.seq())
        .transpose()?
        .unwrap_or_default()
    {
        let s = step(&f)?;
        if !step_names.insert(s.name.clone()) {
            return Err(f
                .child("name")
                .error(format!("duplicate step name \"{}\"", s.name)));
        }
        steps.push(s);
    }

    let image = r.field("image").map(|f| image(&f)).transpose()?;

    let mut deploy = Vec::new();
    let mut environments = HashSet::new();
    for f in r
        .field("deploy")
        .map(|f| f.seq())
        .transpose()?
        .unwrap_or_default()
    {
        let d = deploy_spec(&f)?;
        if !environments.insert(d.environment.clone()) {
            return Err(f
                .child("environment")
                .error(format!("duplicate environment \"{}\"", d.environment)));
        }
        deploy.push(d);
    }

    let notify = r
        .field("notify")
        .map(|f| f.seq()?.iter().map(notify_rule).collect())
        .transpose()?
        .unwrap_or_default();

    if steps.is_empty() && image.is_none() && deploy.is_empty() {
        return Err(root
            .error(r#"nothing to do: at least one of "steps", "image" or "deploy" is required"#));
    }
    Ok(Workflow {
        name,
        repo,
        on,
        runs_on: runs_on.unwrap_or_default(),
        env: env.unwrap_or_default(),
        secrets: secrets.unwrap_or_default(),
        timeout: timeout.unwrap_or(DEFAULT_TASK_TIMEOUT),
        steps,
        image,
        deploy,
        notify,
    })
}

fn triggers(f: &Field<'_>) -> Result<Triggers> {
    let r = f.record(&["push", "workflow_run"])?;
    // `push:` with no value means "push, unfiltered", as in GitHub Actions.
    let push = r.present("push").map(|f| push_trigger(&f)).transpose()?;
    let workflow_run = r
        .present("workflow_run")
        .map(|f| {
            let r = f.record(&["workflows"])?;
            let list = r.required("workflows")?;
            let workflows: Vec<String> = list
                .seq()?
                .iter()
                .map(Field::nonempty_text)
                .collect::<Result<_>>()?;
            if workflows.is_empty() {
                return Err(list.error("list at least one workflow"));
            }
            Ok(WorkflowRunTrigger { workflows })
        })
        .transpose()?;
    Ok(Triggers { push, workflow_run })
}

fn push_trigger(f: &Field<'_>) -> Result<PushTrigger> {
    let r = f.record(&["branches", "tags", "paths"])?;
    Ok(PushTrigger {
        branches: r.field("branches").map(|f| f.patterns()).transpose()?,
        tags: r.field("tags").map(|f| f.patterns()).transpose()?,
        paths: r.field("paths").map(|f| f.patterns()).transpose()?,
    })
}

/// `runs_on: gpu` or `runs_on: [linux, gpu]`.
fn runs_on(f: &Field<'_>) -> Result<Labels> {
    let items = match &f.node.value {
        Value::Seq(_) => f.seq()?,
        _ => vec![f.clone()],
    };
    let mut labels = Vec::with_capacity(items.len());
    for item in &items {
        let label = item.nonempty_text()?;
        Labels::new([&label]).map_err(|e| item.error(e.to_string()))?;
        labels.push(label);
    }
    Labels::new(labels).map_err(|e| f.error(e.to_string()))
}

fn secrets(f: &Field<'_>) -> Result<Vec<SecretName>> {
    let mut names: Vec<SecretName> = Vec::new();
    for item in f.seq()? {
        let name = item.parse_with(SecretName::parse)?;
        if names.contains(&name) {
            return Err(item.error(format!("secret \"{name}\" is listed twice")));
        }
        names.push(name);
    }
    Ok(names)
}

fn step(f: &Field<'_>) -> Result<Step> {
    let r = f.record(&[
        "name",
        "run",
        "image",
        "timeout",
        "env",
        "continue_on_error",
        "when",
    ])?;
    Ok(Step {
        name: r.required("name")?.parse_with(StepName::parse)?,
        run: r.required("run")?.nonempty_text()?,
        image: r.field("image").map(|f| f.token()).transpose()?,
        timeout: r
            .field("timeout")
            .map(|f| f.positive_duration())
            .transpose()?,
        env: r
            .field("env")
            .map(|f| env_vars(&f, false))
            .transpose()?
            .unwrap_or_default(),
        continue_on_error: r
            .field("continue_on_error")
            .map(|f| f.boolean())
            .transpose()?
            .unwrap_or(false),
        when: r.field("when").map(|f| when(&f)).transpose()?,
    })
}

fn when(f: &Field<'_>) -> Result<When> {
    let r = f.record(&["branch", "event"])?;
    let event = r
        .field("event")
        .map(|f| {
            f.seq()?
                .iter()
                .map(|item| {
                    let s = item.text()?;
                    EventKind::parse(&s).ok_or_else(|| {
                        item.error(format!(
                            "unknown event \"{s}\": use push, tag, manual or workflow_run"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    Ok(When {
        branch: r.field("branch").map(|f| f.patterns()).transpose()?,
        event,
    })
}

fn image(f: &Field<'_>) -> Result<ImageSpec> {
    let r = f.record(&["name", "context", "dockerfile", "tags", "build_args"])?;
    let name_field = r.required("name")?;
    let name = name_field.text()?;
    if !is_image_name(&name) {
        return Err(name_field.error(format!(
            "invalid image name \"{name}\": use lowercase a-z, 0-9, ., _, - and / between parts"
        )));
    }
    let tags = match r.field("tags") {
        None => vec![Template::sha_short()],
        Some(list) => {
            let tags: Vec<Template> = list.seq()?.iter().map(image_tag).collect::<Result<_>>()?;
            if tags.is_empty() {
                return Err(list.error("list at least one tag"));
            }
            tags
        }
    };
    let build_args = match r.field("build_args") {
        None => BTreeMap::new(),
        Some(args) => args
            .dict()?
            .into_iter()
            .map(|(name, value)| {
                if !values::is_env_var_name(name) {
                    return Err(value.key_error(format!(
                        "invalid build argument name \"{name}\": use A-Z, a-z, 0-9 and _, not starting with a digit"
                    )));
                }
                Ok((name.to_owned(), value.parse_with(Template::parse)?))
            })
            .collect::<Result<_>>()?,
    };
    Ok(ImageSpec {
        name,
        context: r
            .field("context")
            .map(|f| f.repo_path())
            .transpose()?
            .unwrap_or_else(|| ".".to_owned()),
        dockerfile: r
            .field("dockerfile")
            .map(|f| f.repo_path())
            .transpose()?
            .unwrap_or_else(|| "Dockerfile".to_owned()),
        tags,
        build_args,
    })
}

/// Docker repository names: `/`-separated parts of `[a-z0-9._-]`, each
/// starting and ending with a letter or digit.
fn is_image_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    name.len() <= 255
        && name.split('/').all(|part| {
            part.starts_with(alnum)
                && part.ends_with(alnum)
                && part
                    .chars()
                    .all(|c| alnum(c) || matches!(c, '.' | '_' | '-'))
        })
}

fn image_tag(f: &Field<'_>) -> Result<Template> {
    let tag = f.parse_with(Template::parse)?;
    let literal_ok = tag.literal_text().all(|text| {
        text.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    });
    if tag.as_str().is_empty() || !literal_ok || tag.as_str().len() > 128 {
        return Err(f.error(format!(
            "invalid image tag \"{tag}\": use A-Z, a-z, 0-9, _, . and - besides placeholders"
        )));
    }
    Ok(tag)
}

fn deploy_spec(f: &Field<'_>) -> Result<DeploySpec> {
    let r = f.record(&[
        "environment",
        "auto",
        "branches",
        "target",
        "health",
        "rollback",
        "timeout",
    ])?;
    let rollback = r
        .field("rollback")
        .map(|f| match f.text()?.as_str() {
            "auto" => Ok(RollbackMode::Auto),
            "manual" => Ok(RollbackMode::Manual),
            other => Err(f.error(format!(
                "invalid rollback mode \"{other}\": use auto or manual"
            ))),
        })
        .transpose()?;
    Ok(DeploySpec {
        environment: r.required("environment")?.parse_with(EnvName::parse)?,
        auto: r
            .field("auto")
            .map(|f| f.boolean())
            .transpose()?
            .unwrap_or(true),
        branches: r.field("branches").map(|f| f.patterns()).transpose()?,
        target: target(&r.required("target")?)?,
        health: r.field("health").map(|f| health(&f)).transpose()?,
        rollback: rollback.unwrap_or_default(),
        timeout: r
            .field("timeout")
            .map(|f| f.positive_duration())
            .transpose()?
            .unwrap_or(DEFAULT_DEPLOY_TIMEOUT),
    })
}

fn target(f: &Field<'_>) -> Result<Target> {
    let r = f.record(&["container", "compose"])?;
    match (r.field("container"), r.field("compose")) {
        (Some(c), None) => container(&c).map(Target::Container),
        (None, Some(c)) => compose(&c).map(Target::Compose),
        (Some(_), Some(c)) => Err(c.key_error("use either container or compose, not both")),
        (None, None) => Err(f.error(r#"missing required key "container" or "compose""#)),
    }
}

fn container(f: &Field<'_>) -> Result<ContainerTarget> {
    let r = f.record(&["name", "ports", "env", "volumes", "network", "restart"])?;
    let name_field = r.required("name")?;
    let name = name_field.text_with_secrets()?;
    let valid_name = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_name {
        return Err(name_field.error(format!(
            "invalid container name \"{name}\": use A-Z, a-z, 0-9, _, . and -, starting with a letter or digit"
        )));
    }
    let list = |key: &str| -> Result<Vec<String>> {
        r.field(key)
            .map(|f| {
                f.seq()?
                    .iter()
                    .map(|item| item.text_with_secrets().and_then(|s| item.no_blank(s)))
                    .collect()
            })
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let restart = r
        .field("restart")
        .map(|f| {
            let policy = f.text()?;
            let valid = matches!(policy.as_str(), "no" | "always" | "unless-stopped" | "on-failure")
                || policy
                    .strip_prefix("on-failure:")
                    .is_some_and(|n| n.parse::<u32>().is_ok());
            if valid {
                Ok(policy)
            } else {
                Err(f.error(format!(
                    "invalid restart policy \"{policy}\": use no, always, unless-stopped or on-failure[:N]"
                )))
            }
        })
        .transpose()?;
    Ok(ContainerTarget {
        name,
        ports: list("ports")?,
        env: r
            .field("env")
            .map(|f| env_vars(&f, true))
            .transpose()?
            .unwrap_or_default(),
        volumes: list("volumes")?,
        network: r
            .field("network")
            .map(|f| f.text_with_secrets().and_then(|s| f.no_blank(s)))
            .transpose()?,
        restart,
    })
}

fn compose(f: &Field<'_>) -> Result<ComposeTarget> {
    let r = f.record(&["file", "project", "service"])?;
    let file = r.required("file")?.repo_path()?;
    let project_field = r.required("project")?;
    let project = project_field.text_with_secrets()?;
    // Compose's own rule for project names.
    let valid_project = project.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if !valid_project {
        return Err(project_field.error(format!(
            "invalid compose project name \"{project}\": use a-z, 0-9, _ and -, starting with a letter or digit"
        )));
    }
    let service = r.required("service")?;
    Ok(ComposeTarget {
        file,
        project,
        service: service
            .text_with_secrets()
            .and_then(|s| service.no_blank(s))?,
    })
}

fn health(f: &Field<'_>) -> Result<HealthCheck> {
    let r = f.record(&["url", "expect_status", "interval", "timeout", "watch"])?;
    let url_field = r.required("url")?;
    let url = url_field.text()?;
    if !is_http_url(&url) {
        return Err(url_field.error(format!(
            "invalid health check URL \"{url}\": use http:// or https://"
        )));
    }
    let expect_status = r
        .field("expect_status")
        .map(|f| {
            let s = f.text()?;
            s.parse::<u16>()
                .ok()
                .filter(|code| (100..=599).contains(code))
                .ok_or_else(|| f.error(format!("invalid status code \"{s}\": use 100 to 599")))
        })
        .transpose()?;
    Ok(HealthCheck {
        url,
        expect_status: expect_status.unwrap_or(200),
        interval: r
            .field("interval")
            .map(|f| f.positive_duration())
            .transpose()?
            .unwrap_or(DEFAULT_HEALTH_INTERVAL),
        timeout: r
            .field("timeout")
            .map(|f| f.positive_duration())
            .transpose()?
            .unwrap_or(DEFAULT_HEALTH_TIMEOUT),
        watch: r
            .field("watch")
            .map(|f| f.duration())
            .transpose()?
            .unwrap_or(Duration::ZERO),
    })
}

/// Parses `SLIPWAY_DEFAULT_NOTIFY`: the channels of one `notify` entry
/// (slack, email, dingtalk, webhook), for the server's default rule. `on` is
/// optional there and defaults to `default_on`; secrets placeholders are
/// refused, as the server default belongs to no workflow.
pub fn parse_default_notify(yaml: &str, default_on: &[AlertEvent]) -> Result<NotifyRule> {
    let root = yaml::load(yaml)
        .map_err(|e| SpecError::at("", e.pos, e.message))?
        .ok_or_else(|| SpecError::at("", Pos::START, "empty: expected a mapping of channels"))?;
    let root = Field {
        node: &root,
        path: String::new(),
        key_pos: None,
    };
    let r = root.record(&["on", "slack", "email", "dingtalk", "webhook"])?;
    let on = match r.field("on") {
        Some(on_field) => alert_events(&on_field)?,
        None => default_on.to_vec(),
    };
    let rule = notify_channels(&root, &r, on)?;
    if let Some(pos) = yaml.find("${{") {
        let line = yaml[..pos].matches('\n').count() + 1;
        let column = yaml[..pos]
            .rsplit('\n')
            .next()
            .map_or(0, |l| l.chars().count())
            + 1;
        return Err(SpecError::at(
            "",
            Pos { line, column },
            "secrets placeholders belong to workflows; write the value itself",
        ));
    }
    Ok(rule)
}

fn notify_rule(f: &Field<'_>) -> Result<NotifyRule> {
    let r = f.record(&["on", "slack", "email", "dingtalk", "webhook"])?;
    let on = alert_events(&r.required("on")?)?;
    notify_channels(f, &r, on)
}

fn alert_events(on_field: &Field<'_>) -> Result<Vec<AlertEvent>> {
    let mut on = Vec::new();
    for item in on_field.seq()? {
        let s = item.text()?;
        let event = AlertEvent::parse(&s).ok_or_else(|| {
            let known: Vec<&str> = AlertEvent::ALL.iter().map(|e| e.as_str()).collect();
            item.error(format!(
                "unknown event \"{s}\": use one of {}",
                known.join(", ")
            ))
        })?;
        if on.contains(&event) {
            return Err(item.error(format!("event \"{s}\" is listed twice")));
        }
        on.push(event);
    }
    if on.is_empty() {
        return Err(on_field.error("list at least one event"));
    }
    Ok(on)
}

fn notify_channels(f: &Field<'_>, r: &Record<'_>, on: Vec<AlertEvent>) -> Result<NotifyRule> {
    let slack = r
        .field("slack")
        .map(|f| {
            let r = f.record(&["webhook_url", "token", "channel"])?;
            let webhook_url = r
                .field("webhook_url")
                .map(|f| f.url_or_secret())
                .transpose()?;
            let token = r.field("token").map(|f| f.secret_or_text()).transpose()?;
            let channel = r.field("channel").map(|f| f.secret_or_text()).transpose()?;
            match (&webhook_url, &token, &channel) {
                (Some(_), None, None) | (None, Some(_), Some(_)) => Ok(SlackChannel {
                    webhook_url,
                    token,
                    channel,
                }),
                (Some(_), _, _) => {
                    Err(f.error("use either webhook_url, or token and channel, not both"))
                }
                (None, None, None) => {
                    Err(f.error(r#"missing required key "webhook_url" (or "token" and "channel")"#))
                }
                (None, Some(_), None) => Err(f.error(r#"missing required key "channel""#)),
                (None, None, Some(_)) => Err(f.error(r#"missing required key "token""#)),
            }
        })
        .transpose()?;
    let email = r
        .field("email")
        .map(|f| {
            let r = f.record(&["to"])?;
            let to_field = r.required("to")?;
            let to: Vec<String> = to_field
                .seq()?
                .iter()
                .map(|item| {
                    let address = item.secret_or_text()?;
                    let valid = address.contains("${{")
                        || (address.split_once('@').is_some_and(|(local, domain)| {
                            !local.is_empty() && !domain.is_empty()
                        }) && !address.contains(char::is_whitespace));
                    if valid {
                        Ok(address)
                    } else {
                        Err(item.error(format!("invalid email address \"{address}\"")))
                    }
                })
                .collect::<Result<_>>()?;
            if to.is_empty() {
                return Err(to_field.error("list at least one address"));
            }
            Ok(EmailChannel { to })
        })
        .transpose()?;
    let dingtalk = r
        .field("dingtalk")
        .map(|f| {
            let r = f.record(&["webhook_url", "secret"])?;
            Ok(DingTalkChannel {
                webhook_url: r.required("webhook_url")?.url_or_secret()?,
                secret: r.field("secret").map(|f| f.secret_or_text()).transpose()?,
            })
        })
        .transpose()?;
    let webhook = r
        .field("webhook")
        .map(|f| {
            let r = f.record(&["url", "secret"])?;
            Ok(WebhookChannel {
                url: r.required("url")?.url_or_secret()?,
                secret: r.field("secret").map(|f| f.secret_or_text()).transpose()?,
            })
        })
        .transpose()?;
    if slack.is_none() && email.is_none() && dingtalk.is_none() && webhook.is_none() {
        return Err(f.error("missing a channel: add slack, email, dingtalk or webhook"));
    }
    Ok(NotifyRule {
        on,
        slack,
        email,
        dingtalk,
        webhook,
    })
}

fn env_vars(f: &Field<'_>, secrets_allowed: bool) -> Result<BTreeMap<String, String>> {
    f.dict()?
        .into_iter()
        .map(|(name, value)| {
            if !values::is_env_var_name(name) {
                return Err(value.key_error(format!(
                    "invalid variable name \"{name}\": use A-Z, a-z, 0-9 and _, not starting with a digit"
                )));
            }
            let text = if secrets_allowed {
                value.text_with_secrets()?
            } else {
                value.text()?
            };
            Ok((name.to_owned(), text))
        })
        .collect()
}

fn is_http_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    ["http://", "https://"].iter().any(|scheme| {
        lower
            .strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty())
    }) && !s.contains(char::is_whitespace)
}

/// Finds `${{ ... }}` placeholders: each as written, with its trimmed
/// inside (`None` when unclosed; the placeholder then runs to the end).
fn placeholders(s: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let open = rest.find("${{")?;
        let after = &rest[open + 3..];
        match after.find("}}") {
            Some(close) => {
                let whole = &rest[open..open + 3 + close + 2];
                let inner = after[..close].trim();
                rest = &after[close + 2..];
                Some((whole, Some(inner)))
            }
            None => {
                let whole = &rest[open..];
                rest = "";
                Some((whole, None))
            }
        }
    })
}

/// A mapping with a fixed set of keys, checked for unknown and duplicate keys.
struct Record<'a> {
    field: Field<'a>,
    entries: &'a [yaml::Entry],
}

impl<'a> Record<'a> {
    /// The value of `key` unless absent or null: an optional key written
    /// without a value counts as not written.
    fn field(&self, key: &str) -> Option<Field<'a>> {
        self.present(key).filter(|f| !f.node.is_null())
    }

    /// The value of `key`, null included.
    fn present(&self, key: &str) -> Option<Field<'a>> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| self.field.child_node(key, &e.value, e.key_pos))
    }

    fn required(&self, key: &str) -> Result<Field<'a>> {
        self.present(key)
            .ok_or_else(|| self.field.error(format!("missing required key \"{key}\"")))
    }
}

/// A node with its key path; the extractors below turn it into values or
/// into errors that point at it.
#[derive(Clone)]
struct Field<'a> {
    node: &'a Node,
    path: String,
    /// Where the key of this value was written, for errors about the key
    /// itself (an invalid variable name, say); `None` for list items.
    key_pos: Option<Pos>,
}

impl<'a> Field<'a> {
    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn child_node(&self, key: &str, node: &'a Node, key_pos: Pos) -> Field<'a> {
        Field {
            node,
            path: self.child_path(key),
            key_pos: Some(key_pos),
        }
    }

    /// The field of `key` in this mapping, for errors found after its value
    /// was read (a duplicate step name, say); this node if `key` is absent.
    fn child(&self, key: &str) -> Field<'a> {
        let entry = match &self.node.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        };
        Field {
            node: entry.map_or(self.node, |e| &e.value),
            path: self.child_path(key),
            key_pos: entry.map(|e| e.key_pos),
        }
    }

    fn error(&self, message: impl Into<String>) -> SpecError {
        SpecError::at(&self.path, self.node.pos, message)
    }

    /// An error about the key of this field rather than its value.
    fn key_error(&self, message: impl Into<String>) -> SpecError {
        let pos = self.key_pos.unwrap_or(self.node.pos);
        SpecError::at(&self.path, pos, message)
    }

    fn type_error(&self, expected: &str) -> SpecError {
        self.error(format!(
            "expected {expected}, found {}",
            self.node.describe()
        ))
    }

    fn record(&self, allowed: &[&str]) -> Result<Record<'a>> {
        let entries: &'a [yaml::Entry] = match &self.node.value {
            Value::Map(entries) => entries,
            // `key:` with no value is an empty mapping (`on: {push: }` and the like).
            _ if self.node.is_null() => &[],
            _ => return Err(self.type_error("a mapping")),
        };
        check_keys(self, entries, Some(allowed))?;
        Ok(Record {
            field: self.clone(),
            entries,
        })
    }

    /// A mapping with keys chosen by the user (`env`, `build_args`).
    fn dict(&self) -> Result<Vec<(&'a str, Field<'a>)>> {
        let Value::Map(entries) = &self.node.value else {
            return Err(self.type_error("a mapping"));
        };
        check_keys(self, entries, None)?;
        Ok(entries
            .iter()
            .map(|e| (e.key.as_str(), self.child_node(&e.key, &e.value, e.key_pos)))
            .collect())
    }

    fn seq(&self) -> Result<Vec<Field<'a>>> {
        let Value::Seq(items) = &self.node.value else {
            return Err(self.type_error("a sequence"));
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, node)| Field {
                node,
                path: format!("{}[{i}]", self.path),
                key_pos: None,
            })
            .collect())
    }

    /// Any scalar but null, as written: `true` and `1.10` are kept as text.
    fn scalar(&self) -> Result<&'a str> {
        match &self.node.value {
            Value::Scalar { text, .. } if !self.node.is_null() => Ok(text),
            _ => Err(self.type_error("a string")),
        }
    }

    /// Text where secrets placeholders are not allowed.
    fn text(&self) -> Result<String> {
        let s = self.scalar()?;
        // `whole` starts with `${{`; an unclosed one counts too.
        if let Some((whole, _)) = placeholders(s).find(|(whole, _)| {
            whole
                .strip_prefix("${{")
                .is_some_and(|rest| rest.trim_start().starts_with("secrets"))
        }) {
            return Err(self.error(format!(
                "\"{whole}\": secrets placeholders are only allowed in notify and deploy target values; steps get the secrets listed under \"secrets\" as environment variables"
            )));
        }
        Ok(s.to_owned())
    }

    /// Text in notify and target values, where `${{ secrets.NAME }}` is kept
    /// for later resolution; any other `${{ }}` is a mistake.
    fn text_with_secrets(&self) -> Result<String> {
        let s = self.scalar()?;
        for (whole, inner) in placeholders(s) {
            let valid = inner
                .and_then(|inner| inner.strip_prefix("secrets."))
                .is_some_and(|name| SecretName::parse(name).is_ok());
            if !valid {
                return Err(self.error(format!(
                    "invalid placeholder \"{whole}\": use ${{{{ secrets.NAME }}}}"
                )));
            }
        }
        Ok(s.to_owned())
    }

    fn secret_or_text(&self) -> Result<String> {
        self.text_with_secrets().and_then(|s| self.no_blank(s))
    }

    fn url_or_secret(&self) -> Result<String> {
        let s = self.text_with_secrets()?;
        // A URL from a secret is checked when it is resolved.
        if s.contains("${{") || is_http_url(&s) {
            Ok(s)
        } else {
            Err(self.error(format!(
                "invalid URL \"{s}\": use http://, https:// or ${{{{ secrets.NAME }}}}"
            )))
        }
    }

    fn no_blank(&self, s: String) -> Result<String> {
        if s.trim().is_empty() {
            Err(self.error("must not be empty"))
        } else {
            Ok(s)
        }
    }

    fn nonempty_text(&self) -> Result<String> {
        self.text().and_then(|s| self.no_blank(s))
    }

    /// Text without whitespace, e.g. an image reference.
    fn token(&self) -> Result<String> {
        let s = self.nonempty_text()?;
        if s.contains(char::is_whitespace) {
            return Err(self.error(format!("\"{s}\" must not contain whitespace")));
        }
        Ok(s)
    }

    /// A path inside the repository: relative, never leaving it.
    fn repo_path(&self) -> Result<String> {
        let s = self.nonempty_text()?;
        if s.starts_with('/') || s.split(['/', '\\']).any(|part| part == "..") {
            return Err(self.error(format!(
                "\"{s}\" must be a relative path inside the repository"
            )));
        }
        Ok(s)
    }

    fn parse_with<T>(&self, parse: impl FnOnce(&str) -> Result<T, ValueError>) -> Result<T> {
        let s = self.text()?;
        parse(&s).map_err(|e| self.error(e.to_string()))
    }

    /// `true` or `false`, quoted or not: a quoted `"true"` is a string to
    /// YAML, but nobody writing it means anything else.
    fn boolean(&self) -> Result<bool> {
        match self
            .scalar()
            .map_err(|_| self.type_error("true or false"))?
        {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            other => Err(self.error(format!("invalid boolean \"{other}\": use true or false"))),
        }
    }

    fn duration(&self) -> Result<Duration> {
        self.parse_with(parse_duration)
    }

    fn positive_duration(&self) -> Result<Duration> {
        let d = self.duration()?;
        if d.is_zero() {
            return Err(self.error("must be longer than 0s"));
        }
        Ok(d)
    }

    fn patterns(&self) -> Result<Patterns> {
        let items = self.seq()?;
        let texts = items.iter().map(Field::text).collect::<Result<Vec<_>>>()?;
        Patterns::new(texts).map_err(|e| match items.get(e.index) {
            Some(item) => item.error(e.to_string()),
            None => self.error(e.to_string()),
        })
    }
}

/// Rejects duplicate keys and, when `allowed` is given, unknown ones.
fn check_keys(f: &Field<'_>, entries: &[yaml::Entry], allowed: Option<&[&str]>) -> Result<()> {
    let mut seen = HashSet::new();
    for e in entries {
        let path = f.child_path(&e.key);
        if let Some(allowed) = allowed
            && !allowed.contains(&e.key.as_str())
        {
            let hint = match closest(&e.key, allowed) {
                Some(key) => format!("did you mean \"{key}\"?"),
                None => format!("expected one of: {}", allowed.join(", ")),
            };
            return Err(SpecError::at(
                &path,
                e.key_pos,
                format!("unknown key ({hint})"),
            ));
        }
        if !seen.insert(e.key.as_str()) {
            return Err(SpecError::at(&path, e.key_pos, "duplicate key"));
        }
    }
    Ok(())
}

/// The allowed key a misspelt one most likely meant: one edit for every
/// three characters, rounded up, so `nme` finds `name` and `contiue_on_error`
/// finds `continue_on_error`, while `x` suggests nothing.
fn closest<'k>(key: &str, allowed: &[&'k str]) -> Option<&'k str> {
    allowed
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(d, candidate)| *d < key.len() && *d <= candidate.len().div_ceil(3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

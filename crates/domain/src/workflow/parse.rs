//! Walks the located YAML tree into a [`Workflow`], checking the rules of
//! workflow.md on the way, so that every error carries the key path and the
//! line and column of the offending value (or of the mapping missing a key).
//! The deploy environments and the notify rules have files of their own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::deploy::deploy_spec;
use super::field::{Field, Record, Result, env_vars};
use super::notify::notify_rule;
use super::yaml::{self, Pos, Value};
use super::*;

pub use super::field::SpecError;
pub use super::notify::parse_default_notify;

const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Parses and validates a workflow definition within the default
/// [`Limits`].
pub fn parse(yaml: &str) -> Result<Workflow> {
    parse_with(yaml, &Limits::default())
}

/// Parses a definition that was stored once it passed [`parse_with`]:
/// within [`Limits::CEILING`], so that a limit lowered since does not make
/// it unreadable.
pub fn parse_stored(yaml: &str) -> Result<Workflow> {
    parse_with(yaml, &Limits::CEILING)
}

/// Parses and validates a workflow definition within `limits`.
pub fn parse_with(yaml: &str, limits: &Limits) -> Result<Workflow> {
    if yaml.len() > limits.max_bytes {
        return Err(SpecError::at(
            "",
            Pos::START,
            format!(
                "the definition is {} bytes, more than the limit of {} bytes",
                yaml.len(),
                limits.max_bytes
            ),
        ));
    }
    let root = yaml::load(yaml, limits)
        .map_err(|e| SpecError::at("", e.pos, e.message))?
        .ok_or_else(|| {
            SpecError::at(
                "",
                Pos::START,
                "empty document: expected a mapping with name, repo and steps",
            )
        })?;
    let root = Field::root(&root);
    if root.node.is_null() {
        // A nested `key:` without a value reads as an empty mapping; a
        // document that is only `~` is more likely a mistake.
        return Err(root.type_error("a mapping"));
    }
    workflow(&root, limits)
}

/// The entries of the sequence `key` of `r`, refused past `max` with the
/// sequence's place.
fn bounded<'a>(r: &Record<'a>, key: &str, max: usize, what: &str) -> Result<Vec<Field<'a>>> {
    let Some(f) = r.field(key) else {
        return Ok(Vec::new());
    };
    let items = f.seq()?;
    if items.len() > max {
        return Err(f.error(format!(
            "{} {what}, more than the limit of {max}",
            items.len()
        )));
    }
    Ok(items)
}

fn workflow(root: &Field<'_>, limits: &Limits) -> Result<Workflow> {
    let r = root.record(&[
        "name",
        "repo",
        "on",
        "concurrency",
        "runs_on",
        "env",
        "secrets",
        "timeout",
        "steps",
        "image",
        "deploy",
        "notify",
        "cache",
        "retention",
    ])?;
    let name = r.required("name")?.parse_with(WorkflowName::parse)?;
    let repo = r.required("repo")?.parse_with(RepoUrl::parse)?;
    let on = match r.present("on") {
        // Without `on`, every branch push triggers (workflow.md, Rules).
        None => Triggers {
            push: Some(PushTrigger::default()),
            workflow_run: None,
            pull_request: None,
        },
        Some(on) => triggers(&on)?,
    };
    let concurrency = r
        .field("concurrency")
        .map(|f| {
            let r = f.record(&["cancel_in_progress"])?;
            Ok(Concurrency {
                cancel_in_progress: r
                    .field("cancel_in_progress")
                    .map(|f| f.boolean())
                    .transpose()?
                    .unwrap_or(false),
            })
        })
        .transpose()?
        .unwrap_or_default();
    let runs_on = r.field("runs_on").map(|f| runs_on(&f)).transpose()?;
    let env = r.field("env").map(|f| env_vars(&f, false)).transpose()?;
    let secrets = r.field("secrets").map(|f| secrets(&f)).transpose()?;
    let timeout = r
        .field("timeout")
        .map(|f| f.positive_duration())
        .transpose()?;

    let mut steps = Vec::new();
    let mut step_names = HashSet::new();
    for f in bounded(&r, "steps", limits.max_steps, "steps")? {
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
    let mut claimed = HashMap::new();
    for f in bounded(&r, "deploy", limits.max_environments, "environments")? {
        let d = deploy_spec(&f)?;
        if !environments.insert(d.environment.clone()) {
            return Err(f
                .child("environment")
                .error(format!("duplicate environment \"{}\"", d.environment)));
        }
        for (claim, spot) in d.route.iter().flat_map(|r| &r.claims) {
            if let Some(other) = claimed.insert(claim.clone(), d.environment.clone()) {
                return Err(spot.error(format!(
                    "{claim} is already used by environment \"{other}\" of this workflow"
                )));
            }
        }
        deploy.push(d);
    }

    let notify = bounded(&r, "notify", limits.max_notify_rules, "rules")?
        .iter()
        .map(notify_rule)
        .collect::<Result<_>>()?;

    let cache = r
        .field("cache")
        .map(|f| f.seq()?.iter().map(cache_spec).collect())
        .transpose()?
        .unwrap_or_default();
    let retention = r
        .field("retention")
        .map(|f| retention(&f))
        .transpose()?
        .unwrap_or_default();

    if let Some(pr) = &on.pull_request
        && pr.forks == ForkPolicy::Run
        && let Some(host_step) = steps.iter().position(|s| s.image.is_none())
    {
        return Err(r
            .required("steps")?
            .seq()?[host_step]
            .error("on.pull_request.forks: run needs every step to have an image: a pull request from a fork runs code from anyone, so its steps run in containers only"));
    }
    if steps.is_empty() && image.is_none() && deploy.is_empty() {
        return Err(root
            .error(r#"nothing to do: at least one of "steps", "image" or "deploy" is required"#));
    }
    Ok(Workflow {
        name,
        repo,
        on,
        concurrency,
        runs_on: runs_on.unwrap_or_default(),
        env: env.unwrap_or_default(),
        secrets: secrets.unwrap_or_default(),
        timeout: timeout.unwrap_or(DEFAULT_TASK_TIMEOUT),
        steps,
        image,
        deploy,
        notify,
        cache,
        retention,
    })
}

fn cache_spec(f: &Field<'_>) -> Result<CacheSpec> {
    let r = f.record(&["paths", "key_files"])?;
    let paths_field = r.required("paths")?;
    let paths = paths_field
        .seq()?
        .iter()
        .map(Field::repo_path)
        .collect::<Result<Vec<_>>>()?;
    if paths.is_empty() {
        return Err(paths_field.error("must list at least one path"));
    }
    let key_files = r
        .field("key_files")
        .map(|f| f.seq()?.iter().map(Field::repo_path).collect())
        .transpose()?
        .unwrap_or_default();
    Ok(CacheSpec { paths, key_files })
}

fn retention(f: &Field<'_>) -> Result<Retention> {
    let r = f.record(&["days", "keep_last"])?;
    let days = r.field("days").map(|f| count(&f, 1)).transpose()?;
    let keep_last = r.field("keep_last").map(|f| count(&f, 0)).transpose()?;
    Ok(Retention { days, keep_last })
}

/// A whole number, at least `min`.
fn count(f: &Field<'_>, min: u32) -> Result<u32> {
    let s = f.text()?;
    s.parse::<u32>().ok().filter(|n| *n >= min).ok_or_else(|| {
        f.error(format!(
            "invalid number \"{s}\": use a whole number, at least {min}"
        ))
    })
}

fn triggers(f: &Field<'_>) -> Result<Triggers> {
    let r = f.record(&["push", "workflow_run", "pull_request"])?;
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
    let pull_request = r
        .present("pull_request")
        .map(|f| pull_request_trigger(&f))
        .transpose()?;
    Ok(Triggers {
        push,
        workflow_run,
        pull_request,
    })
}

fn pull_request_trigger(f: &Field<'_>) -> Result<PullRequestTrigger> {
    let r = f.record(&["branches", "types", "drafts", "forks"])?;
    let types = r
        .field("types")
        .map(|f| {
            let list = f.seq()?;
            if list.is_empty() {
                return Err(f.error("list at least one type"));
            }
            list.iter()
                .map(|item| {
                    let s = item.text()?;
                    PullRequestAction::parse(&s).ok_or_else(|| {
                        item.error(format!(
                            "unknown pull request type \"{s}\": use {}",
                            PullRequestAction::ALL
                                .map(PullRequestAction::as_str)
                                .join(", ")
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_else(|| PullRequestTrigger::DEFAULT_TYPES.to_vec());
    let forks = r
        .field("forks")
        .map(|f| {
            let s = f.text()?;
            match s.as_str() {
                "ignore" => Ok(ForkPolicy::Ignore),
                "run" => Ok(ForkPolicy::Run),
                _ => Err(f.error(format!("unknown forks policy \"{s}\": use ignore or run"))),
            }
        })
        .transpose()?
        .unwrap_or(ForkPolicy::Ignore);
    Ok(PullRequestTrigger {
        branches: r.field("branches").map(|f| f.patterns()).transpose()?,
        types,
        drafts: r
            .field("drafts")
            .map(|f| f.boolean())
            .transpose()?
            .unwrap_or(false),
        forks,
    })
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
                            "unknown event \"{s}\": use push, tag, manual, workflow_run or pull_request"
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

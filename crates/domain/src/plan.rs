//! The step plan of a task: which steps it has, in the order they run, and
//! what each one is (workflow.md, "What runs, in order"). The orchestrator
//! creates a task's step rows from it, the runner walks it, and metrics and
//! events classify a stored step by its name through it: positions and
//! names are derived here and nowhere else.

use std::fmt;

use crate::workflow::{CLONE_STEP, DEPLOY_STEP_PREFIX, EventKind, IMAGE_STEP, Workflow};

/// What started a task, as stored with it; it decides the task's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A branch or tag push (webhook).
    Push,
    /// A run asked for through the API.
    Manual,
    /// External CI finished (GitHub `workflow_run`): deploy what it pushed.
    WorkflowRun,
    /// An approval or a re-deploy: one deployment of an earlier task's image.
    Deploy,
    /// A manual rollback: one deployment of an earlier healthy version.
    Rollback,
    /// A pull or merge request opened or updated: build and test, never
    /// push the image or deploy.
    PullRequest,
}

impl Trigger {
    pub const ALL: [Trigger; 6] = [
        Trigger::Push,
        Trigger::Manual,
        Trigger::WorkflowRun,
        Trigger::Deploy,
        Trigger::Rollback,
        Trigger::PullRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Push => "push",
            Trigger::Manual => "manual",
            Trigger::WorkflowRun => "workflow_run",
            Trigger::Deploy => "deploy",
            Trigger::Rollback => "rollback",
            Trigger::PullRequest => "pull_request",
        }
    }

    pub fn parse(s: &str) -> Option<Trigger> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// What `when.event` sees for a task of this trigger; `tagged` when the
    /// task is for a tag.
    pub fn event(self, tagged: bool) -> EventKind {
        match self {
            Trigger::Manual => EventKind::Manual,
            Trigger::WorkflowRun => EventKind::WorkflowRun,
            Trigger::PullRequest => EventKind::PullRequest,
            Trigger::Push | Trigger::Deploy | Trigger::Rollback if tagged => EventKind::Tag,
            Trigger::Push | Trigger::Deploy | Trigger::Rollback => EventKind::Push,
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a step of a task does, whatever its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// The checkout of the task's commit.
    Clone,
    /// One of the workflow's own `steps`.
    Run,
    /// The build and push of the workflow's `image`.
    Image,
    /// The deploy to one environment.
    Deploy,
}

impl StepKind {
    pub const ALL: [StepKind; 4] = [
        StepKind::Clone,
        StepKind::Run,
        StepKind::Image,
        StepKind::Deploy,
    ];

    /// The kind a stored step name stands for: the system steps' names are
    /// reserved (see [`is_reserved`]), so every other name is a user step.
    pub fn of(name: &str) -> StepKind {
        match name {
            CLONE_STEP => StepKind::Clone,
            IMAGE_STEP => StepKind::Image,
            n if n.starts_with(DEPLOY_STEP_PREFIX) => StepKind::Deploy,
            _ => StepKind::Run,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Clone => "clone",
            StepKind::Run => "run",
            StepKind::Image => "image",
            StepKind::Deploy => "deploy",
        }
    }
}

/// Whether a step name belongs to a system step, so a workflow may not use it.
pub fn is_reserved(name: &str) -> bool {
    StepKind::of(name) != StepKind::Run
}

/// The environment a `deploy:<env>` step deploys to.
pub fn environment_of(name: &str) -> Option<&str> {
    name.strip_prefix(DEPLOY_STEP_PREFIX)
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Clone,
    /// The workflow's step at this index of `Workflow::steps`.
    Run(usize),
    Image,
    /// The deploy to this environment.
    Deploy(String),
}

/// A step with its place in the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Where the step stands in the task, from 0; what runners report against.
    pub position: i32,
    /// The step's name as stored and shown.
    pub name: String,
    /// What the step does.
    pub step: Step,
}

/// The steps of one task, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    steps: Vec<Planned>,
}

impl Plan {
    /// A build: the clone, the workflow's steps, the image when the workflow
    /// has one, then a deploy per environment in promotion order.
    pub fn build(spec: &Workflow) -> Plan {
        let mut steps = vec![Step::Clone];
        steps.extend((0..spec.steps.len()).map(Step::Run));
        if spec.image.is_some() {
            steps.push(Step::Image);
        }
        steps.extend(
            spec.deploy
                .iter()
                .map(|d| Step::Deploy(d.environment.to_string())),
        );
        Plan::of(spec, steps)
    }

    /// A deploy without a build: the clone (it brings compose files), then
    /// a deploy per environment given.
    pub fn deploy_only<S: Into<String>>(environments: impl IntoIterator<Item = S>) -> Plan {
        let steps = std::iter::once(Step::Clone)
            .chain(environments.into_iter().map(|e| Step::Deploy(e.into())))
            .map(|step| (String::new(), step));
        Plan::named(steps)
    }

    /// The plan of a task started by `trigger`. A deploy or rollback task
    /// carries out one deployment, to `environment`; a `workflow_run` task
    /// deploys to every environment what external CI pushed. A pull request
    /// task has the build's steps; the runner builds its image without
    /// pushing it and skips its deploys.
    pub fn for_task(spec: &Workflow, trigger: Trigger, environment: Option<&str>) -> Plan {
        match (trigger, environment) {
            (Trigger::Deploy | Trigger::Rollback, Some(env)) => Plan::deploy_only([env]),
            (Trigger::WorkflowRun, _) => {
                Plan::deploy_only(spec.deploy.iter().map(|d| d.environment.to_string()))
            }
            _ => Plan::build(spec),
        }
    }

    fn of(spec: &Workflow, steps: Vec<Step>) -> Plan {
        Plan::named(steps.into_iter().map(|step| {
            let name = match &step {
                Step::Run(i) => spec.steps[*i].name.to_string(),
                _ => String::new(),
            };
            (name, step)
        }))
    }

    /// Numbers the steps; system steps get their fixed names.
    fn named(steps: impl Iterator<Item = (String, Step)>) -> Plan {
        let steps = steps
            .enumerate()
            .map(|(i, (name, step))| {
                let name = match &step {
                    Step::Clone => CLONE_STEP.to_owned(),
                    Step::Run(_) => name,
                    Step::Image => IMAGE_STEP.to_owned(),
                    Step::Deploy(env) => format!("{DEPLOY_STEP_PREFIX}{env}"),
                };
                Planned {
                    position: i32::try_from(i).unwrap_or(i32::MAX),
                    name,
                    step,
                }
            })
            .collect();
        Plan { steps }
    }

    /// The steps in order, with their positions.
    pub fn steps(&self) -> &[Planned] {
        &self.steps
    }

    /// The step names, in order: what a new task's step rows are made of.
    pub fn names(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.name.clone()).collect()
    }

    /// The position of `step`, if the plan has it.
    pub fn position(&self, step: &Step) -> Option<i32> {
        self.steps
            .iter()
            .find(|s| &s.step == step)
            .map(|s| s.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> Workflow {
        let yaml = format!(
            "name: w\nrepo: https://example.com/w.git\nsteps:\n  - name: test\n    run: x\n  - name: lint\n    run: y\n{extra}"
        );
        crate::workflow::parse(&yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    const IMAGE_YAML: &str = "image:\n  name: w\n";
    const DEPLOY_YAML: &str = "deploy:\n  - environment: dev\n    target: {container: {name: a}}\n  - environment: prod\n    target: {container: {name: b}}\n";

    const FULL: &[&str] = &[
        "clone",
        "test",
        "lint",
        "image",
        "deploy:dev",
        "deploy:prod",
    ];

    #[test]
    fn plans_by_workflow_and_trigger() {
        let full = spec(&format!("{IMAGE_YAML}{DEPLOY_YAML}"));
        let bare = spec("");
        let no_image = spec(DEPLOY_YAML);
        let cases: [(&Workflow, Trigger, Option<&str>, &[&str]); 9] = [
            (&bare, Trigger::Push, None, &["clone", "test", "lint"]),
            (&bare, Trigger::Manual, None, &["clone", "test", "lint"]),
            (&full, Trigger::Push, None, FULL),
            (
                &no_image,
                Trigger::Manual,
                None,
                &["clone", "test", "lint", "deploy:dev", "deploy:prod"],
            ),
            (
                &full,
                Trigger::WorkflowRun,
                None,
                &["clone", "deploy:dev", "deploy:prod"],
            ),
            (
                &full,
                Trigger::Deploy,
                Some("prod"),
                &["clone", "deploy:prod"],
            ),
            (
                &full,
                Trigger::Rollback,
                Some("dev"),
                &["clone", "deploy:dev"],
            ),
            // A deploy task always names its environment; without one it
            // is planned as a build, as a retried one is.
            (&full, Trigger::Deploy, None, FULL),
            (&bare, Trigger::WorkflowRun, None, &["clone"]),
        ];
        for (spec, trigger, env, want) in cases {
            let plan = Plan::for_task(spec, trigger, env);
            assert_eq!(plan.names(), want, "{trigger} {env:?}");
            for (i, s) in plan.steps().iter().enumerate() {
                assert_eq!(s.position, i32::try_from(i).unwrap_or(-1));
            }
        }
    }

    #[test]
    fn positions_of_steps() {
        let plan = Plan::build(&spec(&format!("{IMAGE_YAML}{DEPLOY_YAML}")));
        let cases = [
            (Step::Clone, Some(0)),
            (Step::Run(0), Some(1)),
            (Step::Run(1), Some(2)),
            (Step::Image, Some(3)),
            (Step::Deploy("dev".into()), Some(4)),
            (Step::Deploy("prod".into()), Some(5)),
            (Step::Deploy("qa".into()), None),
            (Step::Run(2), None),
        ];
        for (step, want) in cases {
            assert_eq!(plan.position(&step), want, "{step:?}");
        }
        let deploy = Plan::deploy_only(["prod"]);
        assert_eq!(deploy.position(&Step::Deploy("prod".into())), Some(1));
        assert_eq!(deploy.position(&Step::Image), None);
    }

    #[test]
    fn kinds_of_stored_names() {
        let cases = [
            ("clone", StepKind::Clone, None),
            ("image", StepKind::Image, None),
            ("deploy:prod", StepKind::Deploy, Some("prod")),
            ("deploy:", StepKind::Deploy, Some("")),
            ("build", StepKind::Run, None),
            ("Clone", StepKind::Run, None),
            ("deploy", StepKind::Run, None),
        ];
        for (name, kind, env) in cases {
            assert_eq!(StepKind::of(name), kind, "{name}");
            assert_eq!(is_reserved(name), kind != StepKind::Run, "{name}");
            assert_eq!(environment_of(name), env, "{name}");
        }
    }

    #[test]
    fn triggers_round_trip_and_map_to_events() {
        for t in Trigger::ALL {
            assert_eq!(Trigger::parse(t.as_str()), Some(t));
        }
        assert_eq!(Trigger::parse("auto"), None);
        let cases = [
            (Trigger::Push, false, EventKind::Push),
            (Trigger::Push, true, EventKind::Tag),
            (Trigger::Manual, true, EventKind::Manual),
            (Trigger::WorkflowRun, false, EventKind::WorkflowRun),
            (Trigger::PullRequest, false, EventKind::PullRequest),
            (Trigger::Deploy, false, EventKind::Push),
            (Trigger::Rollback, true, EventKind::Tag),
        ];
        for (trigger, tagged, want) in cases {
            assert_eq!(trigger.event(tagged), want, "{trigger} {tagged}");
        }
    }
}

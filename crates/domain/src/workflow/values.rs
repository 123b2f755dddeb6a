//! The small values of a workflow (names, durations, event kinds) as types
//! that can only hold valid values: each is built by a `parse` constructor.

use std::fmt;
use std::time::Duration;

/// Why a single value was rejected. The workflow parser adds the key path
/// and position; other callers (the API taking a workflow name, say) can use
/// these constructors on their own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("invalid {kind} {value:?}: {rule}")]
    Name {
        kind: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("{kind} {value:?} is reserved for a system step")]
    Reserved { kind: &'static str, value: String },
    #[error("invalid duration {0:?}")]
    Duration(String),
    #[error("duration {0:?} is longer than the limit of 720h")]
    DurationTooLong(String),
    #[error("invalid repository URL: {0}")]
    RepoUrl(&'static str),
    #[error(
        "unknown placeholder {0:?}: use {{{{sha}}}}, {{{{sha_short}}}}, {{{{branch}}}}, {{{{tag}}}} or {{{{task_id}}}}"
    )]
    UnknownPlaceholder(String),
    #[error("unclosed placeholder: {{{{ without }}}}")]
    UnclosedPlaceholder,
}

/// Parses `300ms`, `90s`, `10m`, `2h`: an unsigned integer and a unit, nothing else.
/// The longest duration a workflow may give: 30 days. Longer ones are
/// certainly mistakes, and would overflow clock arithmetic at the extreme.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let invalid = || ValueError::Duration(s.to_owned());
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(invalid());
    }
    // Fails on overflow too.
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let secs = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        _ => None,
    }
    .ok_or_else(invalid)
    .and_then(|d| {
        if d > MAX_DURATION {
            Err(ValueError::DurationTooLong(s.to_owned()))
        } else {
            Ok(d)
        }
    })
}

/// Writes a duration as a workflow would (`10m`, `90s`, `2h`, `300ms`): the
/// largest unit that divides it, so messages quote what the user wrote.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// Checks a name against `[first][rest]{0,max-1}`.
fn check_name(
    s: &str,
    max: usize,
    first: impl Fn(char) -> bool,
    rest: impl Fn(char) -> bool,
) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(first) && chars.all(rest) && s.len() <= max
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the names a shell accepts for variables.
pub(crate) fn is_env_var_name(s: &str) -> bool {
    check_name(
        s,
        255,
        |c| c.is_ascii_alphabetic() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_',
    )
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:literal, $rule:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl $ty {
            fn check(s: &str) -> Result<(), ValueError> {
                let check: fn(&str) -> bool = $check;
                if check(s) {
                    Ok(())
                } else {
                    Err(ValueError::Name {
                        kind: $kind,
                        value: s.to_owned(),
                        rule: $rule,
                    })
                }
            }
        }
    };
}

name_type!(
    /// A workflow's name, unique on the server: `[a-z0-9][a-z0-9-]{0,62}`.
    WorkflowName,
    "workflow name",
    "use 1 to 63 characters a-z, 0-9 and -, starting with a letter or digit",
    |s| check_name(s, 63, is_lower_alnum, |c| is_lower_alnum(c) || c == '-')
);

impl WorkflowName {
    pub fn parse(s: &str) -> Result<WorkflowName, ValueError> {
        Self::check(s).map(|()| WorkflowName(s.to_owned()))
    }
}

/// The names of the system steps, which share a task's step list with the
/// workflow's own steps (workflow.md, "What runs, in order"); `domain::plan`
/// puts them in the plan.
pub(crate) const CLONE_STEP: &str = "clone";
pub(crate) const IMAGE_STEP: &str = "image";
/// Followed by the environment's name.
pub(crate) const DEPLOY_STEP_PREFIX: &str = "deploy:";

name_type!(
    /// A user step's name, unique in its workflow: `[A-Za-z0-9][A-Za-z0-9_.-]{0,62}`.
    StepName,
    "step name",
    "use 1 to 63 characters A-Z, a-z, 0-9, _, . and -, starting with a letter or digit",
    |s| check_name(s, 63, |c| c.is_ascii_alphanumeric(), |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
    })
);

impl StepName {
    /// Names of the system steps, which share the task's step list with the
    /// user's steps (workflow.md, "What runs, in order").
    pub fn parse(s: &str) -> Result<StepName, ValueError> {
        if s == CLONE_STEP || s == IMAGE_STEP || s.starts_with(DEPLOY_STEP_PREFIX) {
            return Err(ValueError::Reserved {
                kind: "step name",
                value: s.to_owned(),
            });
        }
        Self::check(s).map(|()| StepName(s.to_owned()))
    }
}

name_type!(
    /// A deploy environment's name: `[a-z0-9][a-z0-9_-]{0,31}`.
    EnvName,
    "environment name",
    "use 1 to 32 characters a-z, 0-9, _ and -, starting with a letter or digit",
    |s| check_name(s, 32, is_lower_alnum, |c| {
        is_lower_alnum(c) || c == '_' || c == '-'
    })
);

impl EnvName {
    pub fn parse(s: &str) -> Result<EnvName, ValueError> {
        Self::check(s).map(|()| EnvName(s.to_owned()))
    }
}

name_type!(
    /// The name of a server-side secret: `[A-Za-z_][A-Za-z0-9_]*`, so that it
    /// can be exposed to steps as an environment variable of the same name.
    SecretName,
    "secret name",
    "use A-Z, a-z, 0-9 and _, not starting with a digit",
    is_env_var_name
);

impl SecretName {
    pub fn parse(s: &str) -> Result<SecretName, ValueError> {
        Self::check(s).map(|()| SecretName(s.to_owned()))
    }
}

/// What started a task; `when.event` filters steps on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Push,
    Tag,
    Manual,
    WorkflowRun,
    PullRequest,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Push,
        EventKind::Tag,
        EventKind::Manual,
        EventKind::WorkflowRun,
        EventKind::PullRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Push => "push",
            EventKind::Tag => "tag",
            EventKind::Manual => "manual",
            EventKind::WorkflowRun => "workflow_run",
            EventKind::PullRequest => "pull_request",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The alert event types of alerts.md, which `notify.on` subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertEvent {
    TaskCreated,
    TaskStarted,
    BuildFailed,
    TaskSucceeded,
    TaskCancelled,
    DeployStarted,
    DeploySucceeded,
    DeployFailed,
    HealthCheckFailed,
    RolledBack,
    DeployTimeout,
    AwaitingApproval,
    TaskStuck,
    RunnerLost,
    WebhookDelayed,
    HealthDown,
    HealthRecovered,
}

impl AlertEvent {
    pub const ALL: [AlertEvent; 17] = [
        AlertEvent::TaskCreated,
        AlertEvent::TaskStarted,
        AlertEvent::BuildFailed,
        AlertEvent::TaskSucceeded,
        AlertEvent::TaskCancelled,
        AlertEvent::DeployStarted,
        AlertEvent::DeploySucceeded,
        AlertEvent::DeployFailed,
        AlertEvent::HealthCheckFailed,
        AlertEvent::RolledBack,
        AlertEvent::DeployTimeout,
        AlertEvent::AwaitingApproval,
        AlertEvent::TaskStuck,
        AlertEvent::RunnerLost,
        AlertEvent::WebhookDelayed,
        AlertEvent::HealthDown,
        AlertEvent::HealthRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::TaskCreated => "task_created",
            AlertEvent::TaskStarted => "task_started",
            AlertEvent::BuildFailed => "build_failed",
            AlertEvent::TaskSucceeded => "task_succeeded",
            AlertEvent::TaskCancelled => "task_cancelled",
            AlertEvent::DeployStarted => "deploy_started",
            AlertEvent::DeploySucceeded => "deploy_succeeded",
            AlertEvent::DeployFailed => "deploy_failed",
            AlertEvent::HealthCheckFailed => "health_check_failed",
            AlertEvent::RolledBack => "rolled_back",
            AlertEvent::DeployTimeout => "deploy_timeout",
            AlertEvent::AwaitingApproval => "awaiting_approval",
            AlertEvent::TaskStuck => "task_stuck",
            AlertEvent::RunnerLost => "runner_lost",
            AlertEvent::WebhookDelayed => "webhook_delayed",
            AlertEvent::HealthDown => "health_down",
            AlertEvent::HealthRecovered => "health_recovered",
        }
    }

    pub fn parse(s: &str) -> Option<AlertEvent> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl fmt::Display for AlertEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens when a deploy fails: restore the previous healthy version,
/// or leave the environment for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RollbackMode {
    #[default]
    Auto,
    Manual,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("300ms", Duration::from_millis(300)),
            ("90s", Duration::from_secs(90)),
            ("10m", Duration::from_secs(600)),
            ("2h", Duration::from_secs(7200)),
            ("0s", Duration::ZERO),
        ];
        for (input, want) in ok {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
        let bad = [
            "5 minutes",
            "",
            "10",
            "-5s",
            "+5s",
            "1.5h",
            " 5s",
            "5s ",
            "5S",
            "s",
            "5d",
            "99999999999999999999s",
            "18446744073709551615h",
        ];
        for input in bad {
            assert_eq!(
                parse_duration(input),
                Err(ValueError::Duration(input.to_owned())),
                "{input}"
            );
        }
        for input in ["721h", "2600000000000000h"] {
            assert_eq!(
                parse_duration(input),
                Err(ValueError::DurationTooLong(input.to_owned())),
                "{input}"
            );
        }
        assert_eq!(parse_duration("720h"), Ok(MAX_DURATION));
        assert_eq!(
            parse_duration("5 minutes").unwrap_err().to_string(),
            r#"invalid duration "5 minutes""#
        );
    }

    #[test]
    fn durations_are_written_as_parsed() {
        let cases = [
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::ZERO, "0s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_duration(d), want);
            assert_eq!(parse_duration(want), Ok(d));
        }
    }

    #[test]
    fn names() {
        assert!(WorkflowName::parse("hello-go").is_ok());
        assert!(WorkflowName::parse(&"a".repeat(63)).is_ok());
        for bad in ["", "-x", "Hello", "a_b", "a.b", &"a".repeat(64)] {
            assert!(WorkflowName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            WorkflowName::parse("Hello").unwrap_err().to_string(),
            r#"invalid workflow name "Hello": use 1 to 63 characters a-z, 0-9 and -, starting with a letter or digit"#
        );

        assert!(StepName::parse("Build_1.x-y").is_ok());
        for bad in ["", "_x", "a b", "a:b", &"a".repeat(64)] {
            assert!(StepName::parse(bad).is_err(), "{bad}");
        }
        for reserved in ["clone", "image", "deploy:dev"] {
            assert_eq!(
                StepName::parse(reserved),
                Err(ValueError::Reserved {
                    kind: "step name",
                    value: reserved.to_owned()
                })
            );
        }

        assert!(EnvName::parse("prod_eu-1").is_ok());
        assert!(EnvName::parse(&"a".repeat(33)).is_err());
        assert!(EnvName::parse("Prod").is_err());

        assert!(SecretName::parse("_REGISTRY_PASSWORD2").is_ok());
        assert!(SecretName::parse("2X").is_err());
        assert!(SecretName::parse("A-B").is_err());
    }

    #[test]
    fn event_names_round_trip() {
        for e in AlertEvent::ALL {
            assert_eq!(AlertEvent::parse(e.as_str()), Some(e));
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(AlertEvent::parse("Build_Failed"), None);
    }
}

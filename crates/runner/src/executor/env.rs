//! The environment a step runs with (workflow.md, "Variables"): the
//! variables every step sees, then the workflow's `env`.

use std::collections::BTreeMap;
use std::path::Path;

use domain::workflow::{EventKind, Workflow};

use crate::client::Claim;

/// Where a step runs: on the runner's host, or in a container with the
/// workspace at /workspace.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Host,
    Container,
}

/// The variables of every step: the runner's own environment on the host,
/// the contract's `SLIPWAY_*` ones, then the workflow's `env`. `event` is
/// what `when.event` sees for the task.
pub(super) fn base_env(
    claim: &Claim,
    spec: &Workflow,
    event: EventKind,
    commit: &str,
    workspace: &Path,
    place: Place,
) -> BTreeMap<String, String> {
    // On the host the runner's own environment passes through, except its
    // settings: a step must never see the runner's token. A container gets
    // only what the workflow says.
    let mut env: BTreeMap<String, String> = match place {
        Place::Host => std::env::vars()
            .filter(|(k, _)| !k.starts_with("SLIPWAY_") && !k.starts_with("OTEL_"))
            .collect(),
        Place::Container => BTreeMap::new(),
    };
    let workspace = match place {
        Place::Host => workspace.display().to_string(),
        Place::Container => "/workspace".to_owned(),
    };
    let fixed = [
        ("CI", "true".to_owned()),
        ("SLIPWAY", "true".to_owned()),
        ("SLIPWAY_TASK_ID", claim.lease.task_id.to_string()),
        ("SLIPWAY_WORKFLOW", claim.workflow.clone()),
        ("SLIPWAY_REPO", claim.repo.clone()),
        ("SLIPWAY_BRANCH", claim.branch.clone().unwrap_or_default()),
        ("SLIPWAY_COMMIT", commit.to_owned()),
        (
            "SLIPWAY_COMMIT_SHORT",
            commit.get(..12).unwrap_or(commit).to_owned(),
        ),
        ("SLIPWAY_WORKSPACE", workspace),
        ("SLIPWAY_EVENT", event.as_str().to_owned()),
    ];
    for (k, v) in fixed {
        env.insert(k.to_owned(), v);
    }
    if let Some(tag) = &claim.tag {
        env.insert("SLIPWAY_TAG".to_owned(), tag.clone());
    }
    if let Some(pr) = &claim.pull_request {
        env.insert("SLIPWAY_PR_NUMBER".to_owned(), pr.number.to_string());
        env.insert(
            "SLIPWAY_PR_TARGET_BRANCH".to_owned(),
            pr.target_branch.clone(),
        );
    }
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::client::{Lease, PullRequest};
    use crate::git::Credentials;

    fn claim(trigger: &str) -> Claim {
        Claim {
            lease: Lease {
                task_id: 7,
                token: "lease".to_owned(),
            },
            lease_time: Duration::from_secs(30),
            definition: String::new(),
            workflow: "hello".to_owned(),
            repo: "https://github.com/acme/hello.git".to_owned(),
            trigger: trigger.to_owned(),
            branch: Some("feature/x".to_owned()),
            tag: None,
            commit: None,
            secrets: HashMap::new(),
            registry: None,
            deployment: None,
            pull_request: None,
            fetch_ref: None,
            withheld_secrets: Vec::new(),
            clone_credentials: None,
            previous_image: None,
        }
    }

    fn spec() -> Workflow {
        domain::workflow::parse(
            "name: hello\nrepo: https://github.com/acme/hello.git\nenv: {A: b}\nsteps:\n  - name: t\n    run: x\n",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn steps_see_the_event_and_their_pull_request() {
        let mut pr = claim("pull_request");
        pr.pull_request = Some(PullRequest {
            number: 42,
            target_branch: "main".to_owned(),
        });
        pr.fetch_ref = Some("refs/pull/42/head".to_owned());
        pr.clone_credentials = Some(Credentials {
            username: "x-access-token".to_owned(),
            password: "s3cr3t-clone-token".to_owned(),
        });
        let env = base_env(
            &pr,
            &spec(),
            EventKind::PullRequest,
            SHA,
            Path::new("/ws"),
            Place::Container,
        );
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("SLIPWAY_EVENT"), Some("pull_request"));
        assert_eq!(get("SLIPWAY_PR_NUMBER"), Some("42"));
        assert_eq!(get("SLIPWAY_PR_TARGET_BRANCH"), Some("main"));
        assert_eq!(get("SLIPWAY_BRANCH"), Some("feature/x"));
        assert_eq!(get("SLIPWAY_COMMIT_SHORT"), Some("0123456789ab"));
        assert_eq!(get("SLIPWAY_WORKSPACE"), Some("/workspace"));
        assert_eq!(get("A"), Some("b"));
        // The clone's credentials are nowhere in a step's environment.
        assert!(
            env.iter().all(|(k, v)| !k.contains("s3cr3t")
                && !v.contains("s3cr3t")
                && !v.contains("x-access-token")),
            "{env:?}"
        );

        let env = base_env(
            &claim("push"),
            &spec(),
            EventKind::Push,
            SHA,
            Path::new("/ws"),
            Place::Container,
        );
        assert_eq!(env.get("SLIPWAY_EVENT").map(String::as_str), Some("push"));
        assert!(!env.contains_key("SLIPWAY_PR_NUMBER"));
        assert!(!env.contains_key("SLIPWAY_PR_TARGET_BRANCH"));
    }
}

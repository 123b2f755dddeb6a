//! The environment a step runs with (workflow.md, "Variables"): the
//! variables every step sees, then the workflow's `env`.

use std::collections::BTreeMap;
use std::path::Path;

use domain::workflow::Workflow;

use crate::client::Claim;

/// Where a step runs: on the runner's host, or in a container with the
/// workspace at /workspace.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Host,
    Container,
}

pub(super) fn base_env(
    claim: &Claim,
    spec: &Workflow,
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
    ];
    for (k, v) in fixed {
        env.insert(k.to_owned(), v);
    }
    if let Some(tag) = &claim.tag {
        env.insert("SLIPWAY_TAG".to_owned(), tag.clone());
    }
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

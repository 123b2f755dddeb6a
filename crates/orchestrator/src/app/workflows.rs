//! Workflow definitions (create, update, read, delete) and the secrets a
//! workflow's steps and deploys use, sealed at rest.

use domain::workflow;
use proto::{ApiError, ErrorCode};
use store::workflows::{Guard, WorkflowRow};

use super::{App, bad_request, invalid_workflow};
use crate::crypto::Reseal;

impl App {
    pub async fn create_workflow(&self, definition: String) -> Result<WorkflowRow, ApiError> {
        let spec = workflow::parse_with(&definition, &self.bounds.workflow)
            .map_err(|e| invalid_workflow(&e))?;
        let name = spec.name.to_string();
        let repo = spec.repo.to_string();
        self.db("workflow", move |conn| {
            let guard = |others: &[(WorkflowRow, String)]| routes_free(&spec, others);
            let guard = routed(&spec).then_some(&guard as Guard<'_>);
            store::workflows::create(conn, &name, &repo, &definition, guard)
        })
        .await
    }

    pub async fn update_workflow(
        &self,
        id: i64,
        definition: String,
    ) -> Result<WorkflowRow, ApiError> {
        let spec = workflow::parse_with(&definition, &self.bounds.workflow)
            .map_err(|e| invalid_workflow(&e))?;
        let name = spec.name.to_string();
        let repo = spec.repo.to_string();
        self.db(&format!("workflow {id}"), move |conn| {
            let guard = |others: &[(WorkflowRow, String)]| routes_free(&spec, others);
            let guard = routed(&spec).then_some(&guard as Guard<'_>);
            store::workflows::update(conn, id, &name, &repo, &definition, guard)
        })
        .await
    }

    pub async fn get_workflow(&self, id: i64) -> Result<(WorkflowRow, String), ApiError> {
        self.db(&format!("workflow {id}"), move |conn| {
            let row = store::workflows::live(conn, id)?;
            let definition = store::workflows::definition(conn, id, row.version)?;
            Ok((row, definition))
        })
        .await
    }

    pub async fn list_workflows(&self) -> Result<Vec<WorkflowRow>, ApiError> {
        self.db("workflows", store::workflows::list).await
    }

    pub async fn delete_workflow(&self, id: i64) -> Result<(), ApiError> {
        self.db(&format!("workflow {id}"), move |conn| {
            store::workflows::delete(conn, id)
        })
        .await
    }

    pub async fn set_secret(
        &self,
        workflow_id: i64,
        name: String,
        value: String,
    ) -> Result<(), ApiError> {
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(bad_request(format!(
                "invalid secret name {name:?}: letters, digits and _, not starting with a digit"
            )));
        }
        let max_bytes = self.bounds.secret_max_bytes;
        if value.len() > max_bytes {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the value of secret {name} is {} bytes, more than the limit of {max_bytes} bytes",
                    value.len()
                ),
            ));
        }
        let (nonce, sealed) = self.secrets.seal(workflow_id, &name, &value);
        let max = self.bounds.secrets_max;
        self.db(&format!("workflow {workflow_id}"), move |conn| {
            store::secrets::put(conn, workflow_id, &name, &nonce, &sealed, max)
        })
        .await
    }

    /// While the secret key rotates, seals every stored secret that the
    /// previous key sealed with the current one; logs those neither opens.
    pub async fn reseal_secrets(&self) -> Result<(), ApiError> {
        if !self.secrets.rotating() {
            return Ok(());
        }
        let secrets = self.secrets.clone();
        let (replaced, unreadable) = self
            .db("secrets", move |conn| {
                let mut unreadable = Vec::new();
                let replaced = store::secrets::reseal_all(conn, |s| {
                    match secrets.reseal(s.workflow_id, &s.name, &s.nonce, &s.ciphertext) {
                        Reseal::Current => None,
                        Reseal::Resealed(nonce, sealed) => Some((nonce, sealed)),
                        Reseal::Unreadable => {
                            unreadable.push(format!("{}/{}", s.workflow_id, s.name));
                            None
                        }
                    }
                })?;
                Ok((replaced, unreadable))
            })
            .await?;
        tracing::info!(
            resealed = replaced,
            "stored secrets are sealed with the current SLIPWAY_SECRET_KEY; SLIPWAY_SECRET_KEY_PREVIOUS can be removed"
        );
        if !unreadable.is_empty() {
            tracing::warn!(
                secrets = ?unreadable,
                "neither SLIPWAY_SECRET_KEY nor SLIPWAY_SECRET_KEY_PREVIOUS opens these secrets (workflow id/name): set them again"
            );
        }
        Ok(())
    }

    pub async fn list_secrets(&self, workflow_id: i64) -> Result<Vec<String>, ApiError> {
        self.db(&format!("workflow {workflow_id}"), move |conn| {
            store::workflows::live(conn, workflow_id)?;
            store::secrets::names(conn, workflow_id)
        })
        .await
    }
}

/// Whether `spec` routes an environment: then its domains and `listen`
/// ports are checked against the other workflows' before it is stored.
fn routed(spec: &workflow::Workflow) -> bool {
    spec.deploy.iter().any(|d| d.route.is_some())
}

/// Refuses `spec` when another workflow's current definition serves one of
/// its domains or `listen` ports (edge.md). A stored definition the parser
/// no longer takes claims nothing.
fn routes_free(spec: &workflow::Workflow, others: &[(WorkflowRow, String)]) -> store::Result<()> {
    let others: Vec<workflow::Workflow> = others
        .iter()
        .filter_map(|(_, definition)| workflow::parse_stored(definition).ok())
        .collect();
    match workflow::claimed_elsewhere(spec, &others) {
        Some(e) => Err(store::Error::Workflow(e)),
        None => Ok(()),
    }
}

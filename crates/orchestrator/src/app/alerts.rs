//! Alerts and their deliveries, for the notifier: a workflow's notify
//! configuration with its secrets, the alert recorded once per event, and
//! the deliveries it claims and reports attempts of.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use domain::workflow;
use proto::ApiError;
use store::alerts::{AlertFilter, AlertView, Attempt, OpenAlert};

use super::{App, internal};

impl App {
    pub async fn list_alerts(&self, filter: AlertFilter) -> Result<Vec<AlertView>, ApiError> {
        self.db("alerts", move |conn| store::alerts::list(conn, &filter))
            .await
    }

    /// A workflow version's definition (the live one when `version` is
    /// `None`) with the secrets its notify values name, and any in `extra`.
    pub async fn notify_config(
        &self,
        workflow_id: i64,
        version: Option<i32>,
        extra: Vec<String>,
    ) -> Result<(String, i32, HashMap<String, String>), ApiError> {
        let (definition, version, sealed) = self
            .db(&format!("workflow {workflow_id}"), move |conn| {
                let version = match version {
                    Some(v) => v,
                    None => store::workflows::live(conn, workflow_id)?.version,
                };
                Ok((
                    store::workflows::definition(conn, workflow_id, version)?,
                    version,
                    store::secrets::sealed(conn, workflow_id)?,
                ))
            })
            .await?;
        let spec = self.spec(workflow_id, version, &definition)?;
        let mut wanted = extra;
        for channel in spec.notify.iter().flat_map(domain::alert::channels) {
            wanted.extend(channel.values().into_iter().flat_map(workflow::secret_refs));
        }
        let mut secrets = HashMap::new();
        for name in wanted {
            if secrets.contains_key(&name) {
                continue;
            }
            // A missing secret fails that delivery, with its name, later.
            if let Some(s) = sealed.iter().find(|s| s.name == name) {
                let value = self
                    .secrets
                    .open(workflow_id, &s.name, &s.nonce, &s.ciphertext)
                    .map_err(internal)?;
                secrets.insert(name, value);
            }
        }
        Ok((definition, version, secrets))
    }

    pub async fn open_alert(
        &self,
        req: OpenAlert,
        claim: Duration,
    ) -> Result<store::alerts::Opened, ApiError> {
        let until = Utc::now() + claim;
        let id = req.event_id.clone();
        self.db(&format!("event {id}"), move |conn| {
            store::alerts::open(conn, &req, until)
        })
        .await
    }

    pub async fn claim_deliveries(
        &self,
        limit: i64,
        claim: Duration,
    ) -> Result<Vec<store::alerts::Claimed>, ApiError> {
        let until = Utc::now() + claim;
        self.db("deliveries", move |conn| {
            store::alerts::claim_due(conn, limit, until)
        })
        .await
    }

    pub async fn record_attempt(
        &self,
        delivery_id: i64,
        attempt: Attempt,
    ) -> Result<store::alerts::DeliveryRow, ApiError> {
        self.db(&format!("delivery {delivery_id}"), move |conn| {
            store::alerts::record_attempt(conn, delivery_id, &attempt)
        })
        .await
    }
}

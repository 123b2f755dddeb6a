//! The edge proxy (edge.md): Caddy, driven over its admin API. The runner
//! changes only what it owns in the proxy's configuration ([`config`]), by
//! reading the `apps` object and writing it back with `If-Match`, so that a
//! concurrent change by another runner of the host is never overwritten (the
//! change is read and made again instead). The proxy's configuration is
//! derived: the orchestrator's records are the truth, and [`Proxy::restore`]
//! re-applies them when the runner starts and when the proxy comes back
//! without the routes this runner put there.

mod admin;
pub mod config;

use std::collections::BTreeMap;
use std::sync::Mutex;

use hyper::Method;
use serde_json::Value;

pub use admin::{Admin, AdminError};
pub use config::{Ports, Served};

/// Attempts of one change when other writers keep changing the config.
const CHANGE_ATTEMPTS: usize = 10;

/// The proxy of this runner's host.
pub struct Proxy {
    admin: Admin,
    ports: Ports,
    /// What this runner put in the proxy, by key: what it checks is still
    /// there.
    expected: Mutex<BTreeMap<String, Served>>,
}

impl Proxy {
    pub fn new(admin: Admin, ports: Ports) -> Self {
        Self {
            admin,
            ports,
            expected: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// Whether the proxy answers: a routed deploy checks it before it starts
    /// anything.
    pub async fn check(&self) -> Result<(), AdminError> {
        self.admin
            .call(Method::GET, "/config/apps", None, None)
            .await
            .map(|_| ())
    }

    /// Serves `served` as given, in one change of the config.
    pub async fn serve(&self, served: &Served) -> Result<(), AdminError> {
        self.change(|apps| config::put(apps, self.ports, served))
            .await?;
        self.expected().insert(served.key.clone(), served.clone());
        Ok(())
    }

    /// Serves all of `routes` in one change (a restore from the records),
    /// which become what this runner expects the proxy to have.
    pub async fn serve_all(&self, routes: &[Served]) -> Result<(), AdminError> {
        self.change(|apps| {
            for served in routes {
                config::put(apps, self.ports, served);
            }
        })
        .await?;
        *self.expected() = routes
            .iter()
            .map(|served| (served.key.clone(), served.clone()))
            .collect();
        Ok(())
    }

    /// Stops serving `key` at all.
    pub async fn withdraw(&self, key: &str) -> Result<(), AdminError> {
        self.change(|apps| config::remove(apps, key)).await?;
        self.expected().remove(key);
        Ok(())
    }

    /// The upstreams the proxy has for `key` now, `None` when it has no route
    /// for it.
    pub async fn upstreams(&self, key: &str) -> Result<Option<Vec<String>>, AdminError> {
        let (apps, _) = self.read().await?;
        Ok(config::served(&apps)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, upstreams)| upstreams))
    }

    /// Whether a route this runner put in the proxy is gone (the proxy
    /// restarted without its config, or someone removed it).
    pub async fn lost_routes(&self) -> Result<bool, AdminError> {
        let expected: Vec<String> = self.expected().keys().cloned().collect();
        if expected.is_empty() {
            return Ok(false);
        }
        let (apps, _) = self.read().await?;
        let present = config::served(&apps);
        Ok(expected
            .iter()
            .any(|key| !present.iter().any(|(k, _)| k == key)))
    }

    fn expected(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Served>> {
        self.expected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn read(&self) -> Result<(Value, Option<String>), AdminError> {
        let answer = self
            .admin
            .call(Method::GET, "/config/apps", None, None)
            .await?;
        let apps = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        Ok((apps, answer.etag))
    }

    /// Reads `apps`, changes it with `edit`, and writes it back unless
    /// another writer changed it meanwhile, in which case it starts over.
    async fn change(&self, edit: impl Fn(&mut Value)) -> Result<(), AdminError> {
        let mut last = AdminError::Conflict;
        for _ in 0..CHANGE_ATTEMPTS {
            let (mut apps, etag) = self.read().await?;
            let before = apps.clone();
            edit(&mut apps);
            if apps == before {
                return Ok(());
            }
            // PUT creates a missing key, PATCH replaces an existing one.
            let method = if before.is_null() {
                Method::PUT
            } else {
                Method::PATCH
            };
            let body = serde_json::to_vec(&apps).expect("JSON values serialize");
            match self
                .admin
                .call(method, "/config/apps", Some(body), etag.as_deref())
                .await
            {
                Ok(_) => return Ok(()),
                Err(AdminError::Conflict) => last = AdminError::Conflict,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

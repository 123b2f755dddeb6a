//! The gateway's REST API (shared/spec/api.md), as `up` and `bench` call it.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::http;

/// A client of one gateway with the API token.
pub struct Api {
    /// `host:port` of the gateway.
    addr: String,
    /// `Bearer <token>`.
    auth: String,
}

impl Api {
    pub fn new(addr: &str, token: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            auth: format!("Bearer {token}"),
        }
    }

    /// `host:port` of the gateway.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The `Authorization` header's value.
    pub fn auth(&self) -> &str {
        &self.auth
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, Value)> {
        let headers = [
            ("Authorization", self.auth.as_str()),
            ("Content-Type", content_type),
        ];
        let answer = http::request(&self.addr, method, path, &headers, body)?;
        let value = if answer.body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&answer.body)
                .with_context(|| format!("{method} {path}: not JSON: {}", answer.body.trim()))?
        };
        Ok((answer.status, value))
    }

    /// `GET path`, which must answer 200.
    pub fn get(&self, path: &str) -> Result<Value> {
        match self.call("GET", path, "application/json", b"")? {
            (200, value) => Ok(value),
            (status, value) => bail!("GET {path}: {status} {value}"),
        }
    }

    /// `GET path` of a text resource (a task's log), which must answer 200.
    pub fn text(&self, path: &str) -> Result<String> {
        let headers = [("Authorization", self.auth.as_str())];
        let answer = http::request(&self.addr, "GET", path, &headers, b"")?;
        match answer.status {
            200 => Ok(answer.body),
            status => bail!("GET {path}: {status} {}", answer.body.trim()),
        }
    }

    /// `POST path` with a JSON body, which must answer 2xx.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        match self.call(
            "POST",
            path,
            "application/json",
            body.to_string().as_bytes(),
        )? {
            (200..=299, value) => Ok(value),
            (status, value) => bail!("POST {path}: {status} {value}"),
        }
    }

    /// Creates the workflow `name` from its YAML `definition`, or makes the
    /// definition its new version when it exists; returns its id.
    pub fn register(&self, name: &str, definition: &str) -> Result<u64> {
        let yaml = "application/yaml";
        let (status, created) = self.call("POST", "/api/workflows", yaml, definition.as_bytes())?;
        match status {
            201 => id(&created, "id"),
            409 => {
                let list = self.get("/api/workflows")?;
                let existing = list
                    .as_array()
                    .and_then(|all| all.iter().find(|w| w["name"] == name))
                    .with_context(|| format!("the workflow name {name} is taken but not listed"))?;
                let wid = id(existing, "id")?;
                let path = format!("/api/workflows/{wid}");
                match self.call("PUT", &path, yaml, definition.as_bytes())? {
                    (200, _) => Ok(wid),
                    (status, answer) => {
                        bail!("cannot update the workflow {name}: {status} {answer}")
                    }
                }
            }
            other => bail!("cannot register the workflow {name}: {other} {created}"),
        }
    }

    /// Starts a task of the workflow on `main` (at `commit`, else the
    /// branch head); returns the task's id.
    pub fn run(&self, workflow_id: u64, commit: Option<&str>) -> Result<u64> {
        let mut body = json!({ "branch": "main" });
        if let Some(commit) = commit {
            body["commit"] = json!(commit);
        }
        let answer = self.post(&format!("/api/workflows/{workflow_id}/run"), &body)?;
        id(&answer, "task_id")
    }
}

/// The positive integer id in `value[key]`.
pub fn id(value: &Value, key: &str) -> Result<u64> {
    value[key]
        .as_u64()
        .with_context(|| format!("no {key} in {value}"))
}

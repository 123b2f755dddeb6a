//! The REST API under `/api` (api.md), each route a thin translation to one
//! call of the orchestrator's public gRPC API.

pub mod alerts;
pub mod deployments;
pub mod insights;
pub mod tasks;
pub mod workflows;

use actix_web::web::Path;

use crate::error::{HttpError, not_found};

/// An id from the path; anything but a positive integer is an unknown id.
pub fn id(path: &str, what: &str) -> Result<i64, HttpError> {
    path.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| not_found(format!("{what} {path} not found")))
}

pub fn path_id(path: Path<String>, what: &str) -> Result<i64, HttpError> {
    id(&path.into_inner(), what)
}

//! The orchestrator's gRPC services. Generated proto types stop here: each
//! handler converts its request into domain or row types (`convert`), calls
//! [`App`](crate::app::App), and converts the answer back.

mod convert;
mod notifier;
mod public;
mod runner;

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

pub use convert::event_message;
pub use notifier::NotifierService;
pub use public::PublicApi;
pub use runner::RunnerService;

/// Checks `authorization: Bearer <token>` on every call.
#[derive(Clone)]
pub struct Auth {
    token: Arc<str>,
}

impl Auth {
    pub fn new(token: &str) -> Self {
        Self {
            token: Arc::from(token),
        }
    }

    #[allow(clippy::result_large_err)]
    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(presented.as_bytes().ct_eq(self.token.as_bytes())) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("missing or wrong bearer token"))
        }
    }
}

//! Bearer tokens on gRPC: the one a client presents ([`Bearer`]) and the
//! check a server makes ([`RequireBearer`]). Every Slipway client call goes
//! through [`Bearer`], so it also carries the caller's trace context.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Adds `authorization: Bearer <token>` to every call, and the W3C trace
/// context (`traceparent`) of the span the call is made in.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    /// `None` when the token has characters a header cannot carry.
    pub fn new(token: &str) -> Option<Self> {
        MetadataValue::try_from(format!("Bearer {token}"))
            .ok()
            .map(Self)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        telemetry::propagation::inject_metadata(req.metadata_mut());
        Ok(req)
    }
}

/// Checks `authorization: Bearer <token>` on every call, in constant time.
#[derive(Clone)]
pub struct RequireBearer {
    token: Arc<str>,
}

impl RequireBearer {
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

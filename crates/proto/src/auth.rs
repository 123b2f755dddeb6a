//! The bearer token a gRPC client presents to the orchestrator.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

/// Adds `authorization: Bearer <token>` to every call.
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
        Ok(req)
    }
}

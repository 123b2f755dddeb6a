//! One small set of error codes, mapped to gRPC and HTTP statuses in one
//! place. The orchestrator turns its errors into an [`ApiError`], which
//! travels as a gRPC status whose details carry the code and any fields
//! (a workflow error's path, line and column); the gateway turns it back
//! into the HTTP answer.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What went wrong, as far as a caller is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthenticated,
    NotFound,
    Conflict,
    PayloadTooLarge,
    InvalidWorkflow,
    Unavailable,
    Internal,
    /// A request body that did not arrive within the gateway's time.
    RequestTimeout,
    /// A count the server bounds would go past its limit (a workflow's
    /// secrets).
    LimitReached,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthenticated => 401,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::InvalidWorkflow => 422,
            Self::Unavailable => 503,
            Self::Internal => 500,
            Self::RequestTimeout => 408,
            Self::LimitReached => 422,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::BadRequest | Self::InvalidWorkflow => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::NotFound => tonic::Code::NotFound,
            Self::Conflict => tonic::Code::FailedPrecondition,
            Self::PayloadTooLarge => tonic::Code::ResourceExhausted,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Internal => tonic::Code::Internal,
            Self::RequestTimeout => tonic::Code::DeadlineExceeded,
            Self::LimitReached => tonic::Code::ResourceExhausted,
        }
    }

    /// The code for a gRPC status that carries no details of ours (it came
    /// from tonic itself: a connection failure, a timeout).
    pub fn from_grpc(code: tonic::Code) -> Self {
        match code {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Self::BadRequest,
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => Self::Unauthenticated,
            tonic::Code::NotFound => Self::NotFound,
            tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition | tonic::Code::Aborted => {
                Self::Conflict
            }
            tonic::Code::ResourceExhausted => Self::PayloadTooLarge,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                Self::Unavailable
            }
            _ => Self::Internal,
        }
    }
}

/// An error with its code, a lowercase message and optional extra fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            fields: Map::new(),
        }
    }

    pub fn with_field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// The JSON body of an HTTP error answer: `{"error": "...", ...fields}`.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".to_owned(), Value::String(self.message.clone()));
        for (k, v) in &self.fields {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> Self {
        let details = serde_json::to_vec(&err).unwrap_or_default();
        tonic::Status::with_details(err.code.grpc_code(), err.message, details.into())
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        if let Ok(err) = serde_json::from_slice::<ApiError>(status.details()) {
            return err;
        }
        // Our services put an `ApiError` in the details of every status they
        // return; `Unknown` or `Internal` without one came from the transport
        // (a stream reset or a connection closed by a dying server): an outage.
        let code = match status.code() {
            tonic::Code::Unknown | tonic::Code::Internal => ErrorCode::Unavailable,
            other => ErrorCode::from_grpc(other),
        };
        let message = match code {
            ErrorCode::Unavailable => match crate::tls::failure(&status) {
                Some(why) => format!("orchestrator unavailable: TLS failed: {why}"),
                None => format!("orchestrator unavailable: {}", status.message()),
            },
            _ => status.message().to_owned(),
        };
        ApiError::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_grpc_status() {
        let err = ApiError::new(ErrorCode::InvalidWorkflow, "name: missing required key")
            .with_field("path", "name")
            .with_field("line", 1);
        let status = tonic::Status::from(err.clone());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(ApiError::from(status), err);
    }

    #[test]
    fn a_call_cut_by_a_dying_server_is_an_outage() {
        for status in [
            tonic::Status::unknown("h2 protocol error: stream no longer needed"),
            tonic::Status::internal("h2 protocol error: error reading a body from connection"),
            tonic::Status::unknown("transport error"),
        ] {
            let err = ApiError::from(status);
            assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
            assert!(
                err.message.starts_with("orchestrator unavailable: "),
                "{err}"
            );
        }
        // Our own internal errors carry their details and stay a 500.
        let ours = tonic::Status::from(ApiError::new(ErrorCode::Internal, "internal error"));
        assert_eq!(ApiError::from(ours).code, ErrorCode::Internal);
    }

    #[test]
    fn plain_statuses_get_a_code() {
        let err = ApiError::from(tonic::Status::unavailable("connection refused"));
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert_eq!(err.code.http_status(), 503);
        assert_eq!(
            err.to_json(),
            serde_json::json!({"error": "orchestrator unavailable: connection refused"})
        );
    }
}

/// A failed call to another service, as the caller sees it.
#[derive(Debug, Clone)]
pub struct CallError(pub ApiError);

impl CallError {
    /// The callee or its database is unreachable: worth retrying.
    pub fn is_transient(&self) -> bool {
        matches!(self.0.code, ErrorCode::Unavailable | ErrorCode::Internal)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for CallError {}

impl From<tonic::Status> for CallError {
    fn from(status: tonic::Status) -> Self {
        Self(ApiError::from(status))
    }
}

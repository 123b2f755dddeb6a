//! What can go wrong, and the exit code each failure gives, so scripts can
//! tell them apart (docs/cli.md).

use proto::{ApiError, ErrorCode};

use crate::args::Format;

/// Exit codes.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    /// The task the command waited for ended `failed` or `cancelled`.
    pub const TASK_FAILED: u8 = 1;
    /// Clap's code for a bad command line; ours for bad settings too.
    pub const USAGE: u8 = 2;
    pub const INVALID_WORKFLOW: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const CONFLICT: u8 = 5;
    pub const UNAUTHENTICATED: u8 = 6;
    /// The orchestrator (or its database) cannot be reached; worth repeating.
    pub const UNAVAILABLE: u8 = 7;
    /// Anything else: a request the server refused as malformed, an
    /// unreadable file, an internal error.
    pub const OTHER: u8 = 8;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server's answer, or the offline check's, in the API's terms.
    #[error("{0}")]
    Api(ApiError),
    /// A setting that cannot work (a token a header cannot carry).
    #[error("{0}")]
    Usage(String),
    /// A local file or the terminal.
    #[error("{0}")]
    Io(String),
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::Api(ApiError::from(status))
    }
}

impl From<ApiError> for Error {
    fn from(err: ApiError) -> Self {
        Self::Api(err)
    }
}

impl Error {
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::Api(ApiError::new(ErrorCode::NotFound, message))
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Api(err) => match err.code {
                ErrorCode::InvalidWorkflow => exit::INVALID_WORKFLOW,
                ErrorCode::NotFound => exit::NOT_FOUND,
                ErrorCode::Conflict => exit::CONFLICT,
                ErrorCode::Unauthenticated => exit::UNAUTHENTICATED,
                ErrorCode::Unavailable => exit::UNAVAILABLE,
                ErrorCode::BadRequest
                | ErrorCode::PayloadTooLarge
                | ErrorCode::RequestTimeout
                | ErrorCode::LimitReached
                | ErrorCode::Internal => exit::OTHER,
            },
            Self::Usage(_) => exit::USAGE,
            Self::Io(_) => exit::OTHER,
        }
    }

    /// One line on stderr: `error: <message>`, or with `--output json` the
    /// REST API's error body (`{"error", ...details}`).
    pub fn print(&self, format: Format) {
        match format {
            Format::Table => eprintln!("error: {self}"),
            Format::Json => {
                let body = match self {
                    Self::Api(err) => err.to_json(),
                    other => serde_json::json!({ "error": other.to_string() }),
                };
                eprintln!("{body}");
            }
        }
    }
}

/// The 422 answer the server gives for this workflow error: the same
/// message, path, line and column (`invalid_workflow` in the orchestrator).
pub fn invalid_workflow(err: &domain::workflow::SpecError) -> ApiError {
    ApiError::new(ErrorCode::InvalidWorkflow, err.to_string())
        .with_field("path", err.path.clone())
        .with_field("line", err.line)
        .with_field("column", err.column)
}

//! HTTP answers for errors: `{"error": "...", ...}` with the status the
//! shared [`ErrorCode`] table gives.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use proto::{ApiError, ErrorCode};

/// An [`ApiError`] on its way to an HTTP client.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self.0.to_json())
    }
}

impl From<ApiError> for HttpError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl From<tonic::Status> for HttpError {
    fn from(status: tonic::Status) -> Self {
        Self(ApiError::from(status))
    }
}

pub fn bad_request(msg: impl Into<String>) -> HttpError {
    HttpError(ApiError::new(ErrorCode::BadRequest, msg))
}

pub fn unauthorized(msg: impl Into<String>) -> HttpError {
    HttpError(ApiError::new(ErrorCode::Unauthenticated, msg))
}

pub fn not_found(msg: impl Into<String>) -> HttpError {
    HttpError(ApiError::new(ErrorCode::NotFound, msg))
}

pub fn unavailable(msg: impl Into<String>) -> HttpError {
    HttpError(ApiError::new(ErrorCode::Unavailable, msg))
}

pub fn too_large(limit: usize) -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("body larger than {limit} bytes"),
    ))
}

pub fn timed_out(msg: impl Into<String>) -> HttpError {
    HttpError(ApiError::new(ErrorCode::RequestTimeout, msg))
}

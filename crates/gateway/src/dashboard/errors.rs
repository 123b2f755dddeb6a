//! Errors as pages, with the status the API would give. An error page is
//! rendered where the error happens, without the navigation (the error does
//! not know the request); [`in_layout`] then puts it in the frame of a
//! logged-in user, so a missing page or task keeps the way back.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use proto::{ApiError, ErrorCode};

use super::auth::valid_session;
use super::{Layout, with_headers};
use crate::State;

/// An error shown as a page, with the status the API would give.
#[derive(Debug, Clone)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The error page in the frame `layout` gives.
    fn render(&self, layout: Layout) -> HttpResponse {
        let page = ErrorPage {
            layout,
            status: self.status.as_u16(),
            message: self.message.clone(),
        };
        let mut response = match page.render() {
            Ok(body) => with_headers(HttpResponse::build(self.status), body),
            Err(_) => HttpResponse::build(self.status).body(self.message.clone()),
        };
        response.extensions_mut().insert(self.clone());
        response
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ApiError> for PageError {
    fn from(err: ApiError) -> Self {
        Self {
            status: StatusCode::from_u16(err.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: err.message,
        }
    }
}

impl From<tonic::Status> for PageError {
    fn from(status: tonic::Status) -> Self {
        Self::from(ApiError::from(status))
    }
}

impl From<crate::error::HttpError> for PageError {
    fn from(err: crate::error::HttpError) -> Self {
        Self::from(err.0)
    }
}

pub fn internal_page(err: impl std::fmt::Display) -> PageError {
    tracing::error!(error = %err, "template failed");
    PageError::from(ApiError::new(ErrorCode::Internal, "internal error"))
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        self.render(Layout::anonymous())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    message: String,
}

/// Whether a request for a route that does not exist is a browser asking
/// for a page (answered with the not-found page) rather than an API client
/// (answered in JSON).
pub fn wants_page(req: &HttpRequest) -> bool {
    let html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    matches!(*req.method(), Method::GET | Method::HEAD)
        && req.path() != "/api"
        && !req.path().starts_with("/api/")
        && html
}

/// The not-found page of a path no route serves.
pub fn not_found(req: &HttpRequest) -> PageError {
    PageError::new(
        StatusCode::NOT_FOUND,
        format!("there is no page at {}", req.path()),
    )
}

/// Puts an error page in the frame of the logged-in user who got it.
pub async fn in_layout(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let Some(error) = res.response().extensions().get::<PageError>().cloned() else {
        return Ok(res.map_into_boxed_body());
    };
    let Some(session) = valid_session(res.request()) else {
        return Ok(res.map_into_boxed_body());
    };
    let layout = match res.request().app_data::<Data<State>>() {
        Some(state) => Layout::load(state, &session).await,
        None => Layout::anonymous(),
    };
    // A flash is for the page its action meant, not for an error.
    let layout = Layout {
        flash: String::new(),
        ..layout
    };
    let (req, _) = res.into_parts();
    Ok(ServiceResponse::new(req, error.render(layout)))
}

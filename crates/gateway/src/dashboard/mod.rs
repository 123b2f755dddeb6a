//! The dashboard: server-rendered pages (askama templates compiled into the
//! gateway, so nothing beyond `cargo build` builds it) behind a login with
//! the API token. A little JavaScript (`static/app.js`) refreshes lists and
//! summaries in place, follows a task's log over server-sent events, asks
//! before an action and shows times in the viewer's zone; every page works
//! without it, short of the live parts.
//!
//! The session is a signed cookie (`HttpOnly`, `SameSite=Strict`); every
//! form that changes state carries the session's CSRF token, and what it
//! did is said on the next page by a short-lived signed flash cookie.
//!
//! Pages by module: `insights` (the front page's overview of every
//! workflow by environment, and a workflow's figures as `charts`), `tasks`
//! (the list, a task, its log), `workflows` (the list, a workflow with its
//! environments), `alerts`, `approvals`;
//! `actions` the forms that change things; `auth` the login and the
//! session; `errors` error pages in the layout.

pub mod actions;
pub mod alerts;
pub mod ansi;
pub mod approvals;
pub mod auth;
pub mod charts;
pub mod errors;
pub mod image;
pub mod insights;
pub mod logview;
pub mod session;
pub mod tasks;
pub mod time;
pub mod view;
pub mod workflows;

use actix_web::http::header;
use actix_web::web;
use actix_web::{HttpResponse, HttpResponseBuilder};
use askama::Template;

use crate::State;
use crate::json::Environment;
pub use auth::Session;
pub use errors::PageError;

/// Every route of the dashboard.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(insights::overview_page))
        .route("/tasks", web::get().to(tasks::list_page))
        .route("/login", web::get().to(auth::login_form))
        .route("/login", web::post().to(auth::login))
        .route("/logout", web::post().to(auth::logout))
        .route("/static/app.css", web::get().to(css))
        .route("/static/app.js", web::get().to(js))
        .route("/favicon.svg", web::get().to(favicon))
        .route("/favicon.ico", web::get().to(favicon))
        .route("/tasks/{id}", web::get().to(tasks::page))
        .route("/tasks/{id}/log.txt", web::get().to(tasks::raw_log))
        .route("/tasks/{id}/retry", web::post().to(actions::retry))
        .route("/tasks/{id}/cancel", web::post().to(actions::cancel))
        .route("/tasks/{id}/deploy", web::post().to(actions::deploy))
        .route("/workflows", web::get().to(workflows::list_page))
        .route("/workflows/{id}", web::get().to(workflows::page))
        .route("/workflows/{id}/run", web::post().to(actions::run))
        .route(
            "/workflows/{id}/insights",
            web::get().to(insights::insights_page),
        )
        .route(
            "/workflows/{id}/environments/{env}/rollback",
            web::post().to(actions::rollback),
        )
        .route("/approvals", web::get().to(approvals::page))
        .route("/alerts", web::get().to(alerts::page))
        .route("/ui/tasks", web::get().to(tasks::rows))
        .route("/ui/tasks/{id}", web::get().to(tasks::summary))
        .route("/ui/tasks/{id}/log", web::get().to(tasks::live_log))
        .route("/ui/workflows", web::get().to(workflows::rows))
        .route("/ui/workflows/{id}", web::get().to(workflows::live_part))
        .route("/ui/alerts", web::get().to(alerts::rows));
}

/// What every page's frame shows around its content.
pub struct Layout {
    /// The session's CSRF token for the logout form; empty: logged out,
    /// and the frame has no navigation.
    pub csrf: String,
    /// What the last action did, said once.
    pub flash: String,
    /// Deployments waiting for an approval, counted in the navigation.
    pub approvals: usize,
}

impl Layout {
    /// The frame of a logged-out page (the login).
    pub fn anonymous() -> Self {
        Self {
            csrf: String::new(),
            flash: String::new(),
            approvals: 0,
        }
    }

    /// The frame of a logged-in page: its flash, and the approvals waiting
    /// (a failure to count them leaves the count out, not the page).
    pub async fn load(state: &State, session: &Session) -> Self {
        let approvals = state
            .client()
            .list_deployments(proto::ListDeploymentsRequest {
                status: Some("awaiting_approval".to_owned()),
                limit: Some(500),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().deployments.len())
            .unwrap_or(0);
        Self {
            csrf: session.csrf(),
            flash: session.flash.clone(),
            approvals,
        }
    }
}

/// A workflow's environments, for a page that shows them beside something
/// else: none when they cannot be read (the page shows less, not an error).
pub async fn environments_or_none(
    client: &mut crate::Client,
    workflow_id: i64,
) -> Vec<Environment> {
    client
        .list_environments(proto::ListEnvironmentsRequest { workflow_id })
        .await
        .map(|r| {
            r.into_inner()
                .environments
                .into_iter()
                .map(Environment::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A rendered page with the headers every dashboard page carries: no
/// framing by other sites, no inline scripts, nothing cached.
pub fn with_headers(mut builder: HttpResponseBuilder, body: String) -> HttpResponse {
    builder
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// A page in its frame; a flash it showed (`flash_shown`) is not shown
/// again.
pub fn render(template: &impl Template, flash_shown: bool) -> Result<HttpResponse, PageError> {
    let body = template.render().map_err(errors::internal_page)?;
    let mut builder = HttpResponse::Ok();
    if flash_shown {
        builder.insert_header((header::SET_COOKIE, auth::clear_flash_cookie()));
    }
    Ok(with_headers(builder, body))
}

/// A part of a page that scripts fetch to refresh it in place.
pub fn fragment(template: &impl Template) -> Result<HttpResponse, PageError> {
    let body = template.render().map_err(errors::internal_page)?;
    Ok(with_headers(HttpResponse::Ok(), body))
}

pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .finish()
}

async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(include_str!("../../static/app.css"))
}

async fn js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(include_str!("../../static/app.js"))
}

/// The icon, as SVG at both names browsers ask for.
async fn favicon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "max-age=86400"))
        .body(include_str!("../../static/favicon.svg"))
}

//! The login with the API token, the session a request carries, and the
//! flash: what an action did, said once on the page it sends the user to,
//! carried by a cookie signed like the session so no other site can put
//! words there.

use actix_web::dev::Payload;
use actix_web::http::{Method, StatusCode, header};
use actix_web::web::{Data, Form, Query};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::errors::{PageError, internal_page};
use super::{Layout, redirect, session, with_headers};
use crate::State;

/// The cookie of the flash.
const FLASH_COOKIE: &str = "slipway_flash";

/// How long a flash waits for the page it is meant for.
const FLASH_SECS: i64 = 60;

/// A logged-in user: handlers that take one are behind the login.
pub struct Session {
    cookie: String,
    token: String,
    /// What the last action did, for the page to say; empty: nothing.
    pub flash: String,
}

impl Session {
    pub fn csrf(&self) -> String {
        session::csrf(&self.token, &self.cookie)
    }

    /// Refuses a state-changing form without this session's CSRF token.
    pub fn check(&self, presented: &str) -> Result<(), PageError> {
        if session::csrf_matches(&self.token, &self.cookie, presented) {
            Ok(())
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "the form is stale or from another site; reload the page and try again",
            ))
        }
    }

    /// A `Set-Cookie` value that has the next page say `message`.
    pub fn flash_cookie(&self, message: &str) -> String {
        let value: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
        let sig = session::sign(&self.token, "flash", &format!("{}.{value}", self.cookie));
        format!(
            "{FLASH_COOKIE}={value}.{sig}; Path=/; Max-Age={FLASH_SECS}; HttpOnly; SameSite=Strict"
        )
    }
}

/// The `Set-Cookie` value that ends a flash once shown.
pub fn clear_flash_cookie() -> String {
    format!("{FLASH_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

impl FromRequest for Session {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(session_of(req))
    }
}

/// The session of a request, if it carries a valid one.
pub fn valid_session(req: &HttpRequest) -> Option<Session> {
    let token = req
        .app_data::<Data<State>>()
        .map(|s| s.settings.api_token.clone())
        .unwrap_or_default();
    let cookie = cookie_value(req, session::COOKIE)?;
    if !session::valid(&token, &cookie, Utc::now().timestamp()) {
        return None;
    }
    let flash = cookie_value(req, FLASH_COOKIE)
        .and_then(|v| {
            let (value, sig) = v.rsplit_once('.')?;
            session::signed(&token, "flash", &format!("{cookie}.{value}"), sig).then(|| {
                url::form_urlencoded::parse(format!("m={value}").as_bytes())
                    .next()
                    .map(|(_, m)| m.into_owned())
                    .unwrap_or_default()
            })
        })
        .unwrap_or_default();
    Some(Session {
        cookie,
        token,
        flash,
    })
}

fn session_of(req: &HttpRequest) -> Result<Session, actix_web::Error> {
    if let Some(session) = valid_session(req) {
        return Ok(session);
    }
    // Pages send the user to the login; what scripts fetch gets a 401.
    if req.method() == Method::GET && !req.path().starts_with("/ui/") {
        let next = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        Err(LoginRedirect(local_path(Some(next))).into())
    } else {
        Err(crate::error::unauthorized("log in to the dashboard first").into())
    }
}

/// The value of one cookie of the request.
fn cookie_value(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// `next` if it is a path on this site (never `//host` or a full URL),
/// without any token in its query: a token never belongs in a URL, and one
/// pasted into a link must not travel on through the login.
pub fn local_path(next: Option<&str>) -> String {
    let Some(n) = next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
    else {
        return "/".to_owned();
    };
    let Some((path, query)) = n.split_once('?') else {
        return n.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let key: String = url::form_urlencoded::parse(format!("{key}=").as_bytes())
                .next()
                .map(|(k, _)| k.to_ascii_lowercase())
                .unwrap_or_default();
            !pair.is_empty() && !key.ends_with("token")
        })
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

fn session_cookie(value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        session::COOKIE,
        if secure { "; Secure" } else { "" }
    )
}

/// Sends a user who is not logged in to the login page.
#[derive(Debug)]
struct LoginRedirect(String);

impl std::fmt::Display for LoginRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "log in first")
    }
}

impl ResponseError for LoginRedirect {
    fn status_code(&self) -> StatusCode {
        StatusCode::SEE_OTHER
    }

    fn error_response(&self) -> HttpResponse {
        let next: String = url::form_urlencoded::byte_serialize(self.0.as_bytes()).collect();
        redirect(&format!("/login?next={next}"))
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    error: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_form(query: Query<NextQuery>) -> Result<HttpResponse, PageError> {
    let body = LoginPage {
        layout: Layout::anonymous(),
        next: local_path(query.next.as_deref()),
        error: String::new(),
    }
    .render()
    .map_err(internal_page)?;
    Ok(with_headers(HttpResponse::Ok(), body))
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

pub async fn login(state: Data<State>, form: Form<LoginForm>) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    let next = local_path(form.next.as_deref());
    let token = &state.settings.api_token;
    if !session::token_matches(token, form.token.trim()) {
        tracing::warn!("dashboard login with a wrong token");
        let body = LoginPage {
            layout: Layout::anonymous(),
            next,
            error: "that is not the API token".to_owned(),
        }
        .render()
        .map_err(internal_page)?;
        return Ok(with_headers(HttpResponse::Unauthorized(), body));
    }
    let cookie = session::issue(token, Utc::now().timestamp());
    let secure = state.settings.public_url.starts_with("https://");
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, next))
        .insert_header((
            header::SET_COOKIE,
            session_cookie(&cookie, session::LIFETIME_SECS, secure),
        ))
        .finish())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

pub async fn logout(session: Session, form: Form<CsrfForm>) -> Result<HttpResponse, PageError> {
    session.check(&form.csrf)?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login"))
        .insert_header((header::SET_COOKIE, session_cookie("", 0, false)))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_path(Some("/tasks/3?x=1")), "/tasks/3?x=1");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn tokens_are_stripped_from_the_next_page() {
        assert_eq!(local_path(Some("/tasks/3?token=s3cret")), "/tasks/3");
        assert_eq!(
            local_path(Some("/tasks?workflow_id=2&token=s3cret&status=failed")),
            "/tasks?workflow_id=2&status=failed"
        );
        assert_eq!(
            local_path(Some("/?Access_Token=a&%74oken=b&api%5Ftoken=c")),
            "/"
        );
        assert_eq!(local_path(Some("/tasks?tokens=1")), "/tasks?tokens=1");
        assert_eq!(local_path(Some("/tasks?")), "/tasks");
    }
}

//! Request bodies under a size limit and a deadline, so an oversized body
//! gets our `413` JSON instead of a bare error and is never read past the
//! limit, and a client that trickles its body in is cut off with a `408`
//! after `SLIPWAY_REQUEST_TIMEOUT` instead of holding its connection.

use std::io;
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload as DevPayload, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PayloadError, UrlencodedError};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut, Data, Payload};
use actix_web::{HttpMessage, HttpRequest, web};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;

use crate::State;
use crate::error::{HttpError, bad_request, timed_out, too_large};

/// What the body stream yields once the deadline has passed.
const TIMED_OUT: &str = "the request body did not arrive in time";

pub async fn read(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
) -> Result<Bytes, HttpError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(payload_error)?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses a JSON body; an empty body is read as `{}`.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| bad_request(format!("malformed json: {e}")))
}

/// Middleware on every route: the request's body stream ends with an error
/// once `SLIPWAY_REQUEST_TIMEOUT` has passed since its headers, whoever
/// reads it ([`read`] or an extractor). The stream lets go of the
/// connection's body then, so the connection is closed after the answer.
pub async fn deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let timeout = req
        .app_data::<Data<State>>()
        .and_then(|s| s.settings.request_timeout().ok())
        .unwrap_or(std::time::Duration::from_secs(30));
    let payload = req.take_payload();
    if matches!(payload, DevPayload::None) {
        return next.call(req).await;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let timed = futures_util::stream::unfold(Some(payload), move |payload| async move {
        let mut payload = payload?;
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(payload))),
            Ok(None) => None,
            // Dropping the payload here stops reading from the client.
            Err(_) => Some((
                Err(PayloadError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    TIMED_OUT,
                ))),
                None,
            )),
        }
    });
    let timed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(timed);
    req.set_payload(DevPayload::from(timed));
    next.call(req).await
}

/// A failure of the body stream: the deadline, or the client.
fn payload_error(err: PayloadError) -> HttpError {
    match &err {
        PayloadError::Io(e) if e.kind() == io::ErrorKind::TimedOut => timed_out(TIMED_OUT),
        _ => bad_request(format!("cannot read the body: {err}")),
    }
}

/// The limits and error answers of actix's own extractors (the dashboard's
/// forms; JSON bodies should a handler take one), so that they
/// answer as [`read`] does.
pub fn extractor_limits(cfg: &mut web::ServiceConfig, limit: usize) {
    cfg.app_data(
        web::FormConfig::default()
            .limit(limit)
            .error_handler(|err, _| form_error(err).into()),
    )
    .app_data(
        web::JsonConfig::default()
            .limit(limit)
            .error_handler(|err, _| json_error(err).into()),
    );
}

fn form_error(err: UrlencodedError) -> HttpError {
    match err {
        UrlencodedError::Overflow { limit, .. } => too_large(limit),
        UrlencodedError::Payload(e) => payload_error(e),
        other => bad_request(format!("invalid form: {other}")),
    }
}

fn json_error(err: JsonPayloadError) -> HttpError {
    match err {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => too_large(limit),
        JsonPayloadError::Payload(e) => payload_error(e),
        other => bad_request(format!("malformed json: {other}")),
    }
}

//! Reading request bodies under a size limit, so an oversized body gets our
//! `413` JSON instead of a bare error, and a body is never read past it.

use actix_web::HttpRequest;
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{HttpError, bad_request, too_large};

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
        let chunk = chunk.map_err(|e| bad_request(format!("cannot read the body: {e}")))?;
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

//! `/api/tasks`: list, read, logs (whole and live), retry, cancel.

use actix_web::web::{Bytes, Data, Path, Query};
use actix_web::{HttpResponse, http::header};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::path_id;
use crate::State;
use crate::error::{HttpError, bad_request};
use crate::json::Task;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    workflow_id: Option<i64>,
    status: Option<String>,
    limit: Option<i64>,
    before: Option<i64>,
}

pub async fn list(state: Data<State>, query: Query<ListQuery>) -> Result<HttpResponse, HttpError> {
    let q = query.into_inner();
    let tasks = state
        .client()
        .list_tasks(proto::ListTasksRequest {
            workflow_id: q.workflow_id,
            status: q.status,
            limit: q.limit,
            before: q.before,
        })
        .await?
        .into_inner()
        .tasks;
    let out: Vec<Task> = tasks.into_iter().map(Task::from).collect();
    Ok(HttpResponse::Ok().json(out))
}

pub async fn get(state: Data<State>, path: Path<String>) -> Result<HttpResponse, HttpError> {
    let id = path_id(path, "task")?;
    let task = state
        .client()
        .get_task(proto::GetTaskRequest { id })
        .await?
        .into_inner();
    Ok(HttpResponse::Ok().json(Task::from(task)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    step: Option<String>,
}

pub async fn logs(
    state: Data<State>,
    path: Path<String>,
    query: Query<LogQuery>,
) -> Result<HttpResponse, HttpError> {
    let task_id = path_id(path, "task")?;
    let text = state
        .client()
        .get_logs(proto::GetLogsRequest {
            task_id,
            step: query.into_inner().step,
        })
        .await?
        .into_inner()
        .text;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(text))
}

/// One server-sent event; every line of `data` becomes a `data:` field, so
/// a client joining them with newlines gets the text back.
pub fn sse_event(event: &str, data: &str) -> Bytes {
    let mut out = format!("event: {event}\n");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// The live log as `text/event-stream`: `log` events carry text (a chunk may
/// end mid-line), one `end` event carries `{"status"}` when the task ends.
pub async fn stream(state: Data<State>, path: Path<String>) -> Result<HttpResponse, HttpError> {
    let task_id = path_id(path, "task")?;
    let pieces = state
        .client()
        .stream_logs(proto::StreamLogsRequest {
            task_id,
            chunks: false,
        })
        .await?
        .into_inner();
    // A chunk may end inside a UTF-8 character: its first bytes wait for
    // the next piece instead of turning into replacement characters.
    let mut carry: Vec<u8> = Vec::new();
    let events = pieces.filter_map(move |piece| {
        let event = match piece {
            Ok(p) => match p.finished {
                Some(status) => {
                    let mut out = Vec::new();
                    if !carry.is_empty() {
                        out.extend_from_slice(&sse_event("log", &String::from_utf8_lossy(&carry)));
                        carry.clear();
                    }
                    out.extend_from_slice(&sse_event(
                        "end",
                        &json!({"status": status}).to_string(),
                    ));
                    Some(Bytes::from(out))
                }
                None => {
                    carry.extend_from_slice(&p.text);
                    let whole = carry.len() - incomplete_tail(&carry);
                    let text: Vec<u8> = carry.drain(..whole).collect();
                    (!text.is_empty()).then(|| sse_event("log", &String::from_utf8_lossy(&text)))
                }
            },
            Err(status) => Some(sse_event(
                "error",
                &json!({"error": status.message()}).to_string(),
            )),
        };
        std::future::ready(event.map(Ok::<_, actix_web::Error>))
    });
    Ok(event_stream(events))
}

/// A `text/event-stream` answer, marked so that proxies pass each event on
/// at once.
pub fn event_stream<S>(events: S) -> HttpResponse
where
    S: futures_util::Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
{
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(events)
}

/// The root span of the task it creates.
#[tracing::instrument(
    name = "retry task",
    parent = None,
    skip_all,
    fields(otel.kind = "server", retry_of = tracing::field::Empty, task_id = tracing::field::Empty)
)]
pub async fn retry(state: Data<State>, path: Path<String>) -> Result<HttpResponse, HttpError> {
    let id = path_id(path, "task")?;
    tracing::Span::current().record("retry_of", id);
    let answer = state
        .client()
        .retry_task(proto::RetryTaskRequest { id })
        .await?
        .into_inner();
    tracing::Span::current().record("task_id", answer.task_id);
    Ok(HttpResponse::Accepted().json(json!({"task_id": answer.task_id})))
}

pub async fn cancel(state: Data<State>, path: Path<String>) -> Result<HttpResponse, HttpError> {
    let id = path_id(path, "task")?;
    state
        .client()
        .cancel_task(proto::CancelTaskRequest { id })
        .await?;
    Ok(HttpResponse::Accepted().json(json!({"task_id": id})))
}

/// How many bytes at the end of `buf` start a UTF-8 character that is not
/// complete yet.
fn incomplete_tail(buf: &[u8]) -> usize {
    for i in 1..=buf.len().min(3) {
        let b = buf[buf.len() - i];
        if b & 0xC0 == 0x80 {
            continue;
        }
        let need = match b {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if need > i { i } else { 0 };
    }
    0
}

/// Query strings that do not parse are a `400` with our JSON body.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    bad_request(format!("invalid query: {err}")).into()
}

#[cfg(test)]
mod tests {
    use super::sse_event;

    #[test]
    fn a_split_character_waits_for_its_other_bytes() {
        let text = "héllo 日本".as_bytes();
        assert_eq!(super::incomplete_tail(text), 0);
        assert_eq!(super::incomplete_tail(&text[..2]), 1);
        assert_eq!(super::incomplete_tail(&text[..text.len() - 1]), 2);
        assert_eq!(super::incomplete_tail(&text[..text.len() - 2]), 1);
        assert_eq!(super::incomplete_tail(b"plain"), 0);
    }

    #[test]
    fn sse_events_carry_every_line() {
        assert_eq!(
            sse_event("log", "a\nb\r\n"),
            "event: log\ndata: a\ndata: b\ndata: \n\n"
        );
    }
}

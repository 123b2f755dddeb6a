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
        .stream_logs(proto::StreamLogsRequest { task_id })
        .await?
        .into_inner();
    let events = pieces.map(|piece| match piece {
        Ok(p) => match p.finished {
            Some(status) => {
                Ok::<_, actix_web::Error>(sse_event("end", &json!({"status": status}).to_string()))
            }
            None => Ok(sse_event("log", &String::from_utf8_lossy(&p.text))),
        },
        Err(status) => Ok(sse_event(
            "error",
            &json!({"error": status.message()}).to_string(),
        )),
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(events))
}

pub async fn retry(state: Data<State>, path: Path<String>) -> Result<HttpResponse, HttpError> {
    let id = path_id(path, "task")?;
    let answer = state
        .client()
        .retry_task(proto::RetryTaskRequest { id })
        .await?
        .into_inner();
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
    fn sse_events_carry_every_line() {
        assert_eq!(
            sse_event("log", "a\nb\r\n"),
            "event: log\ndata: a\ndata: b\ndata: \n\n"
        );
    }
}

//! A task's log as users read it: the steps' chunks in order, with a header
//! line whenever the output moves on to another step. The same composition
//! serves the whole log and the live stream.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use proto::ApiError;
use store::logs::LogChunk;
use tokio::sync::broadcast::error::RecvError;

use crate::app::App;

/// Chunks read per query while catching up.
const PAGE: i64 = 500;
/// How often a stream looks again when no change was announced (a change in
/// another orchestrator process, or a missed wake-up).
const POLL: Duration = Duration::from_secs(1);

/// Turns chunks into text with step headers.
#[derive(Debug)]
pub struct Composer {
    names: Vec<String>,
    current: Option<i32>,
    at_line_start: bool,
}

impl Composer {
    pub fn new(names: Vec<String>) -> Self {
        Self {
            names,
            current: None,
            at_line_start: true,
        }
    }

    pub fn push(&mut self, chunk: &LogChunk, out: &mut Vec<u8>) {
        if chunk.data.is_empty() {
            return;
        }
        if self.current != Some(chunk.position) {
            if !self.at_line_start {
                out.push(b'\n');
            }
            let name = usize::try_from(chunk.position)
                .ok()
                .and_then(|i| self.names.get(i))
                .map_or("?", String::as_str);
            out.extend_from_slice(format!("==> {name}\n").as_bytes());
            self.current = Some(chunk.position);
        }
        out.extend_from_slice(&chunk.data);
        self.at_line_start = chunk.data.ends_with(b"\n");
    }
}

/// The whole log so far, or one step's output alone.
pub async fn read(app: &App, task_id: i64, step: Option<String>) -> Result<Vec<u8>, ApiError> {
    let detail = app.get_task(task_id).await?;
    let names: Vec<String> = detail.steps.iter().map(|s| s.name.clone()).collect();
    let only = match step {
        Some(name) => Some(
            detail
                .steps
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.position)
                .ok_or_else(|| {
                    ApiError::new(
                        proto::ErrorCode::NotFound,
                        format!("task {task_id} has no step {name}"),
                    )
                })?,
        ),
        None => None,
    };
    let mut composer = Composer::new(names);
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let chunks = app
            .db("task", move |conn| {
                store::logs::after(conn, task_id, after, PAGE)
            })
            .await?;
        let Some(last) = chunks.last() else { break };
        after = last.id;
        for chunk in &chunks {
            match only {
                Some(position) if chunk.position == position => out.extend_from_slice(&chunk.data),
                Some(_) => {}
                None => composer.push(chunk, &mut out),
            }
        }
    }
    Ok(out)
}

/// One piece of a live log: text, or the end with the task's final status.
#[derive(Debug)]
pub enum Piece {
    Text(Vec<u8>),
    Finished(String),
}

pub type PieceStream = Pin<Box<dyn Stream<Item = Result<Piece, ApiError>> + Send>>;

/// The log from the start, then live until the task ends.
pub async fn follow(app: Arc<App>, task_id: i64) -> Result<PieceStream, ApiError> {
    let detail = app.get_task(task_id).await?;
    let names: Vec<String> = detail.steps.iter().map(|s| s.name.clone()).collect();
    // Subscribe before the first read, so no change falls between the two.
    let mut changes = app.subscribe();
    let stream = async_stream(move |tx| async move {
        let mut composer = Composer::new(names);
        let mut after = 0;
        loop {
            // Status first, then chunks: a task seen finished has written
            // all its chunks, so an empty read after it means the end.
            let status = match app
                .db("task", move |conn| store::tasks::status(conn, task_id))
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let chunks = match app
                .db("task", move |conn| {
                    store::logs::after(conn, task_id, after, PAGE)
                })
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if let Some(last) = chunks.last() {
                after = last.id;
                let mut out = Vec::new();
                for chunk in &chunks {
                    composer.push(chunk, &mut out);
                }
                if tx.send(Ok(Piece::Text(out))).await.is_err() {
                    return;
                }
                continue;
            }
            if status.is_finished() {
                let _ = tx.send(Ok(Piece::Finished(status.to_string()))).await;
                return;
            }
            // Wait for a change of this task, or look again after a while.
            let wait = async {
                loop {
                    match changes.recv().await {
                        Ok(id) if id == task_id => return,
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => return,
                        Err(RecvError::Closed) => std::future::pending::<()>().await,
                    }
                }
            };
            // A client that left ends the stream at once, not at the next send.
            tokio::select! {
                _ = tokio::time::timeout(POLL, wait) => {}
                () = tx.closed() => return,
            }
        }
    });
    Ok(stream)
}

/// A stream fed by a task that owns a sender; ends when the task returns or
/// the receiver is dropped.
fn async_stream<F, Fut>(body: F) -> PieceStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Piece, ApiError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: i64, position: i32, data: &str) -> LogChunk {
        LogChunk {
            id,
            position,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn headers_mark_each_step() {
        let mut c = Composer::new(vec!["clone".into(), "build".into()]);
        let mut out = Vec::new();
        for ch in [
            chunk(1, 0, "cloning\n"),
            chunk(2, 1, "compiling"),
            chunk(3, 1, " done"),
            chunk(4, 0, "late\n"),
        ] {
            c.push(&ch, &mut out);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "==> clone\ncloning\n==> build\ncompiling done\n==> clone\nlate\n"
        );
    }
}

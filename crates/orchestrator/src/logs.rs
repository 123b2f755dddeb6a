//! A task's log as users read it: the steps' chunks read in order and
//! composed by [`domain::logs::Composer`], for the whole log and the live
//! stream alike.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use domain::logs::Composer;
use futures_util::Stream;
use proto::ApiError;
use tokio::sync::broadcast::error::RecvError;

use crate::app::App;

/// Chunks read per query while catching up.
const PAGE: i64 = 500;
/// How often a stream looks again when no change was announced (a change in
/// another orchestrator process, or a missed wake-up).
const POLL: Duration = Duration::from_secs(1);

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
                None => composer.push(chunk.position, &chunk.data, &mut out),
            }
        }
    }
    Ok(out)
}

/// One piece of a live log: text, a chunk as stored, or the end with the
/// task's final status.
#[derive(Debug)]
pub enum Piece {
    Text(Vec<u8>),
    /// One step's output as the runner shipped it, without headers: for
    /// clients that lay the log out per step, with times.
    Chunk {
        position: i32,
        data: Vec<u8>,
        at: chrono::DateTime<chrono::Utc>,
    },
    Finished(String),
}

pub type PieceStream = Pin<Box<dyn Stream<Item = Result<Piece, ApiError>> + Send>>;

/// The log from the start, then live until the task ends: composed text,
/// or with `chunks` each chunk as stored.
pub async fn follow(app: Arc<App>, task_id: i64, chunks: bool) -> Result<PieceStream, ApiError> {
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
            let read = match app
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
            if let Some(last) = read.last() {
                after = last.id;
                if chunks {
                    for chunk in read {
                        let piece = Piece::Chunk {
                            position: chunk.position,
                            data: chunk.data,
                            at: chunk.created_at,
                        };
                        if tx.send(Ok(piece)).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                let mut out = Vec::new();
                for chunk in &read {
                    composer.push(chunk.position, &chunk.data, &mut out);
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

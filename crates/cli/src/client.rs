//! The connection to the orchestrator's public API, and the look-ups the
//! commands share (a workflow by name or id, following a task's log).

use std::io::Write;
use std::time::Duration;

use proto::auth::Bearer;
use proto::slipway_client::SlipwayClient;
use proto::{ApiError, ErrorCode};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::error::Error;
use crate::output;

/// How long a call may take to be answered (a followed log may then last
/// as long as its task).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest answer accepted: a whole log comes in one message.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

pub type Client = SlipwayClient<InterceptedService<Channel, Bearer>>;

/// A client of the orchestrator at `url`; connects on the first call.
pub fn connect(
    url: &str,
    ca: Option<&std::path::Path>,
    token: Option<&str>,
) -> Result<Client, Error> {
    let channel = proto::orchestrator_channel(url, ca, CALL_TIMEOUT)
        .map_err(|e| Error::Usage(e.replace("SLIPWAY_ORCHESTRATOR_URL", "--orchestrator-url")))?;
    let bearer = Bearer::new(token.unwrap_or_default()).ok_or_else(|| {
        Error::Usage("the api token (SLIPWAY_API_TOKEN) must be printable ascii".to_owned())
    })?;
    Ok(SlipwayClient::with_interceptor(channel, bearer).max_decoding_message_size(MAX_MESSAGE))
}

/// The workflow a user named: by name first, then by id.
pub async fn workflow(client: &mut Client, name_or_id: &str) -> Result<proto::Workflow, Error> {
    let workflows = client
        .list_workflows(proto::ListWorkflowsRequest {})
        .await?
        .into_inner()
        .workflows;
    let id = name_or_id.parse::<i64>().ok();
    workflows
        .iter()
        .find(|w| w.name == name_or_id)
        .or_else(|| workflows.iter().find(|w| Some(w.id) == id))
        .cloned()
        .ok_or_else(|| Error::not_found(format!("workflow {name_or_id} not found")))
}

/// The id of an optional workflow filter.
pub async fn workflow_id(client: &mut Client, filter: Option<&str>) -> Result<Option<i64>, Error> {
    match filter {
        Some(w) => Ok(Some(workflow(client, w).await?.id)),
        None => Ok(None),
    }
}

/// Follows a task's log from the start until it ends, writing it to stdout
/// when `echo`; returns the task's final status.
pub async fn follow(client: &mut Client, task_id: i64, echo: bool) -> Result<String, Error> {
    let mut pieces = client
        .stream_logs(proto::StreamLogsRequest {
            task_id,
            chunks: false,
        })
        .await?
        .into_inner();
    let mut stdout = std::io::stdout();
    while let Some(piece) = pieces.message().await? {
        if echo && !piece.text.is_empty() {
            output::write_bytes(&mut stdout, &piece.text)?;
        }
        if let Some(status) = piece.finished {
            if echo {
                stdout.flush().ok();
            }
            return Ok(status);
        }
    }
    Err(Error::Api(ApiError::new(
        ErrorCode::Unavailable,
        "the log stream ended before the task did",
    )))
}

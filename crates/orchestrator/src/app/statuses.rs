//! Commit statuses, for the notifier: recorded once per event and context,
//! claimed in the order of their events per commit and context, and handed
//! out with where they go and the token that sends them.

use std::time::Duration;

use proto::ApiError;
use store::forges::{Attempt, ClaimedStatus, NewStatus, StatusRow};

use super::App;
use crate::forges::Access;

/// How long after a token that could not be minted (GitHub unreachable)
/// the status is tried again, and how often: ten minutes in all.
const TOKEN_RETRY: chrono::Duration = chrono::Duration::seconds(5);
const TOKEN_ATTEMPTS: i32 = 120;

/// A status ready to send.
pub struct Sendable {
    pub claimed: ClaimedStatus,
    /// The API base: GitHub's, or the GitLab instance's.
    pub api_url: String,
    pub token: String,
}

impl App {
    /// Records the statuses of an event and claims those due now.
    pub async fn open_statuses(
        &self,
        event_id: String,
        statuses: Vec<NewStatus>,
        claim: Duration,
    ) -> Result<Vec<Sendable>, ApiError> {
        let claimed = self
            .db(&format!("event {event_id}"), move |conn| {
                store::forges::open(conn, &event_id, &statuses, claim)
            })
            .await?;
        self.sendable(claimed).await
    }

    /// Claims statuses due for an attempt.
    pub async fn claim_statuses(
        &self,
        limit: i64,
        claim: Duration,
    ) -> Result<Vec<Sendable>, ApiError> {
        let claimed = self
            .db("commit statuses", move |conn| {
                store::forges::claim_due(conn, None, limit, claim)
            })
            .await?;
        self.sendable(claimed).await
    }

    pub async fn record_status_attempt(
        &self,
        id: i64,
        attempt: Attempt,
    ) -> Result<StatusRow, ApiError> {
        self.db(&format!("commit status {id}"), move |conn| {
            store::forges::record_attempt(conn, id, &attempt)
        })
        .await
    }

    /// Adds where each status goes and its token. One whose forge Slipway
    /// no longer has credentials for, or whose token cannot be minted now,
    /// is recorded as a failed attempt (tried again later for a token that
    /// could not be minted).
    async fn sendable(&self, claimed: Vec<ClaimedStatus>) -> Result<Vec<Sendable>, ApiError> {
        let mut out = Vec::with_capacity(claimed.len());
        for c in claimed {
            let id = c.status.id;
            let attempts = c.status.attempts;
            let api_url = self.forges.api_url(&c.forge);
            let token = self.forges.token(&c.forge, Access::Statuses).await;
            let failure = match (api_url, token) {
                (Some(api_url), Ok(Some(token))) => {
                    out.push(Sendable {
                        claimed: c,
                        api_url,
                        token,
                    });
                    continue;
                }
                (None, _) | (_, Ok(None)) => Attempt::Failed {
                    error: format!("no credentials for {} {}", c.forge.forge, c.forge.repo),
                    retry_at: None,
                },
                (_, Err(e)) => Attempt::Failed {
                    error: e.to_string(),
                    // Tried again for as long as the notifier would retry a send.
                    retry_at: (e.is_transient() && attempts < TOKEN_ATTEMPTS)
                        .then(|| chrono::Utc::now() + TOKEN_RETRY),
                },
            };
            self.record_status_attempt(id, failure).await?;
        }
        Ok(out)
    }
}

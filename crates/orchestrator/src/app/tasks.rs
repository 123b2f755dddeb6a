//! Tasks as users see and steer them: read, list, retry and cancel.

use domain::state::TaskStatus;
use proto::ApiError;
use store::tasks::{TaskDetail, TaskFilter};

use super::App;

impl App {
    pub async fn get_task(&self, id: i64) -> Result<TaskDetail, ApiError> {
        self.db(&format!("task {id}"), move |conn| {
            store::tasks::get(conn, id)
        })
        .await
    }

    pub async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<TaskDetail>, ApiError> {
        self.db("tasks", move |conn| store::tasks::list(conn, &filter))
            .await
    }

    pub async fn retry_task(&self, id: i64) -> Result<i64, ApiError> {
        let trace = telemetry::propagation::current_traceparent();
        let new_id = self
            .db(&format!("task {id}"), move |conn| {
                store::tasks::retry(conn, id, trace.as_deref())
            })
            .await?;
        self.queued();
        Ok(new_id)
    }

    pub async fn cancel_task(&self, id: i64) -> Result<(), ApiError> {
        let outcome = self
            .db(&format!("task {id}"), move |conn| {
                store::tasks::cancel(conn, id)
            })
            .await?;
        if outcome == store::tasks::Cancelled::Now {
            self.metrics.task_ended_unstarted(TaskStatus::Cancelled);
            self.changed(id);
        }
        Ok(())
    }
}

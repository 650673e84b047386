//! `/v1/jobs`: periodic work and who ran it.

use axum::extract::State;
use purser_core::Permission;
use purser_store::JobRun;
use serde::{Deserialize, Serialize};

use crate::auth::{ApiCaller, Caller};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobRunView {
    pub job: String,
    /// The start of the period this run was due for (RFC 3339, UTC).
    pub slot: String,
    /// `pending`, `running`, `done` or `failed`.
    pub state: String,
    /// The process that ran it (`host:pid:instance`).
    pub owner: Option<String>,
    pub attempts: i64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
}

impl From<JobRun> for JobRunView {
    fn from(run: JobRun) -> Self {
        JobRunView {
            job: run.job,
            slot: run.slot.to_string(),
            state: run.state,
            owner: run.owner,
            attempts: run.attempts,
            started_at: run.started_at.map(|t| t.to_string()),
            finished_at: run.finished_at.map(|t| t.to_string()),
            outcome: run.outcome,
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    pub job: Option<String>,
    /// At most 1,000; 100 by default.
    pub limit: Option<usize>,
}

/// Recent runs of periodic jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "operations", params(JobQuery),
    responses((status = 200, body = Vec<JobRunView>), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<JobQuery>,
) -> Result<axum::Json<Vec<JobRunView>>, ApiError> {
    caller.require(&state, Permission::ReadJobs).await?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1_000);
    let runs = state.store.job_runs(query.job.as_deref(), limit).await?;
    Ok(axum::Json(runs.into_iter().map(JobRunView::from).collect()))
}

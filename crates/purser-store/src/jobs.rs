//! Leases for periodic work, coordinated in the database.
//!
//! Each job's run for a period is one row keyed by (job, slot): every process may try
//! to schedule it, the primary key keeps one. A run is claimed with a lease; only an
//! expired lease (its process died or hung) lets another process take it over. So a
//! due run happens once however many processes share the database. Lease times are
//! read from the database's clock ([`Store::now`]).

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::db::{Dialect, Row, Value};
use crate::{Store, StoreError, from_micros, opt_from_micros};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRun {
    pub job: String,
    pub slot: Timestamp,
    /// `pending`, `running`, `done` or `failed`.
    pub state: String,
    pub owner: Option<String>,
    pub lease_until: Option<Timestamp>,
    /// How many times the run was claimed: more than one means a takeover.
    pub attempts: i64,
    pub scheduled_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub outcome: Option<String>,
}

const COLUMNS: &str = "job, slot, state, owner, lease_until, attempts, scheduled_at, started_at, finished_at, outcome";

fn run_from_row(row: &Row) -> Result<JobRun, StoreError> {
    Ok(JobRun {
        job: row.text(0)?,
        slot: from_micros(row.int(1)?)?,
        state: row.text(2)?,
        owner: row.opt_text(3)?,
        lease_until: opt_from_micros(row.opt_int(4)?)?,
        attempts: row.int(5)?,
        scheduled_at: from_micros(row.int(6)?)?,
        started_at: opt_from_micros(row.opt_int(7)?)?,
        finished_at: opt_from_micros(row.opt_int(8)?)?,
        outcome: row.opt_text(9)?,
    })
}

impl Store {
    /// Makes sure a run of `job` exists for `slot`; true if this call created it.
    pub async fn schedule_job(
        &self,
        job: &str,
        slot: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let n = tx
            .execute(
                "INSERT INTO job_runs (job, slot, state, scheduled_at) VALUES ($1, $2, 'pending', $3) \
                 ON CONFLICT (job, slot) DO NOTHING",
                &[job.into(), Value::Int(slot.as_microsecond()), Value::Int(now.as_microsecond())],
            )
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Claims the oldest run that is pending or whose lease expired, among `jobs`.
    pub async fn claim_job(
        &self,
        jobs: &[&str],
        owner: &str,
        lease: SignedDuration,
        now: Timestamp,
    ) -> Result<Option<JobRun>, StoreError> {
        if jobs.is_empty() {
            return Ok(None);
        }
        // PostgreSQL: SKIP LOCKED lets processes claim different runs without waiting.
        // SQLite: the single writer already serialises claims.
        let lock = match self.db.dialect() {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let job_list = crate::placeholders(5, jobs.len());
        let sql = format!(
            "UPDATE job_runs SET state = 'running', owner = $1, lease_until = $2, \
             attempts = attempts + 1, started_at = $3 \
             WHERE (job, slot) IN ( \
                SELECT job, slot FROM job_runs \
                WHERE (state = 'pending' OR (state = 'running' AND lease_until < $4)) AND job IN ({job_list}) \
                ORDER BY slot, job LIMIT 1 {lock}) \
             RETURNING {COLUMNS}"
        );
        let mut params = vec![
            owner.into(),
            Value::Int((now + lease).as_microsecond()),
            Value::Int(now.as_microsecond()),
            Value::Int(now.as_microsecond()),
        ];
        params.extend(jobs.iter().map(|j| Value::from(*j)));
        let mut tx = self.db.begin().await?;
        let row = tx.query_opt(&sql, &params).await?;
        tx.commit().await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Extends a lease the owner still holds; false if it was lost to a takeover.
    pub async fn renew_job_lease(
        &self,
        run: &JobRun,
        owner: &str,
        lease: SignedDuration,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let n = tx
            .execute(
                "UPDATE job_runs SET lease_until = $1 WHERE job = $2 AND slot = $3 AND owner = $4 AND state = 'running' AND attempts = $5",
                &[
                    Value::Int((now + lease).as_microsecond()),
                    (&run.job).into(),
                    Value::Int(run.slot.as_microsecond()),
                    owner.into(),
                    Value::Int(run.attempts),
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Records the end of a run; false if the lease was lost meanwhile (the taker's
    /// result stands, not ours).
    pub async fn finish_job(
        &self,
        run: &JobRun,
        owner: &str,
        outcome: Result<String, String>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (state, text) = match outcome {
            Ok(text) => ("done", text),
            Err(text) => ("failed", text),
        };
        let mut tx = self.db.begin().await?;
        let n = tx
            .execute(
                "UPDATE job_runs SET state = $1, outcome = $2, finished_at = $3, lease_until = NULL \
                 WHERE job = $4 AND slot = $5 AND owner = $6 AND state = 'running' AND attempts = $7",
                &[
                    state.into(),
                    text.into(),
                    Value::Int(now.as_microsecond()),
                    (&run.job).into(),
                    Value::Int(run.slot.as_microsecond()),
                    owner.into(),
                    Value::Int(run.attempts),
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    /// The most recent runs, newest slot first.
    pub async fn job_runs(
        &self,
        job: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JobRun>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = match job {
            Some(job) => handle
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM job_runs WHERE job = $1 ORDER BY slot DESC LIMIT $2"
                    ),
                    &[job.into(), Value::Int(limit as i64)],
                )
                .await?,
            None => {
                handle
                    .query(
                        &format!("SELECT {COLUMNS} FROM job_runs ORDER BY slot DESC, job LIMIT $1"),
                        &[Value::Int(limit as i64)],
                    )
                    .await?
            }
        };
        rows.iter().map(run_from_row).collect()
    }

    /// Counts of runs by job and state, for metrics.
    pub async fn job_run_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                "SELECT job, state, COUNT(*) FROM job_runs GROUP BY job, state ORDER BY job, state",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?, r.int(2)?)))
            .collect()
    }
}

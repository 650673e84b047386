//! The scheduler: runs Purser's periodic jobs through the database's leases.
//!
//! Every process runs the same loop. For each job it makes sure the run for the
//! current period exists, then claims runs until none is left; the store's leases
//! make sure each run happens in one process only. A claimed run renews its lease
//! while it works, so a slow run is not taken over, and a run whose process died is
//! taken over once its lease expires. Missed periods are not replayed: each job does
//! what is due as of now (pruning, verifying), so one run catches up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use purser_core::time::Window;
use purser_store::{JobRun, Store};
use rand::Rng;
use tokio::sync::watch;

/// At most this many hours close in one run, so a run after a long outage keeps its
/// lease short; the next run carries on.
const CLOSE_HOURS_PER_RUN: usize = 48;

type JobFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// A periodic job: what it is called, how often it is due, and what it does.
#[derive(Clone)]
pub struct Job {
    pub name: &'static str,
    pub period_seconds: i64,
    pub run: Arc<dyn Fn(Store) -> JobFuture + Send + Sync>,
}

/// Purser's jobs.
pub fn standard_jobs(
    config: &crate::config::JobsConfig,
    metering: purser_store::metering::MeteringSettings,
    submitter: crate::marketplace::Submitter,
    subscriptions: crate::subscriptions::SubscriptionProcessor,
) -> Vec<Job> {
    vec![
        Job {
            name: "marketplace.subscriptions",
            period_seconds: config.marketplace_subscriptions_seconds,
            run: Arc::new(move |store: Store| {
                let subscriptions = subscriptions.clone();
                Box::pin(async move {
                    let now = store.now().await.map_err(|e| e.to_string())?;
                    let report = subscriptions
                        .run(&store, now)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(report.summary())
                })
            }),
        },
        Job {
            name: "marketplace.submit",
            period_seconds: config.marketplace_submit_seconds,
            run: Arc::new(move |store: Store| {
                let submitter = submitter.clone();
                Box::pin(async move {
                    let report = submitter.run(&store).await.map_err(|e| e.to_string())?;
                    let summary = report.summary();
                    if report.at_risk > 0 || report.conflicts > 0 {
                        // Failed runs show on the jobs page and in the job metrics.
                        Err(summary)
                    } else {
                        Ok(summary)
                    }
                })
            }),
        },
        Job {
            name: "metering.close_hours",
            period_seconds: config.close_hours_seconds,
            run: Arc::new(move |store: Store| {
                Box::pin(async move {
                    // The database's clock, so that every process agrees on what is due.
                    let now = store.now().await.map_err(|e| e.to_string())?;
                    let closed = store
                        .close_due_hours(now, &metering, CLOSE_HOURS_PER_RUN)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(match (closed.first(), closed.last()) {
                        (Some(first), Some(last)) => format!(
                            "closed {} hours, {} to {}: {} account-hours, {} events, {} late",
                            closed.len(),
                            first.hour,
                            last.hour,
                            closed.iter().map(|h| h.accounts).sum::<i64>(),
                            closed.iter().map(|h| h.events).sum::<i64>(),
                            closed.iter().map(|h| h.late).sum::<i64>(),
                        ),
                        _ => "no hour was due".into(),
                    })
                })
            }),
        },
        Job {
            name: "sessions.prune",
            period_seconds: config.session_prune_seconds,
            run: Arc::new(|store: Store| {
                Box::pin(async move {
                    let now = store.now().await.map_err(|e| e.to_string())?;
                    let n = store.prune_sessions(now).await.map_err(|e| e.to_string())?;
                    Ok(format!("pruned {n} expired sessions"))
                })
            }),
        },
        Job {
            name: "audit.verify",
            period_seconds: config.audit_verify_seconds,
            run: Arc::new(|store: Store| {
                Box::pin(async move {
                    match store.verify_audit(None).await.map_err(|e| e.to_string())? {
                        Ok(verified) => Ok(format!(
                            "intact: {} entries, head {}",
                            verified.n_entries, verified.head
                        )),
                        Err(chain_break) => {
                            tracing::error!(%chain_break, "the audit log does not verify");
                            Err(format!("broken: {chain_break}"))
                        }
                    }
                })
            }),
        },
    ]
}

/// This process's name in job runs: host, pid and a random instance id, so two
/// processes never share an owner even on one host after a pid is reused.
pub fn owner_name() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into());
    let instance: u32 = rand::rng().random();
    format!("{host}:{}:{instance:08x}", std::process::id())
}

pub struct Scheduler {
    pub store: Store,
    pub jobs: Vec<Job>,
    pub owner: String,
    pub lease: SignedDuration,
}

impl Scheduler {
    /// Runs until `shutdown` turns true; a run in progress is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if self.jobs.is_empty() {
            return;
        }
        let names: Vec<&str> = self.jobs.iter().map(|j| j.name).collect();
        let shortest = self
            .jobs
            .iter()
            .map(|j| j.period_seconds)
            .min()
            .unwrap_or(60);
        // Look often enough to start a run promptly, never more than twice a second.
        let tick_ms = (shortest * 1000 / 4).clamp(500, 15_000) as u64;
        loop {
            if let Err(error) = self.tick(&names).await {
                tracing::warn!(%error, "the scheduler could not reach the database");
            }
            // Jitter spreads processes so that the same one does not always win.
            let jitter = rand::rng().random_range(0..tick_ms / 4 + 1);
            let sleep = tokio::time::sleep(Duration::from_millis(tick_ms + jitter));
            tokio::select! {
                _ = sleep => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    async fn tick(&self, names: &[&str]) -> Result<(), purser_store::StoreError> {
        let now = self.store.now().await?;
        for job in &self.jobs {
            let slot = Window::containing(now, job.period_seconds).start;
            self.store.schedule_job(job.name, slot, now).await?;
        }
        while let Some(run) = self
            .store
            .claim_job(names, &self.owner, self.lease, now)
            .await?
        {
            self.execute(run).await?;
        }
        Ok(())
    }

    async fn execute(&self, run: JobRun) -> Result<(), purser_store::StoreError> {
        let Some(job) = self.jobs.iter().find(|j| j.name == run.job) else {
            return Ok(());
        };
        tracing::info!(job = job.name, slot = %run.slot, attempt = run.attempts, "job run starts");
        let work = (job.run)(self.store.clone());
        tokio::pin!(work);
        // Renew the lease at a third of its length while the job works.
        let renew_every = Duration::from_millis((self.lease.as_millis() / 3).max(100) as u64);
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = tokio::time::sleep(renew_every) => {
                    let now = self.store.now().await?;
                    if !self.store.renew_job_lease(&run, &self.owner, self.lease, now).await? {
                        tracing::warn!(job = job.name, slot = %run.slot, "lease lost to another process; abandoning this run");
                        return Ok(());
                    }
                }
            }
        };
        let now = self.store.now().await?;
        match &outcome {
            Ok(text) => {
                tracing::info!(job = job.name, slot = %run.slot, outcome = %text, "job run done")
            }
            Err(text) => {
                tracing::error!(job = job.name, slot = %run.slot, outcome = %text, "job run failed")
            }
        }
        if !self
            .store
            .finish_job(&run, &self.owner, outcome, now)
            .await?
        {
            tracing::warn!(job = job.name, slot = %run.slot, "finished after losing the lease; the other process's result stands");
        }
        Ok(())
    }
}

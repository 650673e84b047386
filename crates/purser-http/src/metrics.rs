//! `GET /metrics` in Prometheus text format: requests by route and status, their
//! latency, the database pool, and job runs.
//!
//! Request metrics are counted as requests pass; pool and job figures are read when
//! scraped, so they are never stale and cost nothing between scrapes.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pool: Family<PoolLabels, Gauge>,
    job_runs: Family<JobLabels, Gauge>,
    events: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("purser");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
        });
        let pool = Family::<PoolLabels, Gauge>::default();
        let job_runs = Family::<JobLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "db_connections",
            "Database connections by state",
            pool.clone(),
        );
        registry.register(
            "job_runs",
            "Periodic job runs by job and state",
            job_runs.clone(),
        );
        let events = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "usage_events",
            "Usage events received through this process, by outcome",
            events.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            pool,
            job_runs,
            events,
        }
    }

    /// Counts a batch's events by what became of them.
    pub fn record_ingest(&self, report: &purser_store::metering::IngestReport) {
        for (outcome, n) in [
            ("accepted", report.accepted),
            ("duplicate", report.duplicate),
            ("quarantined", report.quarantined),
            ("rejected", report.rejected),
            ("late", report.late),
        ] {
            self.events
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.into(),
                })
                .inc_by(n as u64);
        }
    }
}

/// Counts every request under its route template (`/v1/accounts/{account_id}`), so
/// ids never explode the label space.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let metrics = &state.metrics;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Prometheus text exposition.
pub async fn render(State(state): State<AppState>) -> Response {
    let metrics = &state.metrics;
    let (in_use, idle) = state.store.db().pool_status();
    metrics
        .pool
        .get_or_create(&PoolLabels {
            state: "in_use".into(),
        })
        .set(in_use as i64);
    metrics
        .pool
        .get_or_create(&PoolLabels {
            state: "idle".into(),
        })
        .set(idle as i64);
    if let Ok(counts) = state.store.job_run_counts().await {
        for (job, run_state, n) in counts {
            metrics
                .job_runs
                .get_or_create(&JobLabels {
                    job,
                    state: run_state,
                })
                .set(n);
        }
    }
    let mut body = String::new();
    if encode(&mut body, &metrics.registry).is_err() {
        return crate::error::ApiError::internal().into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

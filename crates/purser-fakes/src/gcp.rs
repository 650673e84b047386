//! The fake Google Service Control (`services.check`, `services.report`) and a fake GCE
//! metadata server whose tokens it accepts (workload-identity style credentials).
//!
//! Rules, each with its source (contract = the discovery document
//! `contracts/gcp/servicecontrol.v1.json`, read through [`crate::contract`]; prose =
//! `shared/reference/metering-and-marketplaces.md` §1c and cloud.google.com's integrated-SaaS
//! usage-reporting pages, read 2026-11-23):
//! - `POST /v1/services/{serviceName}:check` and `:report` (contract method paths), JSON with
//!   the discovery document's camelCase names.
//! - `Authorization: Bearer <token>`: the configured token or one the metadata server
//!   issued and not expired → else 401 UNAUTHENTICATED in Google's error JSON.
//! - The service must be registered in the fake → else 403 PERMISSION_DENIED.
//! - ReportRequest no larger than 1 MB (contract: `ReportRequest.operations` description;
//!   the limit is read from that text) → else 400 INVALID_ARGUMENT.
//! - Two MetricValueSets for one metric in one operation reject the entire request with
//!   INVALID_ARGUMENT (contract `Operation.metricValueSets`: "the entire request is rejected").
//! - Per operation, answered as `reportErrors` with HTTP 200 (contract `ReportResponse`):
//!   `operationId` and `consumerId` required (contract field docs); `startTime` and `endTime`
//!   required on report (contract: "Required when the operation is used in Report"), RFC 3339
//!   (`google-datetime`), start before end; metric names `<serviceName>/<metric>` registered
//!   (contract: "the metric name defined in the service configuration"); values `int64Value`
//!   (a string, contract `format: int64`) or `doubleValue` as the metric's registered type
//!   requires (contract: "The data type used in the MetricValueSet must agree with the data
//!   type specified in the metric definition"); not negative.
//! - Usage "must be reported within one hour of being generated" (prose, best practices).
//!   Google does not document what the server does with a later report: the fake refuses an
//!   operation whose endTime is older than `GcpConfig::late_limit` (default one hour) with
//!   INVALID_ARGUMENT, the conservative reading.
//! - Deduplication by operationId (contract: "UUID version 5 ... for deduplication"): a report
//!   of an already accepted operationId is accepted and ignored, and counted as a resend.
//! - check: `checkErrors` CONSUMER_INVALID / SERVICE_NOT_ACTIVATED / BILLING_DISABLED
//!   (contract `CheckError.code`) for an unknown, not activated or billing-disabled consumer;
//!   echoes `operationId`.
//! - Quota: configurable, answered 429 RESOURCE_EXHAUSTED.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::clock::FakeClock;
use crate::contract::GcpContract;
use crate::faults::{Fault, FaultConfig, FaultInjector};
use crate::server::{TokenBucket, bearer, delay, drop_connection, random_token};

#[derive(Debug, Clone)]
pub struct GcpConfig {
    /// A bearer token always accepted (a service account's token obtained elsewhere).
    pub token: String,
    /// Requests per second over check and report (0 = unlimited).
    pub requests_per_second: u32,
    pub burst: u32,
    /// How long after an operation's endTime a report is still accepted.
    pub late_limit: SignedDuration,
    /// How far ahead of the fake's clock an endTime may be.
    pub max_future_skew: SignedDuration,
    pub token_lifetime: SignedDuration,
}

impl Default for GcpConfig {
    fn default() -> Self {
        Self {
            token: "ya29.purser-fake-token".into(),
            requests_per_second: 1000,
            burst: 1000,
            late_limit: SignedDuration::from_hours(1),
            max_future_skew: SignedDuration::from_mins(5),
            token_lifetime: SignedDuration::from_secs(3599),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GcpValueType {
    Int64,
    Double,
}

/// A consumer's (usage reporting id's) state for the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GcpConsumerState {
    Active,
    ServiceNotActivated,
    BillingDisabled,
}

/// Usage Google accepted and would bill: one metric of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcpUsage {
    pub service: String,
    pub consumer_id: String,
    /// Full metric name, `<service>/<metric>`.
    pub metric: String,
    pub operation_id: String,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
    /// The sum of the set's metric values.
    pub value: Decimal,
    pub accepted_at: Timestamp,
}

/// A break in the reported intervals of one consumer × metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Continuity {
    /// Nothing reported between these instants.
    Gap { from: Timestamp, to: Timestamp },
    /// Reported twice between these instants.
    Overlap { from: Timestamp, to: Timestamp },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcpCounts {
    pub requests: u64,
    pub checks: u64,
    pub reports: u64,
    pub throttled: u64,
    pub refused: u64,
    pub faults: u64,
    pub operations_accepted: u64,
    /// Reports of an operationId already accepted: accepted and ignored.
    pub resends: u64,
    /// Of those, resends whose content differed from the accepted operation.
    pub conflicting_resends: u64,
    pub report_errors: u64,
    pub tokens_issued: u64,
}

#[derive(Debug, Default)]
struct Service {
    metrics: HashMap<String, GcpValueType>,
    consumers: HashMap<String, GcpConsumerState>,
    /// operationId → the operation as first accepted.
    operations: HashMap<String, Value>,
}

#[derive(Debug, Default)]
struct Ledger {
    services: HashMap<String, Service>,
    usage: Vec<GcpUsage>,
    tokens: HashMap<String, Timestamp>,
    counts: GcpCounts,
}

#[derive(Debug, Clone)]
pub struct GcpFake {
    ledger: Arc<Mutex<Ledger>>,
    faults: FaultInjector,
}

impl GcpFake {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the metadata server issued `token` and it has not expired (the fake
    /// Partner Procurement takes the same tokens: one service account, one scope).
    pub(crate) fn issued_token(&self, token: &str, now: Timestamp) -> bool {
        self.ledger()
            .tokens
            .get(token)
            .is_some_and(|exp| *exp > now)
    }

    pub fn add_service(&self, service: &str) {
        self.ledger()
            .services
            .entry(service.to_owned())
            .or_default();
    }

    /// Registers `metric` (short name, or `<service>/<metric>`) with its value type.
    pub fn add_metric(&self, service: &str, metric: &str, value_type: GcpValueType) {
        let full = if metric.starts_with(&format!("{service}/")) {
            metric.to_owned()
        } else {
            format!("{service}/{metric}")
        };
        self.ledger()
            .services
            .entry(service.to_owned())
            .or_default()
            .metrics
            .insert(full, value_type);
    }

    /// Registers a consumer (an entitlement's usage reporting id) as active.
    pub fn add_consumer(&self, service: &str, consumer_id: &str) {
        self.set_consumer_state(service, consumer_id, GcpConsumerState::Active);
    }

    pub fn set_consumer_state(&self, service: &str, consumer_id: &str, state: GcpConsumerState) {
        self.ledger()
            .services
            .entry(service.to_owned())
            .or_default()
            .consumers
            .insert(consumer_id.to_owned(), state);
    }

    pub fn usage(&self) -> Vec<GcpUsage> {
        self.ledger().usage.clone()
    }

    pub fn counts(&self) -> GcpCounts {
        self.ledger().counts.clone()
    }

    /// What would be billed per consumer × metric.
    pub fn totals(&self) -> BTreeMap<(String, String), Decimal> {
        let mut totals = BTreeMap::new();
        for u in &self.ledger().usage {
            *totals
                .entry((u.consumer_id.clone(), u.metric.clone()))
                .or_insert(Decimal::ZERO) += u.value;
        }
        totals
    }

    /// Gaps and overlaps between the accepted intervals of one consumer × metric (full
    /// metric name), in time order. Empty when consecutive reports adjoin exactly, as Google
    /// asks ("startTime of a report should equal endTime of the previous report").
    pub fn continuity(&self, consumer_id: &str, metric: &str) -> Vec<Continuity> {
        let mut spans: Vec<(Timestamp, Timestamp)> = self
            .ledger()
            .usage
            .iter()
            .filter(|u| u.consumer_id == consumer_id && u.metric == metric)
            .map(|u| (u.start_time, u.end_time))
            .collect();
        spans.sort();
        let mut out = Vec::new();
        let mut reach: Option<Timestamp> = None;
        for (start, end) in spans {
            if let Some(r) = reach {
                if start > r {
                    out.push(Continuity::Gap { from: r, to: start });
                } else if start < r {
                    out.push(Continuity::Overlap {
                        from: start,
                        to: end.min(r),
                    });
                }
            }
            reach = Some(reach.map_or(end, |r| r.max(end)));
        }
        out
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        self.faults.set(faults);
    }
}

#[derive(Clone)]
struct AppState {
    fake: GcpFake,
    config: Arc<GcpConfig>,
    contract: &'static GcpContract,
    clock: FakeClock,
    latency: Duration,
    bucket: Option<Arc<TokenBucket>>,
}

/// The Service Control router and the metadata server's router.
pub(crate) fn build(
    config: GcpConfig,
    contract: &'static GcpContract,
    clock: FakeClock,
    latency: Duration,
    faults: FaultConfig,
) -> (GcpFake, Router, Router) {
    let fake = GcpFake {
        ledger: Arc::new(Mutex::new(Ledger::default())),
        faults: FaultInjector::new(faults, 3),
    };
    let bucket = TokenBucket::new(config.requests_per_second, config.burst);
    let state = AppState {
        fake: fake.clone(),
        config: Arc::new(config),
        contract,
        clock,
        latency,
        bucket,
    };
    let control = Router::new()
        .route("/v1/services/{target}", post(control))
        .layer(DefaultBodyLimit::max(8 * 1024 * 1024))
        .with_state(state.clone());
    let metadata = Router::new()
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(metadata_token),
        )
        .route("/computeMetadata/v1/project/project-id", get(project_id))
        .with_state(state);
    (fake, control, metadata)
}

/// Google's error JSON (google.rpc.Status in the JSON mapping).
pub(crate) fn google_error(status: StatusCode, name: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": status.as_u16(), "message": message, "status": name}})),
    )
        .into_response()
}

fn metadata_refusal() -> Response {
    (
        StatusCode::FORBIDDEN,
        "Missing required header \"Metadata-Flavor\": \"Google\"\n",
    )
        .into_response()
}

fn flavored(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.headers_mut().insert(
        "metadata-flavor",
        axum::http::HeaderValue::from_static("Google"),
    );
    response
}

fn has_flavor(headers: &HeaderMap) -> bool {
    headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) == Some("Google")
}

async fn metadata_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    delay(state.latency).await;
    if !has_flavor(&headers) {
        return metadata_refusal();
    }
    let token = random_token("ya29.fake.");
    let now = state.clock.now();
    {
        let mut ledger = state.fake.ledger();
        ledger
            .tokens
            .insert(token.clone(), now + state.config.token_lifetime);
        ledger.counts.tokens_issued += 1;
    }
    flavored(Json(json!({
        "access_token": token,
        "expires_in": state.config.token_lifetime.as_secs(),
        "token_type": "Bearer",
    })))
}

async fn project_id(headers: HeaderMap) -> Response {
    if !has_flavor(&headers) {
        return metadata_refusal();
    }
    flavored("purser-fake-project")
}

async fn control(
    State(state): State<AppState>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    delay(state.latency).await;
    state.fake.ledger().counts.requests += 1;
    let refuse = |r: Response| {
        state.fake.ledger().counts.refused += 1;
        r
    };
    let now = state.clock.now();
    let authorized = bearer(&headers).is_some_and(|t| {
        t == state.config.token
            || state
                .fake
                .ledger()
                .tokens
                .get(t)
                .is_some_and(|exp| *exp > now)
    });
    if !authorized {
        return refuse(google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ));
    }
    let Some((service, method)) = target.rsplit_once(':') else {
        return refuse(google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Method not found.",
        ));
    };
    if method != "check" && method != "report" {
        return refuse(google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Method not found.",
        ));
    }
    if body.len() > state.contract.report_max_bytes {
        return refuse(google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Request payload size exceeds the limit: 1000000 bytes.",
        ));
    }
    if !state.fake.ledger().services.contains_key(service) {
        return refuse(google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!(
                "Permission 'servicemanagement.services.{method}' denied on service '{service}'."
            ),
        ));
    }
    if let Some(bucket) = &state.bucket
        && bucket.take().is_err()
    {
        state.fake.ledger().counts.throttled += 1;
        return google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Report requests'.",
        );
    }
    let fault = state.fake.faults.draw();
    match fault {
        Fault::Throttle => {
            let mut ledger = state.fake.ledger();
            ledger.counts.throttled += 1;
            ledger.counts.faults += 1;
            return google_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Report requests'.",
            );
        }
        Fault::Unavailable => {
            state.fake.ledger().counts.faults += 1;
            return google_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is currently unavailable.",
            );
        }
        Fault::DropBeforeApply => {
            state.fake.ledger().counts.faults += 1;
            return drop_connection();
        }
        Fault::None | Fault::TimeoutAfterApply | Fault::Partial(_) => {}
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(&body) else {
        return refuse(google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received.",
        ));
    };
    let response = if method == "check" {
        state.fake.ledger().counts.checks += 1;
        check(&state, service, &request)
    } else {
        state.fake.ledger().counts.reports += 1;
        report(&state, service, &request, now, fault)
    };
    if fault == Fault::TimeoutAfterApply && method == "report" {
        state.fake.ledger().counts.faults += 1;
        tokio::time::sleep(state.fake.faults.hang()).await;
        return drop_connection();
    }
    response
}

fn check(state: &AppState, service: &str, request: &Map<String, Value>) -> Response {
    let Some(Value::Object(operation)) = request.get("operation") else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "operation is required.",
        );
    };
    let text = |k: &str| {
        operation
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (Some(operation_id), Some(consumer_id)) = (text("operationId"), text("consumerId")) else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "operation.operationId and operation.consumerId are required.",
        );
    };
    let ledger = state.fake.ledger();
    let consumer = ledger
        .services
        .get(service)
        .and_then(|s| s.consumers.get(consumer_id))
        .copied();
    let error = match consumer {
        None => Some((
            "CONSUMER_INVALID",
            "The consumer is not valid for this service.",
        )),
        Some(GcpConsumerState::ServiceNotActivated) => Some((
            "SERVICE_NOT_ACTIVATED",
            "The consumer has not activated the service.",
        )),
        Some(GcpConsumerState::BillingDisabled) => {
            Some(("BILLING_DISABLED", "Billing is disabled for the consumer."))
        }
        Some(GcpConsumerState::Active) => None,
    };
    let mut body = json!({"operationId": operation_id, "serviceConfigId": "purser-fake-config"});
    if let (Some((code, detail)), Value::Object(map)) = (error, &mut body) {
        map.insert(
            "checkErrors".into(),
            json!([{"code": code, "subject": consumer_id, "detail": detail}]),
        );
    }
    Json(body).into_response()
}

/// One operation, validated: consumer, interval and (full metric name, summed value) per set.
type OpUsage = (String, Timestamp, Timestamp, Vec<(String, Decimal)>);

/// One operation's metric sets, validated.
fn operation_usage(
    state: &AppState,
    service: &Service,
    service_name: &str,
    op: &Map<String, Value>,
    now: Timestamp,
) -> Result<OpUsage, (i32, String)> {
    let invalid = |m: String| (3, m);
    let text = |k: &str| op.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let consumer_id =
        text("consumerId").ok_or_else(|| invalid("consumerId is required.".into()))?;
    let time = |k: &str| -> Result<Timestamp, (i32, String)> {
        let t = text(k).ok_or_else(|| invalid(format!("{k} is required for report.")))?;
        t.parse::<Timestamp>()
            .map_err(|_| invalid(format!("{k} '{t}' is not an RFC 3339 timestamp.")))
    };
    let start = time("startTime")?;
    let end = time("endTime")?;
    if start >= end {
        return Err(invalid("startTime must be before endTime.".into()));
    }
    if now.duration_since(end) > state.config.late_limit {
        return Err(invalid(format!(
            "endTime {end} is older than the late limit ({} s); usage must be reported within an hour of being generated.",
            state.config.late_limit.as_secs()
        )));
    }
    if end > now + state.config.max_future_skew {
        return Err(invalid(format!("endTime {end} is in the future.")));
    }
    match service.consumers.get(consumer_id) {
        None => {
            return Err(invalid(format!(
                "consumerId '{consumer_id}' is not a valid consumer of {service_name}."
            )));
        }
        Some(GcpConsumerState::Active) => {}
        Some(state) => {
            return Err((
                7,
                format!("consumer '{consumer_id}' cannot be charged: {state:?}."),
            ));
        }
    }
    let sets = match op.get("metricValueSets") {
        Some(Value::Array(sets)) => sets.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => return Err(invalid("metricValueSets must be a list.".into())),
    };
    let mut usage = Vec::new();
    for set in sets {
        let name = set
            .get("metricName")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("metricName is required.".into()))?;
        let value_type = *service
            .metrics
            .get(name)
            .ok_or_else(|| invalid(format!("metric '{name}' is not defined in the service configuration (names are '{service_name}/<metric>').")))?;
        let values = match set.get("metricValues") {
            Some(Value::Array(v)) if !v.is_empty() => v,
            _ => return Err(invalid(format!("metric '{name}' has no metricValues."))),
        };
        let mut sum = Decimal::ZERO;
        for v in values {
            let int = v.get("int64Value");
            let double = v.get("doubleValue");
            let amount = match (value_type, int, double) {
                (GcpValueType::Int64, Some(Value::String(s)), None) => {
                    i64::from_str(s).map(Decimal::from).map_err(|_| {
                        invalid(format!("int64Value '{s}' of '{name}' is not an int64."))
                    })?
                }
                (GcpValueType::Double, None, Some(Value::Number(n))) => {
                    let t = n.to_string();
                    Decimal::from_str(&t)
                        .or_else(|_| Decimal::from_scientific(&t))
                        .map_err(|_| invalid(format!("doubleValue of '{name}' is out of range.")))?
                }
                (GcpValueType::Int64, _, _) => {
                    return Err(invalid(format!(
                        "metric '{name}' is INT64: send int64Value as a string."
                    )));
                }
                (GcpValueType::Double, _, _) => {
                    return Err(invalid(format!(
                        "metric '{name}' is DOUBLE: send doubleValue."
                    )));
                }
            };
            if amount < Decimal::ZERO {
                return Err(invalid(format!("metric '{name}' has a negative value.")));
            }
            sum += amount;
        }
        usage.push((name.to_owned(), sum.normalize()));
    }
    Ok((consumer_id.to_owned(), start, end, usage))
}

fn report(
    state: &AppState,
    service_name: &str,
    request: &Map<String, Value>,
    now: Timestamp,
    fault: Fault,
) -> Response {
    let operations = match request.get("operations") {
        Some(Value::Array(ops)) => ops.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => {
            return google_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "operations must be a list.",
            );
        }
    };
    // Whole-request rule first: a metric twice in one operation rejects everything.
    for op in operations {
        let mut seen = std::collections::HashSet::new();
        if let Some(Value::Array(sets)) = op.get("metricValueSets") {
            for name in sets
                .iter()
                .filter_map(|s| s.get("metricName").and_then(Value::as_str))
            {
                if !seen.insert(name) {
                    state.fake.ledger().counts.refused += 1;
                    return google_error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_ARGUMENT",
                        &format!("Operation has more than one MetricValueSet for metric '{name}'."),
                    );
                }
            }
        }
    }
    let failing = match fault {
        Fault::Partial(k) if !operations.is_empty() => Some(k % operations.len()),
        _ => None,
    };
    let mut guard = state.fake.ledger();
    let ledger = &mut *guard;
    let mut errors = Vec::new();
    for (i, op) in operations.iter().enumerate() {
        let id = op
            .get("operationId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let Some(id) = id else {
            errors.push(json!({"operationId": "", "status": {"code": 3, "message": "operationId is required."}}));
            continue;
        };
        if Some(i) == failing {
            ledger.counts.faults += 1;
            errors.push(json!({"operationId": id, "status": {"code": 14, "message": "The service is currently unavailable; retry the operation."}}));
            continue;
        }
        let Some(service) = ledger.services.get_mut(service_name) else {
            continue;
        };
        if let Some(first) = service.operations.get(id) {
            ledger.counts.resends += 1;
            if first != op {
                ledger.counts.conflicting_resends += 1;
            }
            continue;
        }
        let Value::Object(map) = op else {
            errors.push(json!({"operationId": id, "status": {"code": 3, "message": "operation must be an object."}}));
            continue;
        };
        match operation_usage(state, service, service_name, map, now) {
            Err((code, message)) => errors
                .push(json!({"operationId": id, "status": {"code": code, "message": message}})),
            Ok((consumer_id, start, end, usage)) => {
                service.operations.insert(id.to_owned(), op.clone());
                for (metric, value) in usage {
                    ledger.usage.push(GcpUsage {
                        service: service_name.to_owned(),
                        consumer_id: consumer_id.clone(),
                        metric,
                        operation_id: id.to_owned(),
                        start_time: start,
                        end_time: end,
                        value,
                        accepted_at: now,
                    });
                }
                ledger.counts.operations_accepted += 1;
            }
        }
    }
    ledger.counts.report_errors += errors.len() as u64;
    let mut body =
        json!({"serviceConfigId": "purser-fake-config", "serviceRolloutId": "purser-fake-rollout"});
    if let (false, Value::Object(map)) = (errors.is_empty(), &mut body) {
        map.insert("reportErrors".into(), Value::Array(errors));
    }
    Json(body).into_response()
}

//! The fake Azure Marketplace metering service (api-version 2018-08-31) and a fake Microsoft
//! Entra ID token endpoint whose tokens it accepts.
//!
//! Rules, each with its source (contract = the OpenAPI document `contracts/azure/meteringapi.v1.json`
//! read through [`crate::contract`]; prose = `shared/reference/metering-and-marketplaces.md` §1b
//! and learn.microsoft.com's "Marketplace metering service APIs" and "metering service
//! authentication" pages, read 2026-11-23):
//! - Served under the contract's server path (`/api`): `POST /usageEvent`,
//!   `POST /batchUsageEvent`, `GET /usageEvents`, each with `api-version` from the contract's
//!   `ApiVersion` enum (required query parameter) → else 400.
//! - `Authorization: Bearer <token>` issued by the fake Entra endpoint and not expired
//!   (contract `security`: AADToken, client credentials) → 401 without a token, 403 for a
//!   token the fake did not issue or that expired (contract: 403 "User is unauthorized").
//! - Batch `request` of `minItems`..`maxItems` events (contract `BatchUsageEvent`, 1..25) → else 400.
//! - Each event (contract `UsageEvent`; required fields from the prose, the schema marks
//!   none): `resourceId` (a GUID: contract `format: uuid`) or `resourceUri`, `quantity`,
//!   `dimension`, `effectiveStartTime`, `planId`; missing or malformed → `BadArgument`.
//! - quantity must be > 0 → `InvalidQuantity` (prose). effectiveStartTime "from now and until
//!   24 hours back" (prose): older → `Expired`, later than now (beyond
//!   `AzureConfig::max_future_skew`) → `BadArgument`.
//! - Unknown resource → `ResourceNotFound`; not `Subscribed` → `ResourceNotActive` (prose:
//!   usage only for Subscribed); planId not the resource's → `BadArgument`; dimension not in
//!   the plan → `InvalidDimension` (contract `StatusEnum`).
//! - "Only one usage event can be emitted for each hour of a calendar day per resource and
//!   dimension" (prose): a second event for the same resource, dimension and hour of
//!   effectiveStartTime is `Duplicate` (batch) / 409 Conflict (single), whatever its
//!   quantity, with `additionalInfo.acceptedMessage` = the accepted event.
//! - Azure publishes no fixed rate limit: the quota is configurable and answered with 429 and
//!   `Retry-After`.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::clock::{FakeClock, hour_of};
use crate::contract::AzureContract;
use crate::faults::{Fault, FaultConfig, FaultInjector};
use crate::server::{TokenBucket, bearer, delay, drop_connection, random_token};

/// The marketplace metering service's fixed Entra application id, the `resource` of the
/// token request (learn.microsoft.com, "Marketplace metering service authentication
/// strategies", read 2026-11-23).
pub const METERING_RESOURCE: &str = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7";

#[derive(Debug, Clone)]
pub struct AzureConfig {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// Requests per second over all metering calls (0 = unlimited).
    pub requests_per_second: u32,
    pub burst: u32,
    /// The `Retry-After` of a 429, in seconds.
    pub retry_after_seconds: u32,
    pub token_lifetime: SignedDuration,
    pub max_future_skew: SignedDuration,
}

impl Default for AzureConfig {
    fn default() -> Self {
        Self {
            tenant_id: "00000000-0000-0000-0000-00000000fa4e".into(),
            client_id: "11111111-1111-1111-1111-11111111fa4e".into(),
            client_secret: "purser-fake-client-secret".into(),
            requests_per_second: 1000,
            burst: 1000,
            retry_after_seconds: 1,
            token_lifetime: SignedDuration::from_secs(3599),
            max_future_skew: SignedDuration::from_mins(5),
        }
    }
}

/// SaaS subscription status (SaaS fulfillment API v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AzureStatus {
    PendingFulfillmentStart,
    Subscribed,
    Suspended,
    Unsubscribed,
}

/// A purchased resource: a SaaS subscription (its id a GUID) or a managed application
/// (its resource URI).
#[derive(Debug, Clone, Serialize)]
pub struct AzureResource {
    pub id: String,
    pub offer_id: String,
    pub plan_id: String,
    pub dimensions: Vec<String>,
    pub status: AzureStatus,
}

/// An event Azure accepted and would bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureEvent {
    pub usage_event_id: Uuid,
    /// resourceId or resourceUri as sent.
    pub resource: String,
    pub dimension: String,
    pub plan_id: String,
    /// The UTC hour of effectiveStartTime: the deduplication bucket.
    pub hour: Timestamp,
    pub effective_start_time: Timestamp,
    pub quantity: Decimal,
    pub message_time: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AzureCounts {
    /// Metering requests (single, batch, listing) that reached the fake.
    pub requests: u64,
    pub throttled: u64,
    /// Refused whole (authentication, api-version, batch size, body).
    pub refused: u64,
    pub faults: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// Per-event refusals by status (Expired, ResourceNotFound, ...), duplicates excluded.
    pub rejected: BTreeMap<String, u64>,
    pub tokens_issued: u64,
    pub token_refusals: u64,
}

#[derive(Debug, Default)]
struct Ledger {
    resources: HashMap<String, AzureResource>,
    /// (resource, dimension, hour) → index in `events`.
    accepted: HashMap<(String, String, Timestamp), usize>,
    events: Vec<AzureEvent>,
    /// The answer given for each accepted event (acceptedMessage of later duplicates).
    answers: Vec<Value>,
    tokens: HashMap<String, Timestamp>,
    counts: AzureCounts,
}

/// A handle to the fake Azure marketplace.
#[derive(Debug, Clone)]
pub struct AzureFake {
    ledger: Arc<Mutex<Ledger>>,
    faults: FaultInjector,
}

impl AzureFake {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the fake Entra endpoint issued `token` and it has not expired. The SaaS
    /// Fulfillment fake takes the same tokens: both APIs take tokens for the same
    /// resource id.
    pub(crate) fn issued_token(&self, token: &str, now: Timestamp) -> bool {
        self.ledger()
            .tokens
            .get(token)
            .is_some_and(|exp| *exp > now)
    }

    pub fn add_resource(&self, resource: AzureResource) {
        self.ledger()
            .resources
            .insert(resource.id.clone(), resource);
    }

    /// A Subscribed SaaS subscription of plan `plan_id` with these dimensions.
    pub fn add_subscription(&self, id: &str, plan_id: &str, dimensions: &[&str]) {
        self.add_resource(AzureResource {
            id: id.to_owned(),
            offer_id: "purser-offer".into(),
            plan_id: plan_id.to_owned(),
            dimensions: dimensions.iter().map(|d| (*d).to_owned()).collect(),
            status: AzureStatus::Subscribed,
        });
    }

    pub fn set_status(&self, id: &str, status: AzureStatus) {
        if let Some(r) = self.ledger().resources.get_mut(id) {
            r.status = status;
        }
    }

    pub fn events(&self) -> Vec<AzureEvent> {
        self.ledger().events.clone()
    }

    pub fn counts(&self) -> AzureCounts {
        self.ledger().counts.clone()
    }

    /// What would be billed per resource × dimension.
    pub fn totals(&self) -> BTreeMap<(String, String), Decimal> {
        let mut totals = BTreeMap::new();
        for e in &self.ledger().events {
            *totals
                .entry((e.resource.clone(), e.dimension.clone()))
                .or_insert(Decimal::ZERO) += e.quantity;
        }
        totals
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        self.faults.set(faults);
    }
}

#[derive(Clone)]
struct AppState {
    fake: AzureFake,
    config: Arc<AzureConfig>,
    contract: &'static AzureContract,
    clock: FakeClock,
    latency: Duration,
    bucket: Option<Arc<TokenBucket>>,
}

/// The metering router (under the contract's base path) and the login router.
pub(crate) fn build(
    config: AzureConfig,
    contract: &'static AzureContract,
    clock: FakeClock,
    latency: Duration,
    faults: FaultConfig,
) -> (AzureFake, Router, Router) {
    let fake = AzureFake {
        ledger: Arc::new(Mutex::new(Ledger::default())),
        faults: FaultInjector::new(faults, 2),
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
    let api = Router::new()
        .route("/usageEvent", post(single))
        .route("/batchUsageEvent", post(batch))
        .route("/usageEvents", get(listing))
        .with_state(state.clone());
    let metering = Router::new().nest(&contract.base_path, api);
    let login = Router::new()
        .route("/{tenant}/oauth2/token", post(token))
        .with_state(state);
    (fake, metering, login)
}

fn aad_error(
    status: StatusCode,
    error: &str,
    code: u32,
    description: &str,
    now: Timestamp,
) -> Response {
    let trace = Uuid::new_v4().to_string();
    (
        status,
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Timestamp: {now}"),
            "error_codes": [code],
            "timestamp": now.to_string(),
            "trace_id": trace,
            "correlation_id": Uuid::new_v4().to_string(),
        })),
    )
        .into_response()
}

/// The v1 client-credentials token request as Microsoft documents it for the metering
/// service: form fields grant_type=client_credentials, client_id, client_secret,
/// resource=20e940b3-4c77-4b0b-9a53-9e16a1b010a7.
async fn token(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    delay(state.latency).await;
    let now = state.clock.now();
    let config = &state.config;
    let refuse = |r: Response| {
        state.fake.ledger().counts.token_refusals += 1;
        r
    };
    let Ok(Form(form)) = form else {
        return refuse(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
            now,
        ));
    };
    if tenant != config.tenant_id {
        return refuse(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
            now,
        ));
    }
    let field = |k: &str| form.get(k).map(String::as_str);
    if field("grant_type") != Some("client_credentials") {
        return refuse(aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
            now,
        ));
    }
    if field("client_id") != Some(config.client_id.as_str()) {
        return refuse(aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            "Application was not found in the directory.",
            now,
        ));
    }
    if field("client_secret") != Some(config.client_secret.as_str()) {
        return refuse(aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            now,
        ));
    }
    if field("resource") != Some(METERING_RESOURCE) {
        return refuse(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            "The resource principal was not found in the tenant.",
            now,
        ));
    }
    let access_token = random_token("eyFake.");
    let expires_on = now + config.token_lifetime;
    {
        let mut ledger = state.fake.ledger();
        ledger.tokens.insert(access_token.clone(), expires_on);
        ledger.counts.tokens_issued += 1;
    }
    let lifetime = config.token_lifetime.as_secs().to_string();
    // Entra's v1 endpoint answers these numbers as strings.
    Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "expires_on": expires_on.as_second().to_string(),
        "not_before": now.as_second().to_string(),
        "resource": METERING_RESOURCE,
        "access_token": access_token,
    }))
    .into_response()
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

/// Everything before the events are looked at: auth, api-version, quota, faults.
fn gate(
    state: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Fault, Response> {
    let mut ledger = state.fake.ledger();
    ledger.counts.requests += 1;
    let now = state.clock.now();
    let Some(token) = bearer(headers) else {
        ledger.counts.refused += 1;
        return Err(api_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "The authorization token isn't provided.",
        ));
    };
    if ledger.tokens.get(token).is_none_or(|exp| *exp <= now) {
        ledger.counts.refused += 1;
        return Err(api_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The authorization token isn't provided, is invalid or expired.",
        ));
    }
    match query.get("api-version") {
        Some(v) if state.contract.api_versions.contains(v) => {}
        _ => {
            ledger.counts.refused += 1;
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                "BadArgument",
                &format!(
                    "The api-version query parameter must be one of {:?}.",
                    state.contract.api_versions
                ),
            ));
        }
    }
    let too_many = || {
        let mut r = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests.",
        );
        if let Ok(v) = HeaderValue::from_str(&state.config.retry_after_seconds.to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
        r
    };
    if let Some(bucket) = &state.bucket
        && bucket.take().is_err()
    {
        ledger.counts.throttled += 1;
        return Err(too_many());
    }
    let fault = state.fake.faults.draw();
    match fault {
        Fault::Throttle => {
            ledger.counts.throttled += 1;
            ledger.counts.faults += 1;
            Err(too_many())
        }
        Fault::Unavailable => {
            ledger.counts.faults += 1;
            Err(api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The service is unavailable.",
            ))
        }
        Fault::DropBeforeApply => {
            ledger.counts.faults += 1;
            Err(drop_connection())
        }
        other => Ok(other),
    }
}

/// A parsed event, or the status that refuses it and a message.
struct Event {
    resource: String,
    resource_field: &'static str,
    quantity: Decimal,
    dimension: String,
    effective_start_time: Timestamp,
    plan_id: String,
}

fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok().or_else(|| {
        // Microsoft's examples omit the offset ("2018-12-01T08:30:14"): UTC.
        text.parse::<jiff::civil::DateTime>()
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    })
}

fn number_decimal(n: &serde_json::Number) -> Option<Decimal> {
    let text = n.to_string();
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

fn parse_event(contract: &AzureContract, raw: &Value) -> Result<Event, (&'static str, String)> {
    let bad = |m: String| ("BadArgument", m);
    let Value::Object(obj) = raw else {
        return Err(bad("The usage event must be an object.".into()));
    };
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    let (resource, resource_field) = match (text("resourceId"), text("resourceUri")) {
        (Some(id), None) => {
            if Uuid::parse_str(&id).is_err() {
                return Err(bad(format!("The resourceId '{id}' is not a GUID.")));
            }
            (id, "resourceId")
        }
        (None, Some(uri)) => (uri, "resourceUri"),
        (Some(_), Some(_)) => {
            return Err(bad(
                "Only one of resourceId and resourceUri may be given.".into()
            ));
        }
        (None, None) => return Err(bad("The resourceId is required.".into())),
    };
    for required in &contract.event_required {
        if obj.get(required).is_none_or(Value::is_null) {
            return Err(bad(format!("The {required} is required.")));
        }
    }
    let quantity = match obj.get("quantity") {
        Some(Value::Number(n)) => {
            number_decimal(n).ok_or_else(|| bad("The quantity is not a number.".into()))?
        }
        _ => return Err(bad("The quantity must be a number.".into())),
    };
    let dimension =
        text("dimension").ok_or_else(|| bad("The dimension must be a string.".into()))?;
    let plan_id = text("planId").ok_or_else(|| bad("The planId must be a string.".into()))?;
    let effective_start_time = text("effectiveStartTime")
        .as_deref()
        .and_then(parse_time)
        .ok_or_else(|| bad("The effectiveStartTime must be an ISO 8601 date-time.".into()))?;
    Ok(Event {
        resource,
        resource_field,
        quantity,
        dimension,
        effective_start_time,
        plan_id,
    })
}

/// The outcome of one event: the status and the item as the contract's
/// `UsageBatchEventOkMessage` names its fields.
fn evaluate(
    state: &AppState,
    ledger: &mut Ledger,
    raw: &Value,
    now: Timestamp,
    fail: bool,
) -> (String, Value) {
    let echo = |status: &str, extra: Value| {
        let mut item = json!({"status": status, "messageTime": now.to_string()});
        if let (Value::Object(item), Value::Object(raw)) = (&mut item, raw) {
            for k in [
                "resourceId",
                "resourceUri",
                "quantity",
                "dimension",
                "effectiveStartTime",
                "planId",
            ] {
                if let Some(v) = raw.get(k) {
                    item.insert(k.to_owned(), v.clone());
                }
            }
            if let Value::Object(extra) = extra {
                item.extend(extra);
            }
        }
        item
    };
    let refuse = |ledger: &mut Ledger, status: &str, message: String| {
        *ledger.counts.rejected.entry(status.to_owned()).or_insert(0) += 1;
        (
            status.to_owned(),
            echo(
                status,
                json!({"error": {"code": status, "message": message}}),
            ),
        )
    };
    if fail {
        ledger.counts.faults += 1;
        return refuse(
            ledger,
            "Error",
            "An internal error occurred; retry the event.".into(),
        );
    }
    let event = match parse_event(state.contract, raw) {
        Ok(e) => e,
        Err((status, message)) => return refuse(ledger, status, message),
    };
    if event.quantity <= Decimal::ZERO {
        return refuse(
            ledger,
            "InvalidQuantity",
            "The quantity must be greater than 0.".into(),
        );
    }
    if now.duration_since(event.effective_start_time) >= SignedDuration::from_hours(24) {
        return refuse(
            ledger,
            "Expired",
            "The effectiveStartTime is more than 24 hours in the past.".into(),
        );
    }
    if event.effective_start_time > now + state.config.max_future_skew {
        return refuse(
            ledger,
            "BadArgument",
            "The effectiveStartTime is in the future.".into(),
        );
    }
    let Some(resource) = ledger.resources.get(&event.resource).cloned() else {
        return refuse(
            ledger,
            "ResourceNotFound",
            format!("The {} was not found.", event.resource_field),
        );
    };
    if resource.status != AzureStatus::Subscribed {
        return refuse(
            ledger,
            "ResourceNotActive",
            format!("The resource is {:?}, not Subscribed.", resource.status),
        );
    }
    if resource.plan_id != event.plan_id {
        return refuse(
            ledger,
            "BadArgument",
            format!("The planId '{}' is not the resource's plan.", event.plan_id),
        );
    }
    if !resource.dimensions.contains(&event.dimension) {
        return refuse(
            ledger,
            "InvalidDimension",
            format!(
                "The dimension '{}' is not in plan '{}'.",
                event.dimension, resource.plan_id
            ),
        );
    }
    let hour = hour_of(event.effective_start_time);
    let key = (event.resource.clone(), event.dimension.clone(), hour);
    if let Some(&index) = ledger.accepted.get(&key) {
        ledger.counts.duplicates += 1;
        let accepted = ledger.answers.get(index).cloned().unwrap_or(Value::Null);
        return (
            "Duplicate".to_owned(),
            echo(
                "Duplicate",
                json!({"error": {
                    "code": "Conflict",
                    "message": "This usage event already exist.",
                    "additionalInfo": {"acceptedMessage": accepted},
                }}),
            ),
        );
    }
    let id = Uuid::new_v4();
    let answer = echo("Accepted", json!({"usageEventId": id.to_string()}));
    let index = ledger.events.len();
    ledger.events.push(AzureEvent {
        usage_event_id: id,
        resource: event.resource,
        dimension: event.dimension,
        plan_id: event.plan_id,
        hour,
        effective_start_time: event.effective_start_time,
        quantity: event.quantity.normalize(),
        message_time: now,
    });
    ledger.answers.push(answer.clone());
    ledger.accepted.insert(key, index);
    ledger.counts.accepted += 1;
    ("Accepted".to_owned(), answer)
}

async fn finish(state: &AppState, fault: Fault, response: Response) -> Response {
    if fault == Fault::TimeoutAfterApply {
        state.fake.ledger().counts.faults += 1;
        tokio::time::sleep(state.fake.faults.hang()).await;
        return drop_connection();
    }
    response
}

fn json_body(state: &AppState, body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        state.fake.ledger().counts.refused += 1;
        api_error(
            StatusCode::BAD_REQUEST,
            "BadArgument",
            &format!("The request body is not valid JSON: {e}"),
        )
    })
}

async fn single(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    delay(state.latency).await;
    let fault = match gate(&state, &headers, &query) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let raw = match json_body(&state, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = state.clock.now();
    let (status, item) = {
        let mut ledger = state.fake.ledger();
        evaluate(
            &state,
            &mut ledger,
            &raw,
            now,
            matches!(fault, Fault::Partial(_)),
        )
    };
    let response = match status.as_str() {
        "Accepted" => Json(item).into_response(),
        "Duplicate" => {
            let error = item.get("error").cloned().unwrap_or(Value::Null);
            (StatusCode::CONFLICT, Json(error)).into_response()
        }
        "Error" => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "An internal error occurred.",
        ),
        _ => {
            let message = item
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("Bad request")
                .to_owned();
            (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "code": status,
                    "message": "One or more errors have occurred.",
                    "target": "usageEventRequest",
                    "details": [{"code": status, "message": message, "target": "usageEventRequest"}],
                })),
            )
                .into_response()
        }
    };
    finish(&state, fault, response).await
}

async fn batch(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    delay(state.latency).await;
    let fault = match gate(&state, &headers, &query) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let raw = match json_body(&state, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let contract = state.contract;
    let Some(Value::Array(items)) = raw.get("request") else {
        state.fake.ledger().counts.refused += 1;
        return api_error(
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "The request must hold a 'request' array of usage events.",
        );
    };
    if items.len() < contract.batch_min || items.len() > contract.batch_max {
        state.fake.ledger().counts.refused += 1;
        return api_error(
            StatusCode::BAD_REQUEST,
            "BadArgument",
            &format!(
                "The batch must contain between {} and {} usage events.",
                contract.batch_min, contract.batch_max
            ),
        );
    }
    let failing = match fault {
        Fault::Partial(k) => Some(k % items.len()),
        _ => None,
    };
    let now = state.clock.now();
    let results: Vec<Value> = {
        let mut ledger = state.fake.ledger();
        items
            .iter()
            .enumerate()
            .map(|(i, raw)| evaluate(&state, &mut ledger, raw, now, Some(i) == failing).1)
            .collect()
    };
    let response = Json(json!({"count": results.len(), "result": results})).into_response();
    finish(&state, fault, response).await
}

fn date_param(text: &str) -> Option<Timestamp> {
    parse_time(text).or_else(|| {
        text.parse::<jiff::civil::Date>()
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    })
}

fn number(d: Decimal) -> Value {
    serde_json::from_str(&d.normalize().to_string()).unwrap_or(Value::Null)
}

/// The reconciliation listing: accepted usage per UTC usage day × resource × dimension,
/// shaped as the contract's `GetUsageEvent`. The fake holds no rejected or mismatched rows,
/// so every row is `Accepted` and processedQuantity equals submittedQuantity.
async fn listing(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    delay(state.latency).await;
    // The listing is not metering: faults and quotas drawn for it would shift the fault
    // stream of the calls tests care about, so it checks only auth and api-version.
    {
        let mut ledger = state.fake.ledger();
        let now = state.clock.now();
        let valid =
            bearer(&headers).is_some_and(|t| ledger.tokens.get(t).is_some_and(|exp| *exp > now));
        if !valid {
            ledger.counts.refused += 1;
            return api_error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "The authorization token isn't provided, is invalid or expired.",
            );
        }
    }
    if !query
        .get("api-version")
        .is_some_and(|v| state.contract.api_versions.contains(v))
    {
        return api_error(
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "The api-version query parameter is required.",
        );
    }
    let Some(start) = query.get("usageStartDate").and_then(|s| date_param(s)) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "usageStartDate is required (ISO 8601).",
        );
    };
    // The contract spells it UsageEndDate; accept either case. A bare date includes that day.
    let end = query
        .get("UsageEndDate")
        .or_else(|| query.get("usageEndDate"))
        .map(|s| {
            let inclusive_day = !s.contains('T');
            date_param(s).map(|t| {
                if inclusive_day {
                    t + SignedDuration::from_hours(24)
                } else {
                    t
                }
            })
        });
    let end = match end {
        Some(None) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "BadArgument",
                "UsageEndDate must be ISO 8601.",
            );
        }
        Some(Some(t)) => t,
        None => state.clock.now() + SignedDuration::from_hours(24),
    };
    let ledger = state.fake.ledger();
    let mut rows: BTreeMap<(Timestamp, String, String, String), (Decimal, u64)> = BTreeMap::new();
    for e in ledger
        .events
        .iter()
        .filter(|e| e.effective_start_time >= start && e.effective_start_time < end)
    {
        let keep = |k: &str, v: &str| query.get(k).is_none_or(|want| want == v);
        let offer = ledger
            .resources
            .get(&e.resource)
            .map(|r| r.offer_id.as_str())
            .unwrap_or("");
        if !(keep("planId", &e.plan_id)
            && keep("dimension", &e.dimension)
            && keep("resourceId", &e.resource)
            && keep("offerId", offer))
        {
            continue;
        }
        if query.get("reconStatus").is_some_and(|s| s != "Accepted") {
            continue;
        }
        let day =
            Timestamp::from_second(e.effective_start_time.as_second().div_euclid(86_400) * 86_400)
                .unwrap_or(e.hour);
        let row = rows
            .entry((
                day,
                e.resource.clone(),
                e.dimension.clone(),
                e.plan_id.clone(),
            ))
            .or_insert((Decimal::ZERO, 0));
        row.0 += e.quantity;
        row.1 += 1;
    }
    let body: Vec<Value> = rows
        .into_iter()
        .map(|((day, resource, dimension, plan), (quantity, count))| {
            let offer = ledger
                .resources
                .get(&resource)
                .map(|r| r.offer_id.clone())
                .unwrap_or_default();
            json!({
                "usageDate": day.to_string(),
                "usageResourceId": resource,
                "dimension": dimension,
                "planId": plan,
                "planName": plan,
                "offerId": offer,
                "offerName": offer,
                "offerType": "SaaS",
                "reconStatus": "Accepted",
                "submittedQuantity": number(quantity),
                "processedQuantity": number(quantity),
                "submittedCount": count,
            })
        })
        .collect();
    Json(Value::Array(body)).into_response()
}

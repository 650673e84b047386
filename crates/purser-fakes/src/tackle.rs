//! The fake Tackle.io metering API: it holds one record per product, dimension,
//! customer and hour, forwards it to the cloud, and from then on answers 409.
//!
//! Rules, each with its source (developers.tackle.io "Create a metering record",
//! reference v1-create-metering-usage-records, and "Metering best practices", read
//! 2026-12-01; `shared/reference/metering-and-marketplaces.md` §1d):
//! - `PUT /v1/metering/usage-records` with `Authorization: Bearer <token>` (401
//!   otherwise; how Tackle issues tokens is not documented there, so the fake takes the
//!   one it is configured with).
//! - `POST` on the same path is answered 405 and counted: it creates duplicates on the
//!   real API and Purser must never call it.
//! - The body is one record `{cloud, product_id, customer_id, start_time, [end_time],
//!   [scheduled_at], dimension: {name, quantity}}`: `cloud` one of aws, gcp, azure;
//!   `end_time` required for gcp and refused otherwise; unknown fields refused; → 400
//!   with a message.
//! - `quantity` above zero: "Sending a metering value of 0 quantity for any dimension
//!   will cause an error" → 422.
//! - A registered product × customer of that cloud and one of its dimensions → else 400.
//! - `start_time` within the cloud's window by the fake's clock (AWS and Azure take 24
//!   hours, Google until an hour after the hour's end; Tackle forwards what the cloud
//!   takes) and not in the future → else 400.
//! - PUT creates or updates the record of (product, dimension, customer, hour of
//!   start_time) until it is forwarded; once forwarded, 409 Conflict. Without
//!   `scheduled_at` the record is forwarded `TackleConfig::forward_after` after it
//!   arrived (default: at once, as Tackle does).
//! - Tackle "sends zero records every hour" for which it received none: the test
//!   control [`TackleFake::zero_fill`] forwards those zeros.
//! - The answer's body of a successful PUT is not documented: the fake answers
//!   `{"id": …}`, which the client reads when present. Faults come from the shared
//!   [`FaultConfig`] (429 with Retry-After, 503, answers lost after applying, dropped
//!   connections); Tackle publishes no quota, so there is no token bucket.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::put;
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::clock::{FakeClock, hour_of};
use crate::faults::{Fault, FaultConfig, FaultInjector};
use crate::server::{bearer, delay, drop_connection};

/// The metering API's path.
pub const USAGE_RECORDS_PATH: &str = "/v1/metering/usage-records";

#[derive(Debug, Clone)]
pub struct TackleConfig {
    /// The bearer token the fake takes.
    pub access_token: String,
    /// How long after a record first arrives Tackle forwards it (zero: at once).
    pub forward_after: SignedDuration,
    /// The `Retry-After` of a 429, in seconds.
    pub retry_after_seconds: u32,
    pub max_future_skew: SignedDuration,
}

impl Default for TackleConfig {
    fn default() -> Self {
        Self {
            access_token: "purser-fake-tackle-token".into(),
            forward_after: SignedDuration::ZERO,
            retry_after_seconds: 1,
            max_future_skew: SignedDuration::from_mins(5),
        }
    }
}

/// A record Tackle forwarded to the cloud: what the cloud would bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TackleRecord {
    pub id: Uuid,
    /// `aws`, `gcp` or `azure`.
    pub cloud: String,
    pub product_id: String,
    pub customer_id: String,
    pub dimension: String,
    /// The UTC hour of start_time.
    pub hour: Timestamp,
    pub quantity: Decimal,
    /// Tackle's own zero for an hour it received nothing for.
    pub zero_fill: bool,
    pub forwarded_at: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TackleCounts {
    /// PUTs that reached the fake.
    pub requests: u64,
    /// POSTs: Purser must never make one.
    pub posts: u64,
    pub created: u64,
    /// PUTs that updated a record not yet forwarded.
    pub updated: u64,
    /// PUTs answered 409 (already forwarded).
    pub conflicts: u64,
    /// Refused for their body (400, 422).
    pub refused: u64,
    pub unauthorized: u64,
    pub throttled: u64,
    pub faults: u64,
}

#[derive(Debug, Clone)]
struct Held {
    id: Uuid,
    cloud: String,
    quantity: Decimal,
    /// When it is (or was) forwarded.
    forward_at: Timestamp,
    zero_fill: bool,
}

type HourKey = (String, String, String, Timestamp);

#[derive(Debug, Default)]
struct Ledger {
    /// (product, customer) → (cloud, dimensions).
    customers: HashMap<(String, String), (String, Vec<String>)>,
    /// (product, dimension, customer, hour) → the record held.
    held: BTreeMap<HourKey, Held>,
    counts: TackleCounts,
}

/// A handle to the fake Tackle.
#[derive(Debug, Clone)]
pub struct TackleFake {
    ledger: Arc<Mutex<Ledger>>,
    faults: FaultInjector,
    clock: FakeClock,
}

impl TackleFake {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a customer of `product_id` on `cloud` (`aws`, `gcp`, `azure`) with
    /// the dimensions its listing meters.
    pub fn add_customer(
        &self,
        product_id: &str,
        customer_id: &str,
        cloud: &str,
        dimensions: &[&str],
    ) {
        let mut ledger = self.ledger();
        let entry = ledger
            .customers
            .entry((product_id.to_owned(), customer_id.to_owned()))
            .or_insert_with(|| (cloud.to_owned(), Vec::new()));
        entry.0 = cloud.to_owned();
        for d in dimensions {
            if !entry.1.iter().any(|known| known == d) {
                entry.1.push((*d).to_owned());
            }
        }
    }

    /// What Tackle has forwarded by the fake's clock, oldest hour first: Purser's
    /// records and Tackle's own zeros.
    pub fn records(&self) -> Vec<TackleRecord> {
        let now = self.clock.now();
        self.ledger()
            .held
            .iter()
            .filter(|(_, held)| held.forward_at <= now)
            .map(
                |((product, dimension, customer, hour), held)| TackleRecord {
                    id: held.id,
                    cloud: held.cloud.clone(),
                    product_id: product.clone(),
                    customer_id: customer.clone(),
                    dimension: dimension.clone(),
                    hour: *hour,
                    quantity: held.quantity,
                    zero_fill: held.zero_fill,
                    forwarded_at: held.forward_at,
                },
            )
            .collect()
    }

    /// Tackle's hourly zero fill for `hour` (its start): a zero record forwarded now
    /// for every registered customer × dimension holding nothing for that hour.
    /// Returns how many were sent.
    pub fn zero_fill(&self, hour: Timestamp) -> usize {
        let now = self.clock.now();
        let hour = hour_of(hour);
        let mut ledger = self.ledger();
        let mut fills = Vec::new();
        for ((product, customer), (cloud, dimensions)) in &ledger.customers {
            for dimension in dimensions {
                let key = (product.clone(), dimension.clone(), customer.clone(), hour);
                if !ledger.held.contains_key(&key) {
                    fills.push((key, cloud.clone()));
                }
            }
        }
        let n = fills.len();
        for (key, cloud) in fills {
            ledger.held.insert(
                key,
                Held {
                    id: Uuid::new_v4(),
                    cloud,
                    quantity: Decimal::ZERO,
                    forward_at: now,
                    zero_fill: true,
                },
            );
        }
        n
    }

    pub fn counts(&self) -> TackleCounts {
        self.ledger().counts.clone()
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        self.faults.set(faults);
    }
}

#[derive(Clone)]
struct AppState {
    fake: TackleFake,
    config: Arc<TackleConfig>,
    latency: Duration,
}

pub(crate) fn build(
    config: TackleConfig,
    clock: FakeClock,
    latency: Duration,
    faults: FaultConfig,
) -> (TackleFake, Router) {
    let fake = TackleFake {
        ledger: Arc::new(Mutex::new(Ledger::default())),
        faults: FaultInjector::new(faults, 4),
        clock,
    };
    let state = AppState {
        fake: fake.clone(),
        config: Arc::new(config),
        latency,
    };
    let router = Router::new()
        .route(USAGE_RECORDS_PATH, put(put_record).post(post_record))
        .with_state(state);
    (fake, router)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// POST creates duplicates on Tackle; the fake refuses it and counts it, so a test
/// can prove Purser never calls it.
async fn post_record(State(state): State<AppState>) -> Response {
    state.fake.ledger().counts.posts += 1;
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "POST creates duplicate usage records; use PUT",
    )
}

/// A body as Tackle reads it.
struct Body {
    cloud: String,
    product_id: String,
    customer_id: String,
    start_time: Timestamp,
    scheduled_at: Option<Timestamp>,
    dimension: String,
    quantity: Decimal,
}

/// Tackle's example time, `2021-12-09 18:31:12.789942` (UTC), or RFC 3339.
fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok().or_else(|| {
        jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S%.f", text)
            .ok()?
            .to_datetime()
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    })
}

fn parse_body(raw: &[u8]) -> Result<Body, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(bad("the body must be one usage record object".into()));
    };
    const FIELDS: [&str; 7] = [
        "cloud",
        "product_id",
        "customer_id",
        "start_time",
        "end_time",
        "scheduled_at",
        "dimension",
    ];
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!("unknown field `{unknown}`")));
    }
    let text = |k: &str| -> Result<String, (StatusCode, String)> {
        match obj.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(bad(format!(
                "`{k}` is required and must be a non-empty string"
            ))),
        }
    };
    let cloud = text("cloud")?;
    if !["aws", "gcp", "azure"].contains(&cloud.as_str()) {
        return Err(bad(format!(
            "`cloud` must be aws, gcp or azure, not `{cloud}`"
        )));
    }
    let product_id = text("product_id")?;
    let customer_id = text("customer_id")?;
    let time = |k: &str| -> Result<Timestamp, (StatusCode, String)> {
        parse_time(&text(k)?).ok_or_else(|| {
            bad(format!(
                "`{k}` is not a time such as 2021-12-09 18:31:12.789942"
            ))
        })
    };
    let start_time = time("start_time")?;
    match (cloud.as_str(), obj.contains_key("end_time")) {
        ("gcp", false) => return Err(bad("`end_time` is required for gcp".into())),
        ("gcp", true) => {
            let end = time("end_time")?;
            if end <= start_time {
                return Err(bad("`end_time` must be after `start_time`".into()));
            }
        }
        (_, true) => return Err(bad(format!("`end_time` is for gcp only, not {cloud}"))),
        (_, false) => {}
    }
    let scheduled_at = match obj.get("scheduled_at") {
        None | Some(Value::Null) => None,
        Some(_) => Some(time("scheduled_at")?),
    };
    let Some(Value::Object(dimension)) = obj.get("dimension") else {
        return Err(bad("`dimension` must be an object {name, quantity}".into()));
    };
    let name = match dimension.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(bad("`dimension.name` is required".into())),
    };
    let quantity = match dimension.get("quantity") {
        Some(Value::Number(n)) => {
            let text = n.to_string();
            Decimal::from_str(&text)
                .or_else(|_| Decimal::from_scientific(&text))
                .map_err(|_| bad("`dimension.quantity` is not a number".into()))?
        }
        _ => return Err(bad("`dimension.quantity` must be a number".into())),
    };
    if quantity <= Decimal::ZERO {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "Sending a metering value of 0 quantity for any dimension will cause an error: quantities must be positive".into(),
        ));
    }
    Ok(Body {
        cloud,
        product_id,
        customer_id,
        start_time,
        scheduled_at,
        dimension: name,
        quantity,
    })
}

/// The cloud's window after an hour's start: Tackle forwards what the cloud takes.
fn window(cloud: &str) -> SignedDuration {
    match cloud {
        "gcp" => SignedDuration::from_hours(2),
        _ => SignedDuration::from_hours(24),
    }
}

async fn put_record(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    delay(state.latency).await;
    let fake = &state.fake;
    {
        let mut ledger = fake.ledger();
        ledger.counts.requests += 1;
        if bearer(&headers) != Some(state.config.access_token.as_str()) {
            ledger.counts.unauthorized += 1;
            return error(
                StatusCode::UNAUTHORIZED,
                "a valid bearer access token is required",
            );
        }
    }
    let fault = fake.faults.draw();
    match fault {
        Fault::Throttle => {
            {
                let mut ledger = fake.ledger();
                ledger.counts.throttled += 1;
                ledger.counts.faults += 1;
            }
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
            if let Ok(v) = HeaderValue::from_str(&state.config.retry_after_seconds.to_string()) {
                response.headers_mut().insert("retry-after", v);
            }
            return response;
        }
        Fault::Unavailable => {
            fake.ledger().counts.faults += 1;
            return error(StatusCode::SERVICE_UNAVAILABLE, "service unavailable");
        }
        Fault::DropBeforeApply => {
            fake.ledger().counts.faults += 1;
            return drop_connection();
        }
        // One record a request: nothing to fail partly.
        Fault::None | Fault::Partial(_) | Fault::TimeoutAfterApply => {}
    }
    let response = apply(&state, &raw);
    if fault == Fault::TimeoutAfterApply {
        fake.ledger().counts.faults += 1;
        tokio::time::sleep(fake.faults.hang()).await;
        return drop_connection();
    }
    response
}

/// Takes or refuses one PUT's record.
fn apply(state: &AppState, raw: &[u8]) -> Response {
    let fake = &state.fake;
    let now = fake.clock.now();
    let mut ledger = fake.ledger();
    let refuse = |ledger: &mut Ledger, status: StatusCode, message: &str| {
        ledger.counts.refused += 1;
        error(status, message)
    };
    let body = match parse_body(raw) {
        Ok(body) => body,
        Err((status, message)) => return refuse(&mut ledger, status, &message),
    };
    let registered = ledger
        .customers
        .get(&(body.product_id.clone(), body.customer_id.clone()))
        .cloned();
    let Some((cloud, dimensions)) = registered else {
        return refuse(
            &mut ledger,
            StatusCode::BAD_REQUEST,
            &format!(
                "customer `{}` of product `{}` is not known",
                body.customer_id, body.product_id
            ),
        );
    };
    if cloud != body.cloud {
        return refuse(
            &mut ledger,
            StatusCode::BAD_REQUEST,
            &format!(
                "product `{}` is listed on {cloud}, not {}",
                body.product_id, body.cloud
            ),
        );
    }
    if !dimensions.contains(&body.dimension) {
        return refuse(
            &mut ledger,
            StatusCode::BAD_REQUEST,
            &format!(
                "dimension `{}` is not metered by product `{}`",
                body.dimension, body.product_id
            ),
        );
    }
    let hour = hour_of(body.start_time);
    if now.duration_since(hour) >= window(&body.cloud) {
        return refuse(
            &mut ledger,
            StatusCode::BAD_REQUEST,
            &format!(
                "start_time {} is outside {}'s window",
                body.start_time, body.cloud
            ),
        );
    }
    if body.start_time > now + state.config.max_future_skew {
        return refuse(
            &mut ledger,
            StatusCode::BAD_REQUEST,
            "start_time is in the future",
        );
    }
    let key = (
        body.product_id.clone(),
        body.dimension.clone(),
        body.customer_id.clone(),
        hour,
    );
    let forward_at = body
        .scheduled_at
        .unwrap_or_else(|| now + state.config.forward_after);
    let (id, created) = match ledger.held.get_mut(&key) {
        Some(held) if held.forward_at <= now => {
            ledger.counts.conflicts += 1;
            return error(
                StatusCode::CONFLICT,
                "a usage record for this product, customer, dimension and hour was already sent to the marketplace",
            );
        }
        Some(held) => {
            held.quantity = body.quantity;
            (held.id, false)
        }
        None => {
            let id = Uuid::new_v4();
            ledger.held.insert(
                key,
                Held {
                    id,
                    cloud: body.cloud.clone(),
                    quantity: body.quantity,
                    forward_at,
                    zero_fill: false,
                },
            );
            (id, true)
        }
    };
    if created {
        ledger.counts.created += 1;
    } else {
        ledger.counts.updated += 1;
    }
    Json(json!({
        "id": id.to_string(),
        "cloud": body.cloud,
        "product_id": body.product_id,
        "customer_id": body.customer_id,
        "dimension": {"name": body.dimension, "quantity": body.quantity.normalize().to_string()},
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tackles_example_time_and_rfc_3339_are_read() {
        let expected: Timestamp = "2021-12-09T18:31:12.789942Z".parse().expect("time");
        assert_eq!(parse_time("2021-12-09 18:31:12.789942"), Some(expected));
        assert_eq!(parse_time("2021-12-09T18:31:12.789942Z"), Some(expected));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn bodies_are_checked_as_tackle_documents_them() {
        let status = |v: Value| parse_body(v.to_string().as_bytes()).err().map(|(s, _)| s);
        let ok = json!({"cloud": "aws", "product_id": "p", "customer_id": "c",
            "start_time": "2026-11-10 13:00:00.000000", "dimension": {"name": "d", "quantity": 3}});
        assert_eq!(status(ok.clone()), None);
        let mut zero = ok.clone();
        zero["dimension"]["quantity"] = json!(0);
        assert_eq!(status(zero), Some(StatusCode::UNPROCESSABLE_ENTITY));
        let mut end = ok.clone();
        end["end_time"] = json!("2026-11-10 14:00:00.000000");
        assert_eq!(status(end.clone()), Some(StatusCode::BAD_REQUEST));
        end["cloud"] = json!("gcp");
        assert_eq!(status(end), None);
        let mut gcp = ok.clone();
        gcp["cloud"] = json!("gcp");
        assert_eq!(status(gcp), Some(StatusCode::BAD_REQUEST));
        let mut cloud = ok.clone();
        cloud["cloud"] = json!("redhat");
        assert_eq!(status(cloud), Some(StatusCode::BAD_REQUEST));
        let mut unknown = ok;
        unknown["quantity"] = json!(3);
        assert_eq!(status(unknown), Some(StatusCode::BAD_REQUEST));
    }
}

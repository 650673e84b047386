//! The fake AWS Marketplace Metering Service: `BatchMeterUsage` over the JSON 1.1 protocol.
//!
//! Rules, each with its source (contract = botocore 1.44.5 `meteringmarketplace/2016-01-14`
//! service model, vendored in `contracts/aws/`, read through [`crate::contract`]; prose =
//! `shared/reference/metering-and-marketplaces.md` §1a, read 2026-11-23):
//! - Protocol (contract `metadata`): `POST /`, `X-Amz-Target: AWSMPMeteringService.BatchMeterUsage`,
//!   `Content-Type: application/x-amz-json-1.1`; errors are `x-amzn-ErrorType` plus
//!   `{"__type", "message"}`, 400 for client errors, 500 for `InternalServiceError`.
//! - SigV4 (contract `metadata.signatureVersion`/`signingName`): recomputed with the configured
//!   key and region; a date more than 5 minutes off the fake's clock is refused (403).
//! - Request under 1 MB (prose, API reference of BatchMeterUsage).
//! - `UsageRecords` 0..25 (contract `UsageRecordList`); record `Timestamp` and `Dimension`
//!   required (contract `UsageRecord.required`); string shapes' lengths and patterns
//!   (contract `ProductCode`, `CustomerAWSAccountId`, `LicenseArn`, `UsageDimension`,
//!   `CustomerIdentifier`, `UsageQuantityAsDecimalString`, `TagKey`, `TagValue`); `Quantity`
//!   0..2147483647 (contract `UsageQuantity`) and never beside `QuantityAsDecimal`
//!   (contract `UsageRecord.QuantityAsDecimal` documentation); any malformed record fails
//!   the whole request (same documentation) with `ValidationException`.
//! - Exactly one of `CustomerIdentifier` / `CustomerAWSAccountId`; `CustomerAWSAccountId`
//!   records carry `LicenseArn` and the request then no `ProductCode`; `CustomerIdentifier`
//!   records need the request's `ProductCode` (contract operation documentation on
//!   Concurrent Agreements; prose §1a).
//! - Unknown product code → `InvalidProductCodeException`; a license ARN the fake does not
//!   know or that belongs to another account → `InvalidLicenseException` (contract shape
//!   documentation: "matches the customer"); a dimension not registered for the product or
//!   license → `InvalidUsageDimensionException` for the whole request (contract shape).
//! - Timestamp window (contract `UsageRecord.Timestamp` and operation documentation): not 24
//!   hours or more in the past; records of the previous calendar month (UTC) only until
//!   06:00 UTC on the first; not in the future beyond `AwsConfig::max_future_skew` (the
//!   contract is silent on the future; a small skew is the fake's reading). Any record out
//!   of range refuses the whole request with `TimestampOutOfBoundsException` (contract).
//! - `UsageAllocations` (contract shapes): 1..2500 allocations, 1..5 tags each, the same kind
//!   of quantity as the record, summing to it → else `InvalidUsageAllocationsException` /
//!   `InvalidTagException`.
//! - Per record (contract `UsageRecordResultStatus`, prose §1a): `Success` with a
//!   `MeteringRecordId`; `CustomerNotSubscribed` for an unknown or unsubscribed customer;
//!   `DuplicateRecord` when the same customer (account + license, or identifier + product),
//!   dimension and hour was metered with a different quantity (compared by value: 17 =
//!   17.0). The same quantity again is `Success` with the same id and is not billed again.
//!   AWS documents dedup as "same customer, dimension, and time" and rounds down to the hour
//!   only for MeterUsage; the fake buckets every record by its UTC hour, the conservative
//!   reading (a client that sends two records in one hour is told so).
//! - Quota (prose, metering-service-quotas page): 10 BatchMeterUsage requests per second per
//!   account and region → `ThrottlingException` (400); configurable.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::clock::{FakeClock, hour_of, month_start};
use crate::contract::AwsContract;
use crate::faults::{Fault, FaultConfig, FaultInjector};
use crate::server::{TokenBucket, delay, drop_connection};
use crate::sigv4;

/// The fake's AWS settings.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    /// Requests per second (0 = unlimited); AWS publishes 10 per account per region.
    pub requests_per_second: u32,
    pub burst: u32,
    /// How far ahead of the fake's clock a record's Timestamp may be.
    pub max_future_skew: SignedDuration,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            access_key_id: "AKIDPURSERFAKE".into(),
            secret_access_key: "purser-fake-secret-access-key".into(),
            region: "us-east-1".into(),
            requests_per_second: 10,
            burst: 10,
            max_future_skew: SignedDuration::from_mins(5),
        }
    }
}

/// Whom a record bills.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AwsCustomer {
    /// Concurrent Agreements: `CustomerAWSAccountId` + `LicenseArn`.
    Account {
        account_id: String,
        license_arn: String,
    },
    /// Legacy: `CustomerIdentifier` + the request's `ProductCode`.
    Identifier {
        customer_identifier: String,
        product_code: String,
    },
}

/// A record AWS accepted and would bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AwsRecord {
    pub customer: AwsCustomer,
    pub dimension: String,
    /// The UTC hour the record's Timestamp falls in.
    pub hour: Timestamp,
    /// The Timestamp as sent.
    pub timestamp: Timestamp,
    pub quantity: Decimal,
    pub metering_record_id: String,
    /// The fake's clock when it was accepted.
    pub accepted_at: Timestamp,
}

/// Counters over the fake's life.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AwsCounts {
    /// Every BatchMeterUsage request that reached the fake.
    pub requests: u64,
    /// Refused for the quota or by an injected throttle.
    pub throttled: u64,
    /// Refused whole (signature, validation, window, dimension, ...).
    pub refused: u64,
    /// Faults injected (any kind).
    pub faults: u64,
    pub success: u64,
    /// Same record again (same quantity): `Success` with the first id, not billed again.
    pub idempotent_resends: u64,
    /// Same customer, dimension and hour with a different quantity.
    pub duplicate_records: u64,
    pub customer_not_subscribed: u64,
    pub unprocessed: u64,
}

#[derive(Debug, Clone)]
struct License {
    account_id: String,
    dimensions: BTreeSet<String>,
    subscribed: bool,
}

#[derive(Debug, Default)]
struct Ledger {
    licenses: HashMap<String, License>,
    products: HashMap<String, BTreeSet<String>>,
    /// (customer identifier, product code) → subscribed.
    identifiers: HashMap<(String, String), bool>,
    /// (customer, dimension, hour) → index in `records`.
    metered: HashMap<(AwsCustomer, String, Timestamp), usize>,
    records: Vec<AwsRecord>,
    counts: AwsCounts,
}

/// A handle to the fake AWS marketplace: its registry (what tests set up) and its records.
#[derive(Debug, Clone)]
pub struct AwsFake {
    ledger: Arc<Mutex<Ledger>>,
    faults: FaultInjector,
    saas: crate::aws_saas::AwsSaasFake,
}

impl AwsFake {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a product (for `CustomerIdentifier` records) and its dimensions.
    pub fn add_product(&self, product_code: &str, dimensions: &[&str]) {
        self.ledger().products.insert(
            product_code.to_owned(),
            dimensions.iter().map(|d| (*d).to_owned()).collect(),
        );
    }

    /// Registers a legacy customer of a product, subscribed.
    pub fn add_customer(&self, customer_identifier: &str, product_code: &str) {
        self.ledger().identifiers.insert(
            (customer_identifier.to_owned(), product_code.to_owned()),
            true,
        );
    }

    pub fn set_customer_subscribed(
        &self,
        customer_identifier: &str,
        product_code: &str,
        subscribed: bool,
    ) {
        self.ledger().identifiers.insert(
            (customer_identifier.to_owned(), product_code.to_owned()),
            subscribed,
        );
    }

    /// Registers a license (Concurrent Agreements) of an account with its dimensions, subscribed.
    pub fn add_license(&self, license_arn: &str, account_id: &str, dimensions: &[&str]) {
        self.ledger().licenses.insert(
            license_arn.to_owned(),
            License {
                account_id: account_id.to_owned(),
                dimensions: dimensions.iter().map(|d| (*d).to_owned()).collect(),
                subscribed: true,
            },
        );
    }

    pub fn set_license_subscribed(&self, license_arn: &str, subscribed: bool) {
        if let Some(license) = self.ledger().licenses.get_mut(license_arn) {
            license.subscribed = subscribed;
        }
    }

    /// Every accepted record, in acceptance order (each billed once).
    pub fn records(&self) -> Vec<AwsRecord> {
        self.ledger().records.clone()
    }

    pub fn counts(&self) -> AwsCounts {
        self.ledger().counts.clone()
    }

    /// What would be billed per customer × dimension (summed over hours).
    pub fn totals(&self) -> std::collections::BTreeMap<(AwsCustomer, String), Decimal> {
        let mut totals = std::collections::BTreeMap::new();
        for r in &self.ledger().records {
            *totals
                .entry((r.customer.clone(), r.dimension.clone()))
                .or_insert(Decimal::ZERO) += r.quantity;
        }
        totals
    }

    /// Replaces the fault configuration (and reseeds).
    pub fn set_faults(&self, faults: FaultConfig) {
        self.faults.set(faults);
    }

    /// The SaaS side of the same seller account: registration tokens (ResolveCustomer,
    /// served on this endpoint), entitlements and SNS notifications.
    pub fn saas(&self) -> &crate::aws_saas::AwsSaasFake {
        &self.saas
    }
}

#[derive(Clone)]
struct AppState {
    fake: AwsFake,
    config: Arc<AwsConfig>,
    contract: &'static AwsContract,
    clock: FakeClock,
    latency: std::time::Duration,
    bucket: Option<Arc<TokenBucket>>,
}

pub(crate) fn build(
    config: AwsConfig,
    contract: &'static AwsContract,
    clock: FakeClock,
    latency: std::time::Duration,
    faults: FaultConfig,
) -> (AwsFake, Router) {
    let fake = AwsFake {
        ledger: Arc::new(Mutex::new(Ledger::default())),
        faults: FaultInjector::new(faults, 1),
        saas: crate::aws_saas::AwsSaasFake::new(clock.clone()),
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
    let router = Router::new()
        .route("/", any(handle))
        // The fake checks the 1 MB limit itself, to answer as AWS does.
        .layer(DefaultBodyLimit::max(8 * 1024 * 1024))
        .with_state(state);
    (fake, router)
}

/// AWS answers "under 1 MB"; the stricter reading, 1,000,000 bytes, protects clients.
const MAX_BODY_BYTES: usize = 1_000_000;

pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut response = (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        json!({"__type": kind, "message": message}).to_string(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-ErrorType", v);
    }
    response
}

pub(crate) fn bad(kind: &str, message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, kind, message)
}

/// SigV4 as AWS checks it, with AWS's refusals (403): shared by every operation of the
/// fake AWS services.
pub(crate) fn check_signature(
    config: &AwsConfig,
    service: &str,
    clock: &FakeClock,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Response> {
    let header_list: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    let signed = sigv4::verify(
        &sigv4::Request {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &header_list,
            body,
        },
        &sigv4::Expected {
            access_key_id: &config.access_key_id,
            secret_access_key: &config.secret_access_key,
            region: &config.region,
            service,
            now: clock.now(),
            max_skew: SignedDuration::from_mins(5),
        },
    );
    match signed {
        Ok(()) => Ok(()),
        Err(sigv4::SigError::Missing) => Err(error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )),
        Err(sigv4::SigError::UnknownKey) => Err(error(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )),
        Err(sigv4::SigError::Invalid(message)) => Err(error(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            &message,
        )),
    }
}

/// ResolveCustomer: the protocol's content type, the body limit and SigV4 as for
/// BatchMeterUsage, then the SaaS fake answers.
fn resolve(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let content_type = format!("application/x-amz-json-{}", state.contract.json_version);
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with(&content_type) {
        return bad(
            "UnknownOperationException",
            &format!("Content-Type must be {content_type}."),
        );
    }
    if body.len() >= MAX_BODY_BYTES {
        return bad(
            "ValidationException",
            "Request size must be less than 1 MB.",
        );
    }
    if let Err(response) = check_signature(
        &state.config,
        &state.contract.signing_name,
        &state.clock,
        method,
        uri,
        headers,
        body,
    ) {
        return response;
    }
    crate::aws_saas::resolve_customer(state.fake.saas(), body)
}

async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    delay(state.latency).await;
    let mut response = answer(&state, &method, &uri, &headers, &body).await;
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-amzn-RequestId", id);
    }
    response
}

fn refused(state: &AppState, response: Response) -> Response {
    state.fake.ledger().counts.refused += 1;
    response
}

async fn answer(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let contract = state.contract;
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    // ResolveCustomer is an operation of the same service (the model's operations); it
    // is not metering, so it is not counted with BatchMeterUsage.
    let resolve_target = format!("{}.ResolveCustomer", contract.target_prefix);
    if method == Method::POST && uri.path() == "/" && target == Some(resolve_target.as_str()) {
        return resolve(state, method, uri, headers, body);
    }
    state.fake.ledger().counts.requests += 1;
    let expected_target = format!("{}.BatchMeterUsage", contract.target_prefix);
    if method != Method::POST || uri.path() != "/" || target != Some(expected_target.as_str()) {
        return refused(
            state,
            bad(
                "UnknownOperationException",
                "The operation is not supported by this fake.",
            ),
        );
    }
    let content_type = format!("application/x-amz-json-{}", contract.json_version);
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with(&content_type) {
        return refused(
            state,
            bad(
                "UnknownOperationException",
                &format!("Content-Type must be {content_type}."),
            ),
        );
    }
    if body.len() >= MAX_BODY_BYTES {
        return refused(
            state,
            bad(
                "ValidationException",
                "Request size must be less than 1 MB.",
            ),
        );
    }
    if let Err(response) = check_signature(
        &state.config,
        &contract.signing_name,
        &state.clock,
        method,
        uri,
        headers,
        body,
    ) {
        return refused(state, response);
    }
    if let Some(bucket) = &state.bucket
        && bucket.take().is_err()
    {
        state.fake.ledger().counts.throttled += 1;
        return bad("ThrottlingException", "Rate exceeded");
    }
    let fault = state.fake.faults.draw();
    match fault {
        Fault::Throttle => {
            let mut ledger = state.fake.ledger();
            ledger.counts.throttled += 1;
            ledger.counts.faults += 1;
            return bad("ThrottlingException", "Rate exceeded");
        }
        Fault::Unavailable => {
            state.fake.ledger().counts.faults += 1;
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServiceErrorException",
                "An internal error has occurred. Retry your request.",
            );
        }
        Fault::DropBeforeApply => {
            state.fake.ledger().counts.faults += 1;
            return drop_connection();
        }
        Fault::None | Fault::TimeoutAfterApply | Fault::Partial(_) => {}
    }
    let request = match parse(contract, body) {
        Ok(request) => request,
        Err(response) => return refused(state, response),
    };
    let now = state.clock.now();
    let applied = apply(state, request, now, fault);
    match applied {
        Err(response) => refused(state, response),
        Ok(body) => {
            if fault == Fault::TimeoutAfterApply {
                state.fake.ledger().counts.faults += 1;
                tokio::time::sleep(state.fake.faults.hang()).await;
                return drop_connection();
            }
            (
                StatusCode::OK,
                [("content-type", "application/x-amz-json-1.1")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

#[derive(Debug)]
struct Record {
    raw: Value,
    timestamp: Timestamp,
    dimension: String,
    customer: AwsCustomer,
    quantity: Decimal,
}

#[derive(Debug)]
struct Batch {
    product_code: Option<String>,
    records: Vec<Record>,
}

fn validation(message: String) -> Response {
    bad(
        "ValidationException",
        &format!("1 validation error detected: {message}"),
    )
}

fn string_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<&'a str>, Response> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(
            "SerializationException",
            &format!("{at}.{name} must be a string"),
        )),
    }
}

fn check(shape: &crate::contract::StringShape, value: &str, at: &str) -> Result<(), Response> {
    match shape.violation(value, at) {
        Some(message) => Err(validation(message)),
        None => Ok(()),
    }
}

/// A botocore JSON timestamp: epoch seconds as a number, read exactly (not through f64).
fn epoch_seconds(value: &Value) -> Option<Timestamp> {
    let Value::Number(n) = value else { return None };
    let text = n.to_string();
    let seconds = Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()?;
    let whole = seconds.trunc();
    let nanos = ((seconds - whole) * Decimal::from(1_000_000_000)).trunc();
    let whole = i64::try_from(whole).ok()?;
    let nanos = i32::try_from(nanos).ok()?;
    Timestamp::new(whole, nanos).ok()
}

fn parse(contract: &AwsContract, body: &[u8]) -> Result<Batch, Response> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        bad(
            "SerializationException",
            &format!("Could not parse the request body: {e}"),
        )
    })?;
    let Value::Object(request) = value else {
        return Err(bad(
            "SerializationException",
            "The request body must be a JSON object.",
        ));
    };
    for required in &contract.request_required {
        if !request.contains_key(required) {
            return Err(validation(format!(
                "Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_camel(required)
            )));
        }
    }
    let product_code = string_field(&request, "ProductCode", "request")?.map(str::to_owned);
    if let Some(code) = &product_code {
        check(&contract.product_code, code, "productCode")?;
    }
    let records = match request.get("UsageRecords") {
        Some(Value::Array(items)) => items,
        _ => {
            return Err(bad(
                "SerializationException",
                "UsageRecords must be a list.",
            ));
        }
    };
    if records.len() > contract.records_max || records.len() < contract.records_min {
        return Err(validation(format!(
            "Value '[...]' at 'usageRecords' failed to satisfy constraint: Member must have length less than or equal to {}",
            contract.records_max
        )));
    }
    let mut parsed = Vec::with_capacity(records.len());
    for (i, raw) in records.iter().enumerate() {
        let at = format!("usageRecords.{}.member", i + 1);
        let Value::Object(record) = raw else {
            return Err(bad(
                "SerializationException",
                &format!("{at} must be an object"),
            ));
        };
        for required in &contract.record_required {
            if record.get(required).is_none_or(Value::is_null) {
                return Err(validation(format!(
                    "Value null at '{at}.{}' failed to satisfy constraint: Member must not be null",
                    lower_camel(required)
                )));
            }
        }
        let timestamp = record
            .get("Timestamp")
            .and_then(epoch_seconds)
            .ok_or_else(|| {
                bad(
                    "SerializationException",
                    &format!("{at}.timestamp must be epoch seconds (a number)"),
                )
            })?;
        let dimension = string_field(record, "Dimension", &at)?
            .unwrap_or_default()
            .to_owned();
        check(&contract.dimension, &dimension, &format!("{at}.dimension"))?;
        let identifier = string_field(record, "CustomerIdentifier", &at)?;
        let account = string_field(record, "CustomerAWSAccountId", &at)?;
        let license = string_field(record, "LicenseArn", &at)?;
        if let Some(id) = identifier {
            check(
                &contract.customer_identifier,
                id,
                &format!("{at}.customerIdentifier"),
            )?;
        }
        if let Some(id) = account {
            check(
                &contract.customer_account_id,
                id,
                &format!("{at}.customerAWSAccountId"),
            )?;
        }
        if let Some(arn) = license {
            check(&contract.license_arn, arn, &format!("{at}.licenseArn"))?;
        }
        let customer = match (identifier, account) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(bad(
                    "ValidationException",
                    &format!(
                        "{at}: exactly one of CustomerIdentifier and CustomerAWSAccountId is required."
                    ),
                ));
            }
            (None, Some(account_id)) => {
                let Some(license_arn) = license else {
                    return Err(bad(
                        "ValidationException",
                        &format!("{at}: CustomerAWSAccountId requires LicenseArn."),
                    ));
                };
                if product_code.is_some() {
                    return Err(bad(
                        "ValidationException",
                        "ProductCode must not be provided with CustomerAWSAccountId and LicenseArn records.",
                    ));
                }
                AwsCustomer::Account {
                    account_id: account_id.to_owned(),
                    license_arn: license_arn.to_owned(),
                }
            }
            (Some(customer_identifier), None) => {
                let Some(code) = &product_code else {
                    return Err(bad(
                        "ValidationException",
                        &format!("{at}: CustomerIdentifier requires the request's ProductCode."),
                    ));
                };
                if license.is_some() {
                    return Err(bad(
                        "ValidationException",
                        &format!(
                            "{at}: LicenseArn goes with CustomerAWSAccountId, not CustomerIdentifier."
                        ),
                    ));
                }
                AwsCustomer::Identifier {
                    customer_identifier: customer_identifier.to_owned(),
                    product_code: code.clone(),
                }
            }
        };
        let (quantity, decimal) = quantity_of(contract, record, &at)?;
        allocations(contract, record, &at, quantity, decimal)?;
        parsed.push(Record {
            raw: raw.clone(),
            timestamp,
            dimension,
            customer,
            quantity,
        });
    }
    Ok(Batch {
        product_code,
        records: parsed,
    })
}

fn lower_camel(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The record's quantity and whether it was sent as `QuantityAsDecimal`.
fn quantity_of(
    contract: &AwsContract,
    record: &Map<String, Value>,
    at: &str,
) -> Result<(Decimal, bool), Response> {
    let whole = record.get("Quantity").filter(|v| !v.is_null());
    let decimal = string_field(record, "QuantityAsDecimal", at)?;
    match (whole, decimal) {
        (Some(_), Some(_)) => Err(bad(
            "ValidationException",
            &format!("{at}: Quantity and QuantityAsDecimal can't both be specified."),
        )),
        (None, None) => Ok((Decimal::ZERO, false)),
        (Some(q), None) => {
            let n = q.as_i64().ok_or_else(|| {
                bad(
                    "SerializationException",
                    &format!("{at}.quantity must be an integer"),
                )
            })?;
            if n < contract.quantity_min || n > contract.quantity_max {
                return Err(validation(format!(
                    "Value '{n}' at '{at}.quantity' failed to satisfy constraint: Member must have value between {} and {}",
                    contract.quantity_min, contract.quantity_max
                )));
            }
            Ok((Decimal::from(n), false))
        }
        (None, Some(text)) => {
            check(
                &contract.quantity_decimal,
                text,
                &format!("{at}.quantityAsDecimal"),
            )?;
            let q = Decimal::from_str(text).map_err(|_| {
                validation(format!(
                    "Value '{text}' at '{at}.quantityAsDecimal' is not a decimal"
                ))
            })?;
            Ok((q, true))
        }
    }
}

fn allocations(
    contract: &AwsContract,
    record: &Map<String, Value>,
    at: &str,
    quantity: Decimal,
    decimal: bool,
) -> Result<(), Response> {
    let list = match record.get("UsageAllocations") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(bad(
                "SerializationException",
                &format!("{at}.usageAllocations must be a list"),
            ));
        }
    };
    let invalid = |m: String| bad("InvalidUsageAllocationsException", &m);
    if list.len() < contract.allocations_min || list.len() > contract.allocations_max {
        return Err(invalid(format!(
            "{at}: between {} and {} usage allocations are allowed.",
            contract.allocations_min, contract.allocations_max
        )));
    }
    let mut sum = Decimal::ZERO;
    for (j, allocation) in list.iter().enumerate() {
        let aat = format!("{at}.usageAllocations.{}.member", j + 1);
        let Value::Object(allocation) = allocation else {
            return Err(bad(
                "SerializationException",
                &format!("{aat} must be an object"),
            ));
        };
        let whole = allocation
            .get("AllocatedUsageQuantity")
            .filter(|v| !v.is_null());
        let text = string_field(allocation, "AllocatedUsageQuantityAsDecimal", &aat)?;
        let amount = match (whole, text, decimal) {
            (Some(q), None, false) => q
                .as_i64()
                .filter(|n| *n >= 0 && *n <= contract.quantity_max)
                .map(Decimal::from)
                .ok_or_else(|| {
                    invalid(format!(
                        "{aat}: AllocatedUsageQuantity must be a whole number in range."
                    ))
                })?,
            (None, Some(t), true) => {
                check(
                    &contract.quantity_decimal,
                    t,
                    &format!("{aat}.allocatedUsageQuantityAsDecimal"),
                )?;
                Decimal::from_str(t).map_err(|_| invalid(format!("{aat}: not a decimal")))?
            }
            _ => {
                return Err(invalid(format!(
                    "{aat}: allocations must use the same type of quantity as the usage record."
                )));
            }
        };
        sum += amount;
        let tags = match allocation.get("Tags") {
            None | Some(Value::Null) => &Vec::new(),
            Some(Value::Array(tags)) => tags,
            Some(_) => {
                return Err(bad(
                    "SerializationException",
                    &format!("{aat}.tags must be a list"),
                ));
            }
        };
        if !tags.is_empty() && (tags.len() < contract.tags_min || tags.len() > contract.tags_max) {
            return Err(bad(
                "InvalidTagException",
                &format!("{aat}: at most {} tags.", contract.tags_max),
            ));
        }
        for tag in tags {
            let key = tag.get("Key").and_then(Value::as_str);
            let value = tag.get("Value").and_then(Value::as_str);
            let (Some(key), Some(value)) = (key, value) else {
                return Err(bad(
                    "InvalidTagException",
                    &format!("{aat}: a tag needs Key and Value."),
                ));
            };
            if let Some(m) = contract
                .tag_key
                .violation(key, &format!("{aat}.tags.key"))
                .or_else(|| {
                    contract
                        .tag_value
                        .violation(value, &format!("{aat}.tags.value"))
                })
            {
                return Err(bad("InvalidTagException", &m));
            }
        }
    }
    if sum != quantity {
        return Err(invalid(format!(
            "{at}: the allocations sum to {sum}, not the record's quantity {quantity}."
        )));
    }
    Ok(())
}

fn apply(state: &AppState, batch: Batch, now: Timestamp, fault: Fault) -> Result<Value, Response> {
    let mut ledger = state.fake.ledger();
    // Whole-request checks first: nothing is applied unless every record passes.
    if let Some(code) = &batch.product_code
        && !ledger.products.contains_key(code)
    {
        return Err(bad(
            "InvalidProductCodeException",
            "The product code passed does not match the product code used for publishing the product.",
        ));
    }
    for (i, record) in batch.records.iter().enumerate() {
        let dimensions = match &record.customer {
            AwsCustomer::Account {
                account_id,
                license_arn,
            } => match ledger.licenses.get(license_arn) {
                Some(license) if license.account_id == *account_id => &license.dimensions,
                _ => {
                    return Err(bad(
                        "InvalidLicenseException",
                        &format!(
                            "usageRecords.{}: the LicenseArn is not valid or does not match the customer.",
                            i + 1
                        ),
                    ));
                }
            },
            AwsCustomer::Identifier { product_code, .. } => match ledger.products.get(product_code)
            {
                Some(dimensions) => dimensions,
                None => return Err(bad("InvalidProductCodeException", "Unknown product code.")),
            },
        };
        if !dimensions.contains(&record.dimension) {
            return Err(bad(
                "InvalidUsageDimensionException",
                &format!(
                    "The usageDimension {} does not match one of the UsageDimensions associated with the product.",
                    record.dimension
                ),
            ));
        }
    }
    for record in &batch.records {
        if out_of_bounds(record.timestamp, now, state.config.max_future_skew) {
            return Err(bad(
                "TimestampOutOfBoundsException",
                &format!(
                    "The timestamp {} is out of the allowed range; no record in the request was processed.",
                    record.timestamp
                ),
            ));
        }
    }
    let unprocessed_index = match fault {
        Fault::Partial(k) if !batch.records.is_empty() => Some(k % batch.records.len()),
        _ => None,
    };
    if unprocessed_index.is_some() {
        ledger.counts.faults += 1;
    }
    let mut results = Vec::new();
    let mut unprocessed = Vec::new();
    for (i, record) in batch.records.into_iter().enumerate() {
        if Some(i) == unprocessed_index {
            ledger.counts.unprocessed += 1;
            unprocessed.push(record.raw);
            continue;
        }
        let subscribed = match &record.customer {
            AwsCustomer::Account { license_arn, .. } => ledger
                .licenses
                .get(license_arn)
                .is_some_and(|l| l.subscribed),
            AwsCustomer::Identifier {
                customer_identifier,
                product_code,
            } => ledger
                .identifiers
                .get(&(customer_identifier.clone(), product_code.clone()))
                .copied()
                .unwrap_or(false),
        };
        if !subscribed {
            ledger.counts.customer_not_subscribed += 1;
            results.push(json!({"UsageRecord": record.raw, "Status": "CustomerNotSubscribed"}));
            continue;
        }
        let hour = hour_of(record.timestamp);
        let key = (record.customer.clone(), record.dimension.clone(), hour);
        if let Some(&index) = ledger.metered.get(&key) {
            let earlier = &ledger.records[index];
            if earlier.quantity == record.quantity {
                let id = earlier.metering_record_id.clone();
                ledger.counts.idempotent_resends += 1;
                results.push(
                    json!({"UsageRecord": record.raw, "MeteringRecordId": id, "Status": "Success"}),
                );
            } else {
                ledger.counts.duplicate_records += 1;
                results.push(json!({"UsageRecord": record.raw, "Status": "DuplicateRecord"}));
            }
            continue;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let index = ledger.records.len();
        ledger.records.push(AwsRecord {
            customer: record.customer,
            dimension: record.dimension,
            hour,
            timestamp: record.timestamp,
            quantity: record.quantity.normalize(),
            metering_record_id: id.clone(),
            accepted_at: now,
        });
        ledger.metered.insert(key, index);
        ledger.counts.success += 1;
        results
            .push(json!({"UsageRecord": record.raw, "MeteringRecordId": id, "Status": "Success"}));
    }
    Ok(json!({"Results": results, "UnprocessedRecords": unprocessed}))
}

/// The contract's window (see the module documentation).
pub(crate) fn out_of_bounds(
    at: Timestamp,
    now: Timestamp,
    max_future_skew: SignedDuration,
) -> bool {
    if at > now + max_future_skew {
        return true;
    }
    if now.duration_since(at) >= SignedDuration::from_hours(24) {
        return true;
    }
    let this_month = month_start(now);
    at < this_month && now >= this_month + SignedDuration::from_hours(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn window_is_24_hours_with_month_end_grace_until_six() {
        let skew = SignedDuration::from_mins(5);
        let now = t("2026-11-20T12:00:00Z");
        assert!(!out_of_bounds(t("2026-11-19T12:00:01Z"), now, skew));
        assert!(out_of_bounds(t("2026-11-19T12:00:00Z"), now, skew));
        assert!(!out_of_bounds(t("2026-11-20T12:04:00Z"), now, skew));
        assert!(out_of_bounds(t("2026-11-20T12:06:00Z"), now, skew));
        // Previous month's usage: accepted until 06:00 UTC on the first.
        assert!(!out_of_bounds(
            t("2026-11-30T23:00:00Z"),
            t("2026-12-01T05:59:59Z"),
            skew
        ));
        assert!(out_of_bounds(
            t("2026-11-30T23:00:00Z"),
            t("2026-12-01T06:00:00Z"),
            skew
        ));
        // The current month's usage is still within 24 hours after 06:00.
        assert!(!out_of_bounds(
            t("2026-12-01T00:00:00Z"),
            t("2026-12-01T07:00:00Z"),
            skew
        ));
    }

    #[test]
    fn epoch_seconds_are_read_exactly() {
        assert_eq!(
            epoch_seconds(&json!(1_700_000_000)),
            Some(Timestamp::from_second(1_700_000_000).unwrap())
        );
        assert_eq!(
            epoch_seconds(&json!(1_700_000_000.5)),
            Some(Timestamp::new(1_700_000_000, 500_000_000).unwrap())
        );
        assert_eq!(epoch_seconds(&json!("1700000000")), None);
    }
}

//! Tackle.io's metering API, for sellers whose listings route through Tackle: one
//! `PUT /v1/metering/usage-records` per record, which Tackle forwards to the cloud
//! (AWS, Google or Azure) the record is for.
//!
//! The contract as read on 2026-12-01 (https://developers.tackle.io/docs/create-a-metering-record,
//! reference v1-create-metering-usage-records, and
//! https://developers.tackle.io/docs/metering-best-practices):
//! - body `{"cloud", "product_id", "customer_id", "start_time", ["end_time" for gcp
//!   only], ["scheduled_at"], "dimension": {"name", "quantity"}}`, one record a request;
//! - **PUT** creates or updates *the* record of product, dimension, customer and hour
//!   of `start_time` until Tackle has forwarded it, then answers **409 Conflict**;
//!   without `scheduled_at` it forwards at once. **POST** creates duplicates and is
//!   never used here;
//! - quantities only above zero ("Sending a metering value of 0 quantity for any
//!   dimension will cause an error"); Tackle itself sends zero records for every hour
//!   it received none for.
//!
//! Unverified there (said so where relied on): how the bearer access token is
//! obtained (it is taken from configuration as a secret), the body of a successful
//! answer (an `id` is read when present, its absence tolerated), Tackle's error body
//! (a `message` or `error` is read when present, the body's start otherwise) and its
//! request quota (none published: the concurrency is configurable).
//!
//! What a 409 means for the ledger is decided in core
//! (`DeliveryState::after_given`): this client only reports it as
//! [`RecordOutcome::AlreadyForwarded`].

use futures::StreamExt;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use purser_core::account::Marketplace;
use purser_core::marketplace::rules::Rules;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::http::{self, Answer, Evidence};
use crate::secret::{Secret, SecretSource};
use crate::{
    Binding, ClientError, Exchange, MeteringClient, Outcomes, RecordOutcome, Route, Submission,
    UsageRecord, longest, refused, retry, retry_maybe_applied, wrong_marketplace,
};

/// The path of the metering API under the base URL.
pub const USAGE_RECORDS_PATH: &str = "/v1/metering/usage-records";
const OPERATION: &str = "tackle.usage-records.put";

/// Tackle's endpoint and the access token Purser sends as `Authorization: Bearer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TackleConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// How Tackle issues this token is not stated in the documentation read
    /// (2026-12-01): it is configured as a secret, never logged nor kept in exchanges.
    pub access_token: SecretSource,
    #[serde(default = "crate::default_timeout_ms")]
    pub request_timeout_ms: u64,
    /// PUTs in flight at once. Tackle publishes no quota (unverified), so this is the
    /// only bound; 429 answers are retried after their `Retry-After`.
    #[serde(default = "crate::default_concurrency")]
    pub concurrency: usize,
}

fn default_base_url() -> String {
    "https://api.tackle.io".into()
}

impl TackleConfig {
    /// A configuration with Tackle's public endpoint.
    pub fn new(access_token: SecretSource) -> TackleConfig {
        TackleConfig {
            base_url: default_base_url(),
            access_token,
            request_timeout_ms: crate::default_timeout_ms(),
            concurrency: crate::default_concurrency(),
        }
    }
}

/// The client of Tackle's metering API for the records of one cloud: one client per
/// cloud, so that each claims only its cloud's Tackle-routed records.
pub struct TackleClient {
    http: reqwest::Client,
    url: String,
    token: Secret,
    cloud: Marketplace,
    concurrency: usize,
    rules: Rules,
}

impl TackleClient {
    pub fn new(config: &TackleConfig, cloud: Marketplace) -> Result<TackleClient, ClientError> {
        let rules = Rules::through_tackle(cloud).ok_or_else(|| {
            ClientError::Config(format!(
                "tackle: forwards to aws, gcp or azure, not {cloud}"
            ))
        })?;
        Ok(TackleClient {
            http: http::build_client(config.request_timeout_ms)?,
            url: format!("{}{USAGE_RECORDS_PATH}", http::trim_base(&config.base_url)),
            token: config.access_token.resolve("tackle.access_token")?,
            cloud,
            concurrency: config.concurrency.max(1),
            rules,
        })
    }

    /// One PUT for one record: its exchange, its outcome and any `Retry-After`.
    async fn put(
        &self,
        record: &UsageRecord,
        body: String,
    ) -> (Exchange, RecordOutcome, Option<std::time::Duration>) {
        let request = self
            .http
            .put(&self.url)
            .bearer_auth(self.token.expose())
            .header("content-type", "application/json")
            .body(body.clone())
            .build();
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                // Not sent: the exchange says so, with the body it would have carried.
                let exchange = Exchange {
                    started_at: Timestamp::now(),
                    marketplace: self.cloud,
                    operation: OPERATION.into(),
                    method: "PUT".into(),
                    url: self.url.clone(),
                    request_body: body,
                    status: None,
                    response_body: None,
                    error: Some(format!("not sent: {e}")),
                    elapsed_ms: 0,
                    record_keys: vec![record.key],
                };
                return (exchange, retry(format!("request not built: {e}")), None);
            }
        };
        let (exchange, result) = http::send(
            &self.http,
            request,
            Evidence {
                marketplace: self.cloud,
                operation: OPERATION,
                request_body: body,
                record_keys: vec![record.key],
                redact_response: None,
            },
        )
        .await;
        match result {
            // A timeout or a lost answer: Tackle may hold (and have forwarded) it. A
            // resend is a PUT of the same hour, answered 409 once forwarded, which the
            // ledger reads against this uncertainty.
            Err(no_answer) => (exchange, no_answer.outcome(OPERATION, true), None),
            Ok(answer) => {
                let retry_after = answer.retry_after();
                (exchange, classify(&answer), retry_after)
            }
        }
    }
}

#[async_trait::async_trait]
impl MeteringClient for TackleClient {
    fn marketplace(&self) -> Marketplace {
        self.cloud
    }

    fn route(&self) -> Route {
        Route::Tackle
    }

    fn rules(&self) -> &Rules {
        &self.rules
    }

    async fn submit(&self, records: &[UsageRecord]) -> Submission {
        let mut outcomes = Outcomes::new(records);
        let mut jobs = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match usage_record(record, self.cloud) {
                Ok(body) => jobs.push((index, body)),
                Err(outcome) => outcomes.set(index, outcome),
            }
        }
        let done: Vec<_> = futures::stream::iter(jobs)
            .map(|(index, body)| async move {
                let (exchange, outcome, retry_after) = self.put(&records[index], body).await;
                (index, exchange, outcome, retry_after)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut exchanges = Vec::with_capacity(done.len());
        let mut retry_after = None;
        for (index, exchange, outcome, after) in done {
            exchanges.push(exchange);
            outcomes.set(index, outcome);
            retry_after = longest(retry_after, after);
        }
        exchanges.sort_by_key(|e| e.started_at);
        Submission {
            outcomes: outcomes.finish(),
            exchanges,
            retry_after,
        }
    }
}

#[derive(Serialize)]
struct WireRecord<'a> {
    cloud: &'static str,
    product_id: &'a str,
    customer_id: &'a str,
    start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<String>,
    dimension: WireDimension<'a>,
}

#[derive(Serialize)]
struct WireDimension<'a> {
    name: &'a str,
    /// The decimal's exact text as a JSON number, never through a float.
    quantity: Box<RawValue>,
}

/// Tackle's time format, as in its example (`2021-12-09 18:31:12.789942`): UTC,
/// microseconds, a space between date and time.
pub(crate) fn tackle_time(at: Timestamp) -> String {
    at.to_zoned(TimeZone::UTC)
        .strftime("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// The PUT body for a record, or the outcome of a record that is not sent: another
/// route's or another cloud's, or a quantity Tackle errors on (zero or less).
pub(crate) fn usage_record(
    record: &UsageRecord,
    cloud: Marketplace,
) -> Result<String, RecordOutcome> {
    let Binding::Tackle {
        cloud: bound_to,
        product_id,
        customer_id,
    } = &record.binding
    else {
        return Err(refused(
            "wrong_route",
            format!(
                "the record is reported to {} directly, not through Tackle (not sent)",
                record.binding.marketplace()
            ),
        ));
    };
    if *bound_to != cloud {
        return Err(wrong_marketplace(record, cloud));
    }
    if record.quantity <= Decimal::ZERO {
        return Err(refused(
            "zero_quantity",
            format!(
                "Tackle takes only quantities above zero and fills quiet hours itself, this is {} (not sent)",
                record.quantity
            ),
        ));
    }
    let quantity = RawValue::from_string(record.quantity.normalize().to_string())
        .map_err(|e| refused("invalid_record", e.to_string()))?;
    let end = record
        .hour
        .checked_add(SignedDuration::from_hours(1))
        .unwrap_or(record.hour);
    let wire = WireRecord {
        cloud: cloud.as_str(),
        product_id,
        customer_id,
        start_time: tackle_time(record.hour),
        // Tackle's body takes end_time for gcp only (Google's reports have an end).
        end_time: (cloud == Marketplace::Gcp).then(|| tackle_time(end)),
        dimension: WireDimension {
            name: &record.marketplace_dimension,
            quantity,
        },
    };
    serde_json::to_string(&wire).map_err(|e| refused("invalid_record", e.to_string()))
}

/// What Tackle's answer means for the record it carried.
fn classify(answer: &Answer) -> RecordOutcome {
    match answer.status {
        // The record is held (and, without scheduled_at, forwarded at once). The
        // answer's body is not documented (unverified): an `id` is kept when present.
        200..=299 => RecordOutcome::Accepted {
            marketplace_id: marketplace_id(&answer.body),
        },
        // "409 if already sent to marketplace": Tackle forwarded a record for this
        // hour and takes no other, quantity not told.
        409 => RecordOutcome::AlreadyForwarded {
            message: message(answer),
        },
        // The body was refused (shape, quantity, customer, dimension): the same body
        // is refused again.
        400 | 422 => refused(format!("HTTP {}", answer.status), message(answer)),
        // The token was refused: not applied; a configuration matter that must be
        // fixed, until then retried (and alarmed on before the window closes).
        401 | 403 => retry(format!(
            "{OPERATION}: HTTP {} (the access token was refused): {}",
            answer.status,
            message(answer)
        )),
        429 => retry(format!("{OPERATION}: HTTP 429 (throttled)")),
        // The request reached Tackle, which may have taken it.
        status if status >= 500 => {
            retry_maybe_applied(format!("{OPERATION}: HTTP {status}: {}", message(answer)))
        }
        status => retry(format!(
            "{OPERATION}: unexpected HTTP {status}: {}",
            message(answer)
        )),
    }
}

/// The `id` of a successful answer, as text, if the body has one.
fn marketplace_id(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    match value.get("id")? {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// Tackle's message for a refusal: its error body is not documented (unverified), so
/// `message`, `detail` or `error` (a string or an object with a message) are read
/// when present, and the body's start otherwise.
fn message(answer: &Answer) -> String {
    let read = || -> Option<String> {
        let value: Value = serde_json::from_str(&answer.body).ok()?;
        let text = |v: &Value| v.as_str().map(str::to_owned);
        value
            .get("message")
            .and_then(text)
            .or_else(|| value.get("detail").and_then(text))
            .or_else(|| match value.get("error")? {
                Value::String(s) => Some(s.clone()),
                other => other.get("message").and_then(text),
            })
    };
    read().unwrap_or_else(|| answer.body.chars().take(500).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn record(cloud: Marketplace, quantity: &str) -> UsageRecord {
        UsageRecord {
            key: Uuid::nil(),
            account_id: "acc".into(),
            dimension: "data_written_gib".into(),
            marketplace_dimension: "data_written".into(),
            hour: "2026-11-10T13:00:00Z".parse().expect("hour"),
            quantity: quantity.parse().expect("quantity"),
            whole_units: false,
            binding: Binding::Tackle {
                cloud,
                product_id: "prod-1".into(),
                customer_id: "cust-1".into(),
            },
        }
    }

    #[test]
    fn the_body_is_tackles_with_end_time_for_google_only() {
        let body: Value = serde_json::from_str(
            &usage_record(&record(Marketplace::Aws, "42.5"), Marketplace::Aws).expect("body"),
        )
        .expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "cloud": "aws",
                "product_id": "prod-1",
                "customer_id": "cust-1",
                "start_time": "2026-11-10 13:00:00.000000",
                "dimension": {"name": "data_written", "quantity": 42.5},
            })
        );
        let gcp: Value = serde_json::from_str(
            &usage_record(&record(Marketplace::Gcp, "1"), Marketplace::Gcp).expect("body"),
        )
        .expect("json");
        assert_eq!(gcp["end_time"], "2026-11-10 14:00:00.000000");
        assert_eq!(gcp["cloud"], "gcp");
    }

    #[test]
    fn zero_other_routes_and_other_clouds_are_never_sent() {
        assert!(matches!(
            usage_record(&record(Marketplace::Aws, "0"), Marketplace::Aws),
            Err(RecordOutcome::Refused { code, .. }) if code == "zero_quantity"
        ));
        assert!(matches!(
            usage_record(&record(Marketplace::Azure, "1"), Marketplace::Aws),
            Err(RecordOutcome::Refused { code, .. }) if code == "wrong_marketplace"
        ));
        let mut direct = record(Marketplace::Aws, "1");
        direct.binding = Binding::AwsLegacy {
            customer_identifier: "c".into(),
            product_code: "p".into(),
        };
        assert!(matches!(
            usage_record(&direct, Marketplace::Aws),
            Err(RecordOutcome::Refused { code, .. }) if code == "wrong_route"
        ));
    }

    #[test]
    fn answers_map_to_outcomes() {
        let answer = |status: u16, body: &str| Answer {
            status,
            headers: reqwest::header::HeaderMap::new(),
            body: body.into(),
        };
        assert_eq!(
            classify(&answer(200, r#"{"id":"ur-1"}"#)),
            RecordOutcome::Accepted {
                marketplace_id: Some("ur-1".into())
            }
        );
        assert_eq!(
            classify(&answer(201, "")),
            RecordOutcome::Accepted {
                marketplace_id: None
            }
        );
        assert!(matches!(
            classify(&answer(409, r#"{"message":"already sent"}"#)),
            RecordOutcome::AlreadyForwarded { message } if message == "already sent"
        ));
        assert!(matches!(
            classify(&answer(422, r#"{"error":{"message":"quantity must be positive"}}"#)),
            RecordOutcome::Refused { message, .. } if message == "quantity must be positive"
        ));
        assert!(matches!(
            classify(&answer(503, "")),
            RecordOutcome::Retry {
                may_have_applied: true,
                ..
            }
        ));
        for status in [401, 403, 429] {
            assert!(matches!(
                classify(&answer(status, "")),
                RecordOutcome::Retry {
                    may_have_applied: false,
                    ..
                }
            ));
        }
    }

    #[test]
    fn the_token_never_shows() {
        let config = TackleConfig::new(SecretSource::Inline(Secret::new("tok-secret")));
        assert!(!format!("{config:?}").contains("tok-secret"));
        assert!(TackleClient::new(&config, Marketplace::Direct).is_err());
    }
}

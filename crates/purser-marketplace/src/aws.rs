//! AWS Marketplace Metering Service, BatchMeterUsage over the JSON 1.1 protocol,
//! signed with SigV4 (contracts/aws/meteringmarketplace.service-2.json, botocore
//! 1.44.5; https://docs.aws.amazon.com/marketplace/latest/APIReference/API_marketplace-metering_BatchMeterUsage.html,
//! read 2026-11-23).
//!
//! AWS deduplicates "identical requests" ("can be retried with the same records or a
//! subset of records"): a resend of a record it already holds with the same quantity
//! is answered `Success` again, so a resend after a lost answer is `Accepted`, and
//! [`RecordOutcome::AlreadyAccepted`] is never produced here. `DuplicateRecord` is
//! the other case: the same customer, dimension and hour with a different quantity.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use futures::StreamExt;
use jiff::Timestamp;
use purser_core::account::Marketplace;
use purser_core::marketplace::rules::Rules;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::{self, Answer, Evidence, NoAnswer};
use crate::limiter::Pacer;
use crate::secret::SecretSource;
use crate::{
    Binding, ClientError, Clock, Exchange, MeteringClient, Outcomes, RecordOutcome, Submission,
    UsageRecord, longest, refused, retry, retry_maybe_applied, system_clock, wrong_marketplace,
};

const TARGET: &str = "AWSMPMeteringService.BatchMeterUsage";
/// The model's `signingName`.
const SIGNING_NAME: &str = "aws-marketplace";

/// AWS's endpoint, region and the seller account's credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    pub region: String,
    /// Defaults to `https://metering.marketplace.{region}.amazonaws.com` (the model's
    /// endpointPrefix).
    #[serde(default)]
    pub base_url: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: SecretSource,
    #[serde(default)]
    pub session_token: Option<SecretSource>,
    /// Requests in flight at once (all still paced to the published rate).
    #[serde(default = "crate::default_concurrency")]
    pub concurrency: usize,
    /// The BatchMeterUsage rate this seller account is granted, when AWS raised the
    /// published quota (10 a second) on request; the published figure otherwise.
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    #[serde(default = "crate::default_timeout_ms")]
    pub request_timeout_ms: u64,
}

impl AwsConfig {
    pub fn new(region: &str, access_key_id: &str, secret_access_key: SecretSource) -> AwsConfig {
        AwsConfig {
            region: region.into(),
            base_url: None,
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token: None,
            concurrency: crate::default_concurrency(),
            requests_per_second: None,
            request_timeout_ms: crate::default_timeout_ms(),
        }
    }
}

/// The BatchMeterUsage client.
pub struct AwsClient {
    http: reqwest::Client,
    url: String,
    region: String,
    credentials: Credentials,
    pacer: Pacer,
    concurrency: usize,
    rules: Rules,
    clock: Clock,
}

impl AwsClient {
    pub fn new(config: &AwsConfig) -> Result<AwsClient, ClientError> {
        if config.region.is_empty() || config.access_key_id.is_empty() {
            return Err(ClientError::Config(
                "aws: region and access_key_id are required".into(),
            ));
        }
        let credentials = credentials(
            &config.access_key_id,
            &config.secret_access_key,
            config.session_token.as_ref(),
        )?;
        let rules = Rules::of(Marketplace::Aws)
            .ok_or_else(|| ClientError::Config("no rules for AWS".into()))?;
        let base = config.base_url.clone().unwrap_or_else(|| {
            format!(
                "https://metering.marketplace.{}.amazonaws.com",
                config.region
            )
        });
        Ok(AwsClient {
            http: http::build_client(config.request_timeout_ms)?,
            url: format!("{}/", http::trim_base(&base)),
            region: config.region.clone(),
            credentials,
            pacer: Pacer::per_second(config.requests_per_second.or(rules.requests_per_second)),
            concurrency: config.concurrency.max(1),
            rules,
            clock: system_clock(),
        })
    }

    /// Reads the time from `clock` when deciding which records have expired (tests).
    pub fn with_clock(mut self, clock: Clock) -> AwsClient {
        self.clock = clock;
        self
    }

    /// The request for `batch`, signed.
    fn request(&self, body: &str) -> Result<reqwest::Request, String> {
        signed_json_request(
            &self.http,
            &SigningTarget {
                url: &self.url,
                region: &self.region,
                signing_name: SIGNING_NAME,
                target: TARGET,
            },
            &self.credentials,
            // The client's clock (the system's, unless a test set it), so that the
            // signature's time and the expiry decisions agree.
            SystemTime::from((self.clock)()),
            body,
        )
    }

    /// One paced BatchMeterUsage call.
    async fn call(&self, body: String, keys: Vec<Uuid>) -> (Exchange, Result<Answer, NoAnswer>) {
        self.pacer.acquire().await;
        match self.request(&body) {
            Ok(request) => {
                http::send(
                    &self.http,
                    request,
                    Evidence {
                        marketplace: Marketplace::Aws,
                        operation: "BatchMeterUsage",
                        request_body: body,
                        record_keys: keys,
                        redact_response: None,
                    },
                )
                .await
            }
            Err(e) => (
                Exchange {
                    started_at: Timestamp::now(),
                    marketplace: Marketplace::Aws,
                    operation: "BatchMeterUsage".into(),
                    method: "POST".into(),
                    url: self.url.clone(),
                    request_body: body,
                    status: None,
                    response_body: None,
                    error: Some(e.clone()),
                    elapsed_ms: 0,
                    record_keys: keys,
                },
                Err(NoAnswer::NotSent(e)),
            ),
        }
    }

    /// Sends one batch; a batch refused as a whole for one record's sake is sent
    /// again one record per request, so only the bad record is refused.
    async fn send_batch(
        &self,
        records: &[UsageRecord],
        product_code: Option<String>,
        batch: Vec<(usize, String)>,
    ) -> BatchDone {
        let product_code = product_code.as_deref();
        let mut done = BatchDone::default();
        let now = (self.clock)();
        let verdicts = self
            .send_once(records, product_code, &batch, now, &mut done)
            .await;
        let mut isolate = Vec::new();
        for (index, verdict) in verdicts {
            match verdict {
                Verdict::Final(outcome) => done.results.push((index, outcome)),
                Verdict::Isolate(_) if batch.len() > 1 => isolate.push(index),
                Verdict::Isolate(outcome) => done.results.push((index, outcome)),
            }
        }
        for index in isolate {
            let Some(single) = batch.iter().find(|(i, _)| *i == index).cloned() else {
                continue;
            };
            let verdicts = self
                .send_once(records, product_code, &[single], now, &mut done)
                .await;
            for (index, verdict) in verdicts {
                let outcome = match verdict {
                    Verdict::Final(o) | Verdict::Isolate(o) => o,
                };
                done.results.push((index, outcome));
            }
        }
        done
    }

    async fn send_once(
        &self,
        records: &[UsageRecord],
        product_code: Option<&str>,
        batch: &[(usize, String)],
        now: Timestamp,
        done: &mut BatchDone,
    ) -> Vec<(usize, Verdict)> {
        let body = envelope(product_code, batch);
        let keys = batch.iter().map(|(i, _)| records[*i].key).collect();
        let (exchange, result) = self.call(body, keys).await;
        done.exchanges.push(exchange);
        let indices: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
        match result {
            Err(no_answer) => {
                let outcome = no_answer.outcome("BatchMeterUsage", true);
                indices
                    .into_iter()
                    .map(|i| (i, Verdict::Final(outcome.clone())))
                    .collect()
            }
            Ok(answer) => {
                done.retry_after = longest(done.retry_after, answer.retry_after());
                classify(records, &indices, &answer, &self.rules, now)
            }
        }
    }
}

/// Where a JSON 1.1 request goes and under which SigV4 scope it is signed.
pub(crate) struct SigningTarget<'a> {
    pub url: &'a str,
    pub region: &'a str,
    /// The model's `metadata.signingName`.
    pub signing_name: &'a str,
    /// `X-Amz-Target`: the model's `targetPrefix` and the operation.
    pub target: &'a str,
}

/// A `POST /` of the AWS JSON 1.1 protocol, signed with SigV4 by AWS's own signer, at
/// `time`. Shared by every AWS Marketplace call (BatchMeterUsage, ResolveCustomer,
/// GetEntitlements).
pub(crate) fn signed_json_request(
    http_client: &reqwest::Client,
    to: &SigningTarget<'_>,
    credentials: &Credentials,
    time: SystemTime,
    body: &str,
) -> Result<reqwest::Request, String> {
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", to.target),
    ];
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(to.region)
        .name(to.signing_name)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        to.url,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| format!("signable request: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("signing: {e}"))?
        .into_parts();
    let mut builder = http_client.post(to.url).body(body.to_owned());
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    // Authorization, X-Amz-Date and X-Amz-Security-Token: sent, never recorded.
    for (name, value) in instructions.headers() {
        builder = builder.header(name, value);
    }
    builder.build().map_err(|e| format!("request: {e}"))
}

/// The seller's credentials from configuration, for AWS's signer.
pub(crate) fn credentials(
    access_key_id: &str,
    secret_access_key: &SecretSource,
    session_token: Option<&SecretSource>,
) -> Result<Credentials, ClientError> {
    if access_key_id.is_empty() {
        return Err(ClientError::Config("aws: access_key_id is required".into()));
    }
    let secret = secret_access_key.resolve("aws.secret_access_key")?;
    let session = match session_token {
        Some(source) => Some(source.resolve("aws.session_token")?),
        None => None,
    };
    Ok(Credentials::new(
        access_key_id.to_owned(),
        secret.expose().to_owned(),
        session.map(|s| s.expose().to_owned()),
        None,
        "purser-configuration",
    ))
}

#[derive(Default)]
struct BatchDone {
    results: Vec<(usize, RecordOutcome)>,
    exchanges: Vec<Exchange>,
    retry_after: Option<Duration>,
}

/// What an answer means for a record: final for this submission, or to be sent
/// again alone (the outcome if it was alone already).
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Final(RecordOutcome),
    Isolate(RecordOutcome),
}

#[async_trait::async_trait]
impl MeteringClient for AwsClient {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Aws
    }

    fn rules(&self) -> &Rules {
        &self.rules
    }

    async fn submit(&self, records: &[UsageRecord]) -> Submission {
        let mut outcomes = Outcomes::new(records);
        // License records (no ProductCode) under `None`, legacy records by product:
        // one ProductCode per request, never both kinds together.
        let mut groups: BTreeMap<Option<&str>, Vec<(usize, String)>> = BTreeMap::new();
        for (index, record) in records.iter().enumerate() {
            let group = match &record.binding {
                Binding::Aws { .. } => None,
                Binding::AwsLegacy { product_code, .. } => Some(product_code.as_str()),
                _ => {
                    outcomes.set(index, wrong_marketplace(record, Marketplace::Aws));
                    continue;
                }
            };
            match usage_record(record) {
                Ok(json) => groups.entry(group).or_default().push((index, json)),
                Err(outcome) => outcomes.set(index, outcome),
            }
        }
        let mut jobs = Vec::new();
        for (group, items) in groups {
            for batch in crate::batches(
                items,
                self.rules.max_records_per_request,
                self.rules.max_request_bytes,
            ) {
                jobs.push((group.map(str::to_owned), batch));
            }
        }
        let done: Vec<BatchDone> = futures::stream::iter(jobs)
            .map(|(group, batch): (Option<String>, _)| self.send_batch(records, group, batch))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut exchanges = Vec::new();
        let mut retry_after = None;
        for d in done {
            exchanges.extend(d.exchanges);
            retry_after = longest(retry_after, d.retry_after);
            for (index, outcome) in d.results {
                outcomes.set(index, outcome);
            }
        }
        exchanges.sort_by_key(|e| e.started_at);
        Submission {
            outcomes: outcomes.finish(),
            exchanges,
            retry_after,
        }
    }
}

/// The bodies `records` would be sent in (for the contract tests).
pub(crate) fn bodies(records: &[UsageRecord]) -> Vec<String> {
    let mut groups: BTreeMap<Option<&str>, Vec<(usize, String)>> = BTreeMap::new();
    for (index, record) in records.iter().enumerate() {
        let group = match &record.binding {
            Binding::AwsLegacy { product_code, .. } => Some(product_code.as_str()),
            _ => None,
        };
        if let Ok(json) = usage_record(record) {
            groups.entry(group).or_default().push((index, json));
        }
    }
    let mut out = Vec::new();
    for (group, items) in groups {
        for batch in crate::batches(items, 25, 1_000_000) {
            out.push(envelope(group, &batch));
        }
    }
    out
}

fn envelope(product_code: Option<&str>, batch: &[(usize, String)]) -> String {
    let items: Vec<&str> = batch.iter().map(|(_, r)| r.as_str()).collect();
    match product_code.and_then(|p| serde_json::to_string(p).ok()) {
        Some(code) => format!(
            "{{\"UsageRecords\":[{}],\"ProductCode\":{code}}}",
            items.join(",")
        ),
        None => format!("{{\"UsageRecords\":[{}]}}", items.join(",")),
    }
}

#[derive(Serialize)]
struct WireRecord<'a> {
    /// JSON 1.1 timestamps are epoch seconds (botocore's default for the protocol).
    #[serde(rename = "Timestamp")]
    timestamp: i64,
    #[serde(rename = "Dimension")]
    dimension: &'a str,
    #[serde(rename = "QuantityAsDecimal")]
    quantity: String,
    #[serde(rename = "CustomerIdentifier", skip_serializing_if = "Option::is_none")]
    customer_identifier: Option<&'a str>,
    #[serde(
        rename = "CustomerAWSAccountId",
        skip_serializing_if = "Option::is_none"
    )]
    customer_aws_account_id: Option<&'a str>,
    #[serde(rename = "LicenseArn", skip_serializing_if = "Option::is_none")]
    license_arn: Option<&'a str>,
}

/// The record as BatchMeterUsage takes it, or a refusal without a request for a
/// quantity the model's pattern `^(0|[1-9][0-9]{0,9})(\.[0-9]{1,6})?$` rejects (one
/// such record would fail the whole request).
pub(crate) fn usage_record(record: &UsageRecord) -> Result<String, RecordOutcome> {
    let quantity = quantity_text(record.quantity).ok_or_else(|| {
        refused(
            "InvalidQuantity",
            format!(
                "QuantityAsDecimal takes 0 to 9999999999.999999 with at most 6 decimals; {} (not sent)",
                record.quantity
            ),
        )
    })?;
    let wire = match &record.binding {
        Binding::Aws {
            customer_aws_account_id,
            license_arn,
        } => WireRecord {
            timestamp: record.hour.as_second(),
            dimension: &record.marketplace_dimension,
            quantity,
            customer_identifier: None,
            customer_aws_account_id: Some(customer_aws_account_id),
            license_arn: Some(license_arn),
        },
        Binding::AwsLegacy {
            customer_identifier,
            ..
        } => WireRecord {
            timestamp: record.hour.as_second(),
            dimension: &record.marketplace_dimension,
            quantity,
            customer_identifier: Some(customer_identifier),
            customer_aws_account_id: None,
            license_arn: None,
        },
        _ => return Err(wrong_marketplace(record, Marketplace::Aws)),
    };
    serde_json::to_string(&wire).map_err(|e| refused("invalid_record", e.to_string()))
}

/// The exact text for QuantityAsDecimal, if the model's pattern allows it.
pub(crate) fn quantity_text(quantity: Decimal) -> Option<String> {
    let q = quantity.normalize();
    if q.is_sign_negative() && !q.is_zero() {
        return None;
    }
    if q.scale() > 6 || q.trunc() >= Decimal::from(10_000_000_000u64) {
        return None;
    }
    // normalize() leaves "-0" possible for a negative zero.
    Some(if q.is_zero() {
        "0".into()
    } else {
        q.to_string()
    })
}

#[derive(Deserialize)]
struct BatchMeterUsageResult {
    #[serde(rename = "Results", default)]
    results: Vec<ResultItem>,
    #[serde(rename = "UnprocessedRecords", default)]
    unprocessed: Vec<EchoRecord>,
}

#[derive(Deserialize)]
struct ResultItem {
    #[serde(rename = "UsageRecord")]
    usage_record: Option<EchoRecord>,
    #[serde(rename = "MeteringRecordId")]
    metering_record_id: Option<String>,
    #[serde(rename = "Status")]
    status: Option<String>,
}

#[derive(Deserialize)]
struct EchoRecord {
    #[serde(rename = "Timestamp")]
    timestamp: Option<serde_json::Number>,
    #[serde(rename = "Dimension")]
    dimension: Option<String>,
    #[serde(rename = "CustomerIdentifier")]
    customer_identifier: Option<String>,
    #[serde(rename = "CustomerAWSAccountId")]
    customer_aws_account_id: Option<String>,
    #[serde(rename = "LicenseArn")]
    license_arn: Option<String>,
}

impl EchoRecord {
    fn matches(&self, record: &UsageRecord) -> bool {
        let same_time = self
            .timestamp
            .as_ref()
            .and_then(serde_json::Number::as_f64)
            .is_some_and(|t| t.round() as i64 == record.hour.as_second());
        let same_dimension =
            self.dimension.as_deref() == Some(record.marketplace_dimension.as_str());
        let same_customer = match &record.binding {
            Binding::Aws {
                customer_aws_account_id,
                license_arn,
            } => {
                self.customer_aws_account_id.as_deref() == Some(customer_aws_account_id.as_str())
                    && self
                        .license_arn
                        .as_deref()
                        .is_none_or(|l| l == license_arn.as_str())
            }
            Binding::AwsLegacy {
                customer_identifier,
                ..
            } => self.customer_identifier.as_deref() == Some(customer_identifier.as_str()),
            _ => false,
        };
        same_time && same_dimension && same_customer
    }
}

#[derive(Deserialize)]
struct AwsErrorBody {
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// The error's name: `x-amzn-ErrorType` or the body's `__type`, without the
/// `namespace#` prefix or the `:uri` suffix the JSON protocols may add (botocore's
/// JSON error parser does the same).
pub(crate) fn error_type(answer: &Answer) -> (Option<String>, String) {
    let body = serde_json::from_str::<AwsErrorBody>(&answer.body).ok();
    let raw = answer
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| body.as_ref().and_then(|b| b.kind.clone()));
    let kind = raw.map(|t| {
        let t = t.rsplit('#').next().unwrap_or(&t).to_owned();
        t.split(':').next().unwrap_or(&t).to_owned()
    });
    let message = body
        .and_then(|b| b.message)
        .unwrap_or_else(|| answer.body.chars().take(500).collect());
    (kind, message)
}

/// Maps one BatchMeterUsage answer onto its records (the model's errors and result
/// statuses; meanings from their documentation strings).
pub(crate) fn classify(
    records: &[UsageRecord],
    batch: &[usize],
    answer: &Answer,
    rules: &Rules,
    now: Timestamp,
) -> Vec<(usize, Verdict)> {
    let all = |outcome: RecordOutcome| -> Vec<(usize, Verdict)> {
        batch
            .iter()
            .map(|i| (*i, Verdict::Final(outcome.clone())))
            .collect()
    };
    if answer.is_success() {
        let parsed: BatchMeterUsageResult = match serde_json::from_str(&answer.body) {
            Ok(p) => p,
            Err(e) => {
                return all(retry_maybe_applied(format!(
                    "BatchMeterUsage answer unreadable: {e}"
                )));
            }
        };
        let mut used = vec![false; parsed.results.len()];
        let mut out = Vec::new();
        for index in batch {
            let record = &records[*index];
            let found = parsed.results.iter().enumerate().find(|(n, r)| {
                !used[*n] && r.usage_record.as_ref().is_some_and(|u| u.matches(record))
            });
            let outcome = match found {
                Some((n, result)) => {
                    used[n] = true;
                    let status = result.status.as_deref().unwrap_or("");
                    match status {
                        // Success: metered (also for an identical resend, see the
                        // module documentation).
                        "Success" => RecordOutcome::Accepted {
                            marketplace_id: result.metering_record_id.clone(),
                        },
                        // DuplicateRecord: "a previously metered record had the same
                        // customer, dimension, and time, but a different quantity".
                        "DuplicateRecord" => RecordOutcome::Conflict {
                            accepted_quantity: None,
                            message: "AWS holds another quantity for this customer, dimension and hour (DuplicateRecord)".into(),
                        },
                        // CustomerNotSubscribed: not subscribed, or the account is
                        // suspended.
                        "CustomerNotSubscribed" => refused(
                            "CustomerNotSubscribed",
                            "the customer is not subscribed to the product (or its AWS account is suspended)",
                        ),
                        other => retry(format!("BatchMeterUsage: unknown result status {other:?}")),
                    }
                }
                None if parsed.unprocessed.iter().any(|u| u.matches(record)) => {
                    // UnprocessedRecords: "service-side failures; retry in a new call".
                    retry("BatchMeterUsage: unprocessed (service-side), send again")
                }
                // In neither list: nothing says it was metered.
                None => retry("BatchMeterUsage: the answer does not mention this record"),
            };
            out.push((*index, Verdict::Final(outcome)));
        }
        return out;
    }
    let (kind, message) = error_type(answer);
    let kind_str = kind.as_deref().unwrap_or("");
    match kind_str {
        "ThrottlingException" => all(retry(format!("BatchMeterUsage throttled: {message}"))),
        // A fault: the service may have done part of the work; records are
        // idempotent, so the resend is safe.
        "InternalServiceErrorException" => all(retry_maybe_applied(format!(
            "BatchMeterUsage: InternalServiceError: {message}"
        ))),
        // "If any of the records are outside of the allowed range, the entire batch is
        // not processed": the records past their deadline by our clock are expired;
        // the rest are sent again without them (alone, so the one AWS means is found).
        "TimestampOutOfBoundsException" => batch
            .iter()
            .map(|i| {
                let expired = RecordOutcome::Expired {
                    message: format!("TimestampOutOfBounds: {message}"),
                };
                if now >= rules.deadline(records[*i].hour) {
                    (*i, Verdict::Final(expired))
                } else {
                    (*i, Verdict::Isolate(expired))
                }
            })
            .collect(),
        // One bad record fails the whole request: isolate it.
        "InvalidUsageDimensionException"
        | "InvalidLicenseException"
        | "InvalidCustomerIdentifierException"
        | "InvalidProductCodeException"
        | "InvalidTagException"
        | "InvalidUsageAllocationsException"
        | "ValidationException" => batch
            .iter()
            .map(|i| (*i, Verdict::Isolate(refused(kind_str, message.clone()))))
            .collect(),
        // DisabledApi: the API is disabled for the seller's account; every record
        // would be refused the same way.
        "DisabledApiException" => all(refused(kind_str, message)),
        _ if answer.status >= 500 => all(retry_maybe_applied(format!(
            "BatchMeterUsage: HTTP {} {kind_str}: {message}",
            answer.status
        ))),
        // 403 AccessDenied / UnrecognizedClient / InvalidSignature / ExpiredToken and
        // anything unknown: Purser's credentials or an unexpected answer, not the
        // record's fault; sent again once fixed.
        _ => all(retry(format!(
            "BatchMeterUsage: HTTP {} {kind_str}: {message}",
            answer.status
        ))),
    }
}

#[cfg(test)]
#[allow(dead_code)]
pub(crate) fn test_client(base: &str) -> AwsClient {
    let mut config = AwsConfig::new(
        "us-east-1",
        "AKIDEXAMPLE",
        SecretSource::Inline(crate::Secret::new(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )),
    );
    config.base_url = Some(base.into());
    AwsClient::new(&config).expect("client")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn answer(status: u16, error_type: Option<&str>, body: &str) -> Answer {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = error_type {
            headers.insert("x-amzn-errortype", t.parse().expect("header"));
        }
        Answer {
            status,
            headers,
            body: body.into(),
        }
    }

    fn rec(hour: &str) -> UsageRecord {
        let hour: Timestamp = hour.parse().expect("hour");
        UsageRecord {
            key: Uuid::new_v4(),
            account_id: "a".into(),
            dimension: "d".into(),
            marketplace_dimension: "d".into(),
            hour,
            quantity: Decimal::from_str("1").expect("d"),
            binding: Binding::Aws {
                customer_aws_account_id: "123456789012".into(),
                license_arn: "arn:aws:license-manager::123456789012:license:l-1".into(),
            },
            whole_units: false,
        }
    }

    #[test]
    fn error_names_lose_their_prefix_and_suffix() {
        let a = answer(
            400,
            Some("ThrottlingException:http://internal.amazon.com/"),
            "{}",
        );
        assert_eq!(error_type(&a).0.as_deref(), Some("ThrottlingException"));
        let b = answer(
            400,
            None,
            r#"{"__type":"com.amazonaws.marketplace#InvalidLicenseException","message":"bad"}"#,
        );
        assert_eq!(
            error_type(&b),
            (Some("InvalidLicenseException".into()), "bad".into())
        );
    }

    #[test]
    fn out_of_bounds_expires_the_late_records_and_isolates_the_rest() {
        let rules = Rules::of(Marketplace::Aws).expect("rules");
        let records = vec![rec("2026-11-09T10:00:00Z"), rec("2026-11-10T12:00:00Z")];
        let now: Timestamp = "2026-11-10T13:30:00Z".parse().expect("now");
        let a = answer(
            400,
            None,
            r#"{"__type":"TimestampOutOfBoundsException","message":"too old"}"#,
        );
        let v = classify(&records, &[0, 1], &a, &rules, now);
        assert!(matches!(
            v[0].1,
            Verdict::Final(RecordOutcome::Expired { .. })
        ));
        assert!(matches!(v[1].1, Verdict::Isolate(_)));
    }

    #[test]
    fn results_are_matched_to_records_and_unmentioned_ones_retried() {
        let rules = Rules::of(Marketplace::Aws).expect("rules");
        let records = vec![rec("2026-11-10T12:00:00Z"), rec("2026-11-10T11:00:00Z")];
        let body = format!(
            r#"{{"Results":[{{"UsageRecord":{{"Timestamp":{}.0,"Dimension":"d","CustomerAWSAccountId":"123456789012","QuantityAsDecimal":"1"}},"MeteringRecordId":"m-1","Status":"Success"}}],"UnprocessedRecords":[]}}"#,
            records[0].hour.as_second()
        );
        let v = classify(
            &records,
            &[0, 1],
            &answer(200, None, &body),
            &rules,
            Timestamp::now(),
        );
        assert_eq!(
            v[0].1,
            Verdict::Final(RecordOutcome::Accepted {
                marketplace_id: Some("m-1".into())
            })
        );
        assert!(matches!(
            v[1].1,
            Verdict::Final(RecordOutcome::Retry { .. })
        ));
    }
}

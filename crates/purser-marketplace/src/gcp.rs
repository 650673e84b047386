//! Google Cloud Marketplace: usage goes to Service Control, `services.check` then
//! `services.report` with the same operationId (contracts/gcp/servicecontrol.v1.json,
//! revision 20261015; https://cloud.google.com/marketplace/docs/partners/integrated-saas/configure-usage-reports,
//! read 2026-11-23).
//!
//! Service Control deduplicates operations by operationId (the record's UUIDv5 key),
//! and a report of an operation it already holds is answered like the first one: a
//! resend after a lost answer comes back as success. So Google's answers never prove
//! an earlier attempt succeeded, and [`RecordOutcome::AlreadyAccepted`] is never
//! produced here; a resend is `Accepted` again.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use purser_core::account::Marketplace;
use purser_core::marketplace::rules::Rules;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::auth::{BearerToken, TokenSource};
use crate::http::{self, Answer, Evidence, NoAnswer};
use crate::secret::SecretSource;
use crate::{
    Binding, ClientError, Exchange, MeteringClient, Outcomes, RecordOutcome, Submission,
    UsageRecord, longest, mentions_expiry, refused, retry, retry_maybe_applied, wrong_marketplace,
};

/// Google Service Control's endpoint and credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    /// Service Control's root (the discovery document's `rootUrl`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub credentials: GcpCredentials,
    /// Each operation's `operationName`.
    #[serde(default = "default_operation_name")]
    pub operation_name: String,
    /// Labels added to every operation (`userLabels`), forwarded to the buyer's
    /// billing reports.
    #[serde(default)]
    pub user_labels: BTreeMap<String, String>,
    #[serde(default = "crate::default_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `services.check` calls in flight at once.
    #[serde(default = "crate::default_concurrency")]
    pub concurrency: usize,
}

/// How the client gets its bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GcpCredentials {
    /// A token Purser's configuration provides (inline, file or environment).
    Token { token: SecretSource },
    /// The GCE/GKE metadata server's token for the default service account.
    Metadata {
        #[serde(default = "default_metadata_base")]
        metadata_base: String,
    },
}

fn default_base_url() -> String {
    "https://servicecontrol.googleapis.com".into()
}

fn default_metadata_base() -> String {
    "http://metadata.google.internal".into()
}

fn default_operation_name() -> String {
    "purser/usage-report".into()
}

impl GcpConfig {
    /// A configuration with defaults for everything but the credentials.
    pub fn new(credentials: GcpCredentials) -> GcpConfig {
        GcpConfig {
            base_url: default_base_url(),
            credentials,
            operation_name: default_operation_name(),
            user_labels: BTreeMap::new(),
            request_timeout_ms: crate::default_timeout_ms(),
            concurrency: crate::default_concurrency(),
        }
    }
}

/// The Service Control client.
pub struct GcpClient {
    http: reqwest::Client,
    base: String,
    operation_name: String,
    user_labels: BTreeMap<String, String>,
    concurrency: usize,
    token: BearerToken,
    rules: Rules,
}

/// Where a Google client's bearer token comes from; shared by Service Control and the
/// Partner Procurement API, which take the same OAuth scope (`cloud-platform`, both
/// discovery documents' `auth.oauth2.scopes`).
pub(crate) fn token_source(credentials: &GcpCredentials) -> Result<TokenSource, ClientError> {
    Ok(match credentials {
        GcpCredentials::Token { token } => TokenSource::Static(token.resolve("gcp.token")?),
        GcpCredentials::Metadata { metadata_base } => TokenSource::GceMetadata {
            url: format!(
                "{}/computeMetadata/v1/instance/service-accounts/default/token",
                http::trim_base(metadata_base)
            ),
        },
    })
}

impl GcpClient {
    pub fn new(config: &GcpConfig) -> Result<GcpClient, ClientError> {
        let source = token_source(&config.credentials)?;
        let rules = Rules::of(Marketplace::Gcp)
            .ok_or_else(|| ClientError::Config("no rules for Google".into()))?;
        Ok(GcpClient {
            http: http::build_client(config.request_timeout_ms)?,
            base: http::trim_base(&config.base_url),
            operation_name: config.operation_name.clone(),
            user_labels: config.user_labels.clone(),
            concurrency: config.concurrency.max(1),
            token: BearerToken::new(Marketplace::Gcp, source),
            rules,
        })
    }

    fn url(&self, service: &str, method: &str) -> String {
        // Service names are DNS names: nothing to escape in a path segment.
        format!("{}/v1/services/{service}:{method}", self.base)
    }

    /// The operation for one record, identical in its check and its report.
    pub(crate) fn operation<'a>(
        &'a self,
        record: &UsageRecord,
        service: &str,
        consumer: &'a str,
    ) -> Result<Operation<'a>, String> {
        let end = record
            .hour
            .checked_add(SignedDuration::from_hours(1))
            .map_err(|e| format!("hour end: {e}"))?;
        Ok(Operation {
            operation_id: record.key.to_string(),
            operation_name: &self.operation_name,
            consumer_id: consumer,
            start_time: record.hour.to_string(),
            end_time: end.to_string(),
            metric_value_sets: vec![MetricValueSet {
                metric_name: format!("{service}/{}", record.marketplace_dimension),
                metric_values: vec![metric_value(record.quantity, record.whole_units)?],
            }],
            user_labels: &self.user_labels,
        })
    }

    async fn check(&self, index: usize, records: &[UsageRecord], token: &str) -> Step {
        let Some(record) = records.get(index) else {
            return Step::done(index, retry("no such record"));
        };
        let Binding::Gcp {
            service_name: service,
            usage_reporting_id: consumer,
        } = &record.binding
        else {
            return Step::done(index, wrong_marketplace(record, Marketplace::Gcp));
        };
        let operation = match self.operation(record, service, consumer) {
            Ok(op) => op,
            Err(e) => return Step::done(index, refused("invalid_record", e)),
        };
        let body = match serde_json::to_string(&CheckRequest { operation }) {
            Ok(b) => b,
            Err(e) => return Step::done(index, refused("invalid_record", e.to_string())),
        };
        let (exchange, result) = self
            .post(
                "services.check",
                self.url(service, "check"),
                token,
                body,
                vec![record.key],
            )
            .await;
        let mut step = Step {
            results: Vec::new(),
            proceed: Vec::new(),
            exchanges: vec![exchange],
            retry_after: None,
            unauthorized: false,
        };
        match result {
            Err(no_answer) => step
                .results
                .push((index, no_answer.outcome("services.check", false))),
            Ok(answer) if answer.is_success() => {
                match serde_json::from_str::<CheckResponse>(&answer.body) {
                    Ok(response) => match response.check_errors.first() {
                        None => step.proceed.push(index),
                        Some(error) => step.results.push((index, classify_check_error(error))),
                    },
                    Err(e) => step.results.push((
                        index,
                        retry(format!("services.check answer unreadable: {e}")),
                    )),
                }
            }
            Ok(answer) => {
                let (outcome, unauthorized) = classify_http_error(&answer, "services.check");
                step.unauthorized = unauthorized;
                step.retry_after = answer.retry_after();
                step.results.push((index, outcome));
            }
        }
        step
    }

    async fn post(
        &self,
        operation: &'static str,
        url: String,
        token: &str,
        body: String,
        keys: Vec<Uuid>,
    ) -> (Exchange, Result<Answer, NoAnswer>) {
        let request = self
            .http
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.clone())
            .build();
        match request {
            Ok(request) => {
                http::send(
                    &self.http,
                    request,
                    Evidence {
                        marketplace: Marketplace::Gcp,
                        operation,
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
                    marketplace: Marketplace::Gcp,
                    operation: operation.into(),
                    method: "POST".into(),
                    url,
                    request_body: body,
                    status: None,
                    response_body: None,
                    error: Some(format!("request not built: {e}")),
                    elapsed_ms: 0,
                    record_keys: keys,
                },
                Err(NoAnswer::NotSent(format!("request not built: {e}"))),
            ),
        }
    }

    /// Reports `batch` (indices into `records`, one service) in one request; a request
    /// refused as a whole is resent one operation per request, so only the operation
    /// at fault is refused.
    async fn report(
        &self,
        records: &[UsageRecord],
        service: &str,
        batch: &[(usize, String)],
        token: &str,
        step: &mut Step,
        isolate: bool,
    ) {
        // The operations were serialised when batching; join them as they are.
        let operations: Vec<&str> = batch.iter().map(|(_, body)| body.as_str()).collect();
        let body = format!("{{\"operations\":[{}]}}", operations.join(","));
        let keys: Vec<Uuid> = batch.iter().map(|(i, _)| records[*i].key).collect();
        let (exchange, result) = self
            .post(
                "services.report",
                self.url(service, "report"),
                token,
                body,
                keys,
            )
            .await;
        step.exchanges.push(exchange);
        let answer = match result {
            Ok(answer) => answer,
            Err(no_answer) => {
                let outcome = no_answer.outcome("services.report", true);
                step.results
                    .extend(batch.iter().map(|(i, _)| (*i, outcome.clone())));
                return;
            }
        };
        if answer.is_success() {
            let response: ReportResponse = match serde_json::from_str(&answer.body) {
                Ok(r) => r,
                Err(e) => {
                    // A 2xx we cannot read may still have been applied; a resend with
                    // the same operationIds is deduplicated.
                    let reason = format!(
                        "services.report answer unreadable (it may have been applied): {e}"
                    );
                    step.results.extend(
                        batch
                            .iter()
                            .map(|(i, _)| (*i, retry_maybe_applied(reason.clone()))),
                    );
                    return;
                }
            };
            let errors: HashMap<&str, &RpcStatus> = response
                .report_errors
                .iter()
                .map(|e| (e.operation_id.as_str(), &e.status))
                .collect();
            for (index, _) in batch {
                let id = records[*index].key.to_string();
                let outcome = match errors.get(id.as_str()) {
                    Some(status) => classify_report_error(status),
                    // discovery doc, ReportResponse.reportErrors: a successful RPC status
                    // with no error for an operation means it was processed.
                    None => RecordOutcome::Accepted {
                        marketplace_id: Some(id),
                    },
                };
                step.results.push((*index, outcome));
            }
            return;
        }
        step.retry_after = longest(step.retry_after, answer.retry_after());
        let (outcome, unauthorized) = classify_http_error(&answer, "services.report");
        step.unauthorized |= unauthorized;
        let whole_request_refused = matches!(
            outcome,
            RecordOutcome::Refused { .. } | RecordOutcome::Expired { .. }
        );
        if isolate && whole_request_refused && batch.len() > 1 {
            for single in batch {
                Box::pin(self.report(
                    records,
                    service,
                    std::slice::from_ref(single),
                    token,
                    step,
                    false,
                ))
                .await;
            }
            return;
        }
        step.results
            .extend(batch.iter().map(|(i, _)| (*i, outcome.clone())));
    }
}

/// What one check (or the reports) found.
struct Step {
    results: Vec<(usize, RecordOutcome)>,
    proceed: Vec<usize>,
    exchanges: Vec<Exchange>,
    retry_after: Option<Duration>,
    unauthorized: bool,
}

impl Step {
    fn done(index: usize, outcome: RecordOutcome) -> Step {
        Step {
            results: vec![(index, outcome)],
            proceed: Vec::new(),
            exchanges: Vec::new(),
            retry_after: None,
            unauthorized: false,
        }
    }
}

#[async_trait::async_trait]
impl MeteringClient for GcpClient {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Gcp
    }

    fn rules(&self) -> &Rules {
        &self.rules
    }

    async fn submit(&self, records: &[UsageRecord]) -> Submission {
        let mut outcomes = Outcomes::new(records);
        let mut exchanges = Vec::new();
        let mut retry_after = None;
        let mut targets = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match &record.binding {
                Binding::Gcp {
                    service_name,
                    usage_reporting_id,
                } => targets.push((index, service_name.as_str(), usage_reporting_id.as_str())),
                _ => outcomes.set(index, wrong_marketplace(record, Marketplace::Gcp)),
            }
        }
        if targets.is_empty() {
            return Submission {
                outcomes: outcomes.finish(),
                exchanges,
                retry_after,
            };
        }
        let token = match self.token.get(&self.http, &mut exchanges).await {
            Ok(token) => token,
            Err(reason) => {
                for (index, _, _) in &targets {
                    outcomes.set(*index, retry(format!("no Google token: {reason}")));
                }
                return Submission {
                    outcomes: outcomes.finish(),
                    exchanges,
                    retry_after,
                };
            }
        };
        let token = token.expose();

        // Checks, a few at a time.
        let indices: Vec<usize> = targets.iter().map(|(i, _, _)| *i).collect();
        let steps: Vec<Step> = futures::stream::iter(indices)
            .map(|i| self.check(i, records, token))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut unauthorized = false;
        let mut proceed: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let service_of: HashMap<usize, (&str, &str)> =
            targets.iter().map(|(i, s, c)| (*i, (*s, *c))).collect();
        for step in steps {
            exchanges.extend(step.exchanges);
            retry_after = longest(retry_after, step.retry_after);
            unauthorized |= step.unauthorized;
            for (index, outcome) in step.results {
                outcomes.set(index, outcome);
            }
            for index in step.proceed {
                if let Some((service, _)) = service_of.get(&index) {
                    proceed.entry(service).or_default().push(index);
                }
            }
        }

        // Reports: per service, as many operations a request as the rules allow.
        let mut step = Step {
            results: Vec::new(),
            proceed: Vec::new(),
            exchanges: Vec::new(),
            retry_after: None,
            unauthorized: false,
        };
        for (service, indices) in proceed {
            let mut batch: Vec<(usize, String)> = Vec::new();
            let mut bytes = 0usize;
            for index in indices {
                let consumer = service_of.get(&index).map_or("", |(_, c)| *c);
                let body = self
                    .operation(&records[index], service, consumer)
                    .and_then(|op| serde_json::to_string(&op).map_err(|e| e.to_string()));
                let body = match body {
                    Ok(b) => b,
                    Err(e) => {
                        outcomes.set(index, refused("invalid_record", e));
                        continue;
                    }
                };
                // `{"operations":[` + `]}` and a comma per operation.
                let full = bytes + body.len() + 1 + 20 >= self.rules.max_request_bytes;
                if !batch.is_empty() && (batch.len() >= self.rules.max_records_per_request || full)
                {
                    let sent = std::mem::take(&mut batch);
                    self.report(records, service, &sent, token, &mut step, true)
                        .await;
                    bytes = 0;
                }
                bytes += body.len() + 1;
                batch.push((index, body));
            }
            if !batch.is_empty() {
                self.report(records, service, &batch, token, &mut step, true)
                    .await;
            }
        }
        exchanges.extend(step.exchanges);
        retry_after = longest(retry_after, step.retry_after);
        unauthorized |= step.unauthorized;
        for (index, outcome) in step.results {
            outcomes.set(index, outcome);
        }
        if unauthorized {
            self.token.clear().await;
        }
        exchanges.sort_by_key(|e| e.started_at);
        Submission {
            outcomes: outcomes.finish(),
            exchanges,
            retry_after,
        }
    }
}

/// The check body of the first record and a report of all (for the contract tests).
pub(crate) fn bodies(records: &[UsageRecord]) -> (String, String) {
    let Ok(client) = GcpClient::new(&GcpConfig::new(GcpCredentials::Token {
        token: SecretSource::Inline(crate::Secret::new("unused")),
    })) else {
        return (String::new(), String::new());
    };
    let mut ops = Vec::new();
    let mut check = String::new();
    for record in records {
        if let Binding::Gcp {
            service_name,
            usage_reporting_id,
        } = &record.binding
            && let Ok(op) = client.operation(record, service_name, usage_reporting_id)
        {
            if check.is_empty() {
                check = serde_json::to_string(&CheckRequest { operation: op }).unwrap_or_default();
                if let Ok(op) = client.operation(record, service_name, usage_reporting_id) {
                    ops.push(serde_json::to_string(&op).unwrap_or_default());
                }
            } else {
                ops.push(serde_json::to_string(&op).unwrap_or_default());
            }
        }
    }
    (check, format!("{{\"operations\":[{}]}}", ops.join(",")))
}

/// `int64Value` (a string, the discovery doc's int64 format) for a dimension the offer
/// reports in whole units (an INT64 metric), else `doubleValue` written with the
/// decimal's exact text: a value's type must agree with the metric's definition in the
/// service configuration, whatever the quantity happens to be.
fn metric_value(quantity: Decimal, whole_units: bool) -> Result<MetricValue, String> {
    if quantity.is_sign_negative() && !quantity.is_zero() {
        return Err(format!("negative quantity {quantity}"));
    }
    let quantity = quantity.normalize();
    if whole_units && !quantity.fract().is_zero() {
        return Err(format!(
            "quantity {quantity} is not a whole number of units"
        ));
    }
    if whole_units {
        let whole = quantity.trunc();
        if whole > Decimal::from(i64::MAX) {
            return Err(format!("quantity {quantity} exceeds int64"));
        }
        Ok(MetricValue {
            int64_value: Some(whole.to_string()),
            double_value: None,
        })
    } else {
        let number = RawValue::from_string(quantity.to_string()).map_err(|e| e.to_string())?;
        Ok(MetricValue {
            int64_value: None,
            double_value: Some(number),
        })
    }
}

/// Check errors that say a backend was unavailable or the caller should slow down:
/// the discovery doc's CheckError.code descriptions ("The backend server for … is
/// unavailable", "Quota check failed", load shedding "to protect the service from
/// being overloaded", and fault injection's artificial errors). The rest (NOT_FOUND,
/// PERMISSION_DENIED, SERVICE_NOT_ACTIVATED, BILLING_DISABLED, CONSUMER_INVALID, …)
/// are about the consumer and refuse the record.
fn is_transient_check_error(code: &str) -> bool {
    code.ends_with("_UNAVAILABLE")
        || matches!(
            code,
            "RESOURCE_EXHAUSTED" | "LOAD_SHEDDING" | "INJECTED_ERROR"
        )
}

fn classify_check_error(error: &CheckError) -> RecordOutcome {
    let message = match (&error.detail, &error.status) {
        (Some(d), _) if !d.is_empty() => d.clone(),
        (_, Some(s)) if !s.message.is_empty() => s.message.clone(),
        _ => error.code.clone(),
    };
    if is_transient_check_error(&error.code) {
        retry(format!("services.check: {}: {message}", error.code))
    } else {
        // configure-usage-reports: "if checkErrors is empty, call services.report";
        // an error about the consumer means the usage must not be reported.
        refused(error.code.clone(), message)
    }
}

/// google.rpc.Code numbers (https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto).
fn classify_report_error(status: &RpcStatus) -> RecordOutcome {
    match status.code {
        // DEADLINE_EXCEEDED 4, RESOURCE_EXHAUSTED 8, ABORTED 10, INTERNAL 13,
        // UNAVAILABLE 14: the RPC guide's retryable codes.
        4 | 8 | 10 | 13 | 14 => retry(format!(
            "services.report: code {}: {}",
            status.code, status.message
        )),
        // INVALID_ARGUMENT 3 about the time: the hour is outside what Google takes
        // (best-practices-reporting: within one hour of the usage).
        3 if mentions_expiry(&status.message) => RecordOutcome::Expired {
            message: status.message.clone(),
        },
        code => refused(rpc_code_name(code), status.message.clone()),
    }
}

fn rpc_code_name(code: i64) -> String {
    match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        9 => "FAILED_PRECONDITION",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => return format!("code_{code}"),
    }
    .to_owned()
}

/// A whole request's failure, from its HTTP status and Google's error body
/// (https://cloud.google.com/apis/design/errors#http_mapping). Also says whether the
/// token was refused.
fn classify_http_error(answer: &Answer, operation: &str) -> (RecordOutcome, bool) {
    let error = serde_json::from_str::<GoogleErrorBody>(&answer.body)
        .ok()
        .map(|b| b.error);
    let message = error
        .as_ref()
        .map(|e| e.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| answer.body.chars().take(500).collect());
    let status_name = error
        .as_ref()
        .and_then(|e| e.status.clone())
        .unwrap_or_else(|| format!("HTTP_{}", answer.status));
    match answer.status {
        // 401 UNAUTHENTICATED: the token expired or was revoked; fetch a new one.
        401 => (
            retry(format!(
                "{operation}: HTTP 401 (token refused, renewed): {message}"
            )),
            true,
        ),
        // 400 INVALID_ARGUMENT / FAILED_PRECONDITION / OUT_OF_RANGE: this request will
        // never be taken, unless it is about time, when the hour has passed.
        400 if mentions_expiry(&message) => (RecordOutcome::Expired { message }, false),
        400 => (refused(status_name, message), false),
        // 404 NOT_FOUND: no such service.
        404 => (refused(status_name, message), false),
        // 403 PERMISSION_DENIED is Purser's service account lacking a role or the API
        // being disabled for the producer project: a configuration to fix, after which
        // the same record goes through; not the buyer's fault.
        // 408, 409 ABORTED, 429 RESOURCE_EXHAUSTED, 5xx: retry.
        status => (
            retry(format!(
                "{operation}: HTTP {status} {status_name}: {message}"
            )),
            false,
        ),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Operation<'a> {
    operation_id: String,
    operation_name: &'a str,
    consumer_id: &'a str,
    start_time: String,
    end_time: String,
    metric_value_sets: Vec<MetricValueSet>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    user_labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricValueSet {
    metric_name: String,
    metric_values: Vec<MetricValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricValue {
    #[serde(skip_serializing_if = "Option::is_none")]
    int64_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    double_value: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct CheckRequest<'a> {
    operation: Operation<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckResponse {
    #[serde(default)]
    check_errors: Vec<CheckError>,
}

#[derive(Deserialize)]
struct CheckError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    status: Option<RpcStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportResponse {
    #[serde(default)]
    report_errors: Vec<ReportError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportError {
    #[serde(default)]
    operation_id: String,
    #[serde(default)]
    status: RpcStatus,
}

#[derive(Deserialize, Default)]
struct RpcStatus {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct GoogleErrorBody {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: Option<String>,
}

/// For tests across the crate: a client with a static token pointed at `base`.
#[cfg(test)]
#[allow(dead_code)]
pub(crate) fn test_client(base: &str) -> GcpClient {
    let mut config = GcpConfig::new(GcpCredentials::Token {
        token: SecretSource::Inline(crate::Secret::new("test-token")),
    });
    config.base_url = base.into();
    GcpClient::new(&config).expect("client")
}

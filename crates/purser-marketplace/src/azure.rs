//! Azure Marketplace metering, api-version 2018-08-31: `batchUsageEvent` to report,
//! `usageEvents` to reconcile (contracts/azure/meteringapi.v1.json;
//! https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis,
//! read 2026-11-23).

use std::collections::HashSet;
use std::str::FromStr;

use jiff::Timestamp;
use purser_core::account::Marketplace;
use purser_core::marketplace::rules::Rules;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::auth::{BearerToken, TokenSource};
use crate::http::{self, Answer, Evidence};
use crate::secret::SecretSource;
use crate::{
    Binding, ClientError, Exchange, MeteringClient, Outcomes, RecordOutcome, Submission,
    UsageRecord, longest, mentions_expiry, refused, retry, retry_maybe_applied, wrong_marketplace,
};

/// The application id of the Marketplace metering API, the token's `resource`
/// (Microsoft's metering authentication page, and the contract's ApiVersion note).
pub const METERING_RESOURCE: &str = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7";
const API_VERSION: &str = "2018-08-31";

/// Azure's metering endpoint and the Entra ID application Purser reports as.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// The contract's server, `https://marketplaceapi.microsoft.com/api`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_login_base")]
    pub login_base: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretSource,
    #[serde(default = "default_resource")]
    pub resource: String,
    #[serde(default = "crate::default_timeout_ms")]
    pub request_timeout_ms: u64,
}

fn default_base_url() -> String {
    "https://marketplaceapi.microsoft.com/api".into()
}

fn default_login_base() -> String {
    "https://login.microsoftonline.com".into()
}

fn default_resource() -> String {
    METERING_RESOURCE.into()
}

impl AzureConfig {
    /// A configuration with the public endpoints.
    pub fn new(tenant_id: &str, client_id: &str, client_secret: SecretSource) -> AzureConfig {
        AzureConfig {
            base_url: default_base_url(),
            login_base: default_login_base(),
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret,
            resource: default_resource(),
            request_timeout_ms: crate::default_timeout_ms(),
        }
    }
}

/// One row of Azure's usage-events listing (`GetUsageEvent` in the contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureUsageEvent {
    pub usage_date: Option<Timestamp>,
    pub usage_resource_id: Option<String>,
    pub dimension: Option<String>,
    pub plan_id: Option<String>,
    pub plan_name: Option<String>,
    pub offer_id: Option<String>,
    pub offer_name: Option<String>,
    pub offer_type: Option<String>,
    pub azure_subscription_id: Option<String>,
    /// Submitted, Accepted, Rejected or Mismatch (the contract's ReconStatus).
    pub recon_status: Option<String>,
    pub submitted_quantity: Option<Decimal>,
    pub processed_quantity: Option<Decimal>,
    pub submitted_count: Option<Decimal>,
}

/// The Azure metering client.
pub struct AzureClient {
    http: reqwest::Client,
    base: String,
    token: BearerToken,
    rules: Rules,
}

/// Entra ID client credentials for the marketplace's APIs. Metering and SaaS
/// fulfillment take a token for the same resource, the marketplace API's application id
/// [`METERING_RESOURCE`] (the ApiVersion notes of both contracts/azure documents;
/// learn.microsoft.com/partner-center/marketplace/partner-center-portal/pc-saas-registration,
/// read 2026-12-01).
pub(crate) fn entra_token_source(
    login_base: &str,
    tenant_id: &str,
    client_id: &str,
    client_secret: &SecretSource,
    resource: &str,
) -> Result<TokenSource, ClientError> {
    let client_secret = client_secret.resolve("azure.client_secret")?;
    if tenant_id.is_empty() || client_id.is_empty() {
        return Err(ClientError::Config(
            "azure: tenant_id and client_id are required".into(),
        ));
    }
    Ok(TokenSource::Entra {
        url: format!("{}/{tenant_id}/oauth2/token", http::trim_base(login_base)),
        client_id: client_id.to_owned(),
        client_secret,
        resource: resource.to_owned(),
    })
}

impl AzureClient {
    pub fn new(config: &AzureConfig) -> Result<AzureClient, ClientError> {
        let rules = Rules::of(Marketplace::Azure)
            .ok_or_else(|| ClientError::Config("no rules for Azure".into()))?;
        Ok(AzureClient {
            http: http::build_client(config.request_timeout_ms)?,
            base: http::trim_base(&config.base_url),
            token: BearerToken::new(
                Marketplace::Azure,
                entra_token_source(
                    &config.login_base,
                    &config.tenant_id,
                    &config.client_id,
                    &config.client_secret,
                    &config.resource,
                )?,
            ),
            rules,
        })
    }

    /// Azure's record of the usage events it received between `start` and `end`, for
    /// reconciliation. `UsageEndDate` is spelled with a capital U as in the contract's
    /// parameter list.
    pub async fn list_usage_events(
        &self,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<AzureUsageEvent>, ClientError> {
        let mut exchanges = Vec::new();
        let token = self
            .token
            .get(&self.http, &mut exchanges)
            .await
            .map_err(ClientError::Auth)?;
        let url = format!("{}/usageEvents", self.base);
        let request = self
            .http
            .get(&url)
            .query(&[
                ("api-version", API_VERSION.to_owned()),
                ("usageStartDate", start.to_string()),
                ("UsageEndDate", end.to_string()),
            ])
            .bearer_auth(token.expose())
            .header("x-ms-requestid", Uuid::new_v4().to_string())
            .header("x-ms-correlationid", Uuid::new_v4().to_string())
            .build()
            .map_err(|e| ClientError::Config(format!("usageEvents request: {e}")))?;
        let (_, result) = http::send(
            &self.http,
            request,
            Evidence {
                marketplace: Marketplace::Azure,
                operation: "usageEvents",
                request_body: String::new(),
                record_keys: Vec::new(),
                redact_response: None,
            },
        )
        .await;
        let answer = result.map_err(|e| ClientError::Transport {
            operation: "usageEvents",
            message: e.reason("usageEvents"),
        })?;
        if matches!(answer.status, 401 | 403) {
            self.token.clear().await;
        }
        if !answer.is_success() {
            return Err(ClientError::Status {
                operation: "usageEvents",
                status: answer.status,
                message: answer.body.chars().take(500).collect(),
            });
        }
        parse_usage_events(&answer.body).map_err(|message| ClientError::Decode {
            operation: "usageEvents",
            message,
        })
    }

    /// One `batchUsageEvent` request for `batch` (indices into `records`).
    async fn send_batch(
        &self,
        records: &[UsageRecord],
        batch: &[(usize, String)],
        token: &str,
        outcomes: &mut Outcomes,
        exchanges: &mut Vec<Exchange>,
    ) -> BatchResult {
        let items: Vec<&str> = batch.iter().map(|(_, item)| item.as_str()).collect();
        let body = format!("{{\"request\":[{}]}}", items.join(","));
        let keys: Vec<Uuid> = batch.iter().map(|(i, _)| records[*i].key).collect();
        let url = format!("{}/batchUsageEvent?api-version={API_VERSION}", self.base);
        let request = self
            .http
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            // A new id per request; the correlation id ties requests of one submission.
            .header("x-ms-requestid", Uuid::new_v4().to_string())
            .header("x-ms-correlationid", Uuid::new_v4().to_string())
            .body(body.clone())
            .build();
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                for (i, _) in batch {
                    outcomes.set(*i, retry(format!("request not built: {e}")));
                }
                return BatchResult::default();
            }
        };
        let (exchange, result) = http::send(
            &self.http,
            request,
            Evidence {
                marketplace: Marketplace::Azure,
                operation: "batchUsageEvent",
                request_body: body,
                record_keys: keys,
                redact_response: None,
            },
        )
        .await;
        exchanges.push(exchange);
        match result {
            Err(no_answer) => {
                let outcome = no_answer.outcome("batchUsageEvent", true);
                for (i, _) in batch {
                    outcomes.set(*i, outcome.clone());
                }
                BatchResult::default()
            }
            Ok(answer) => {
                let indices: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
                classify_batch(records, &indices, &answer, outcomes)
            }
        }
    }
}

#[derive(Default)]
struct BatchResult {
    retry_after: Option<std::time::Duration>,
    unauthorized: bool,
}

#[async_trait::async_trait]
impl MeteringClient for AzureClient {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Azure
    }

    fn rules(&self) -> &Rules {
        &self.rules
    }

    async fn submit(&self, records: &[UsageRecord]) -> Submission {
        let mut outcomes = Outcomes::new(records);
        let mut exchanges = Vec::new();
        let mut retry_after = None;
        let mut items = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match usage_event(record) {
                Ok(Some(item)) => items.push((index, item)),
                Ok(None) => outcomes.set(index, wrong_marketplace(record, Marketplace::Azure)),
                Err(outcome) => outcomes.set(index, outcome),
            }
        }
        if items.is_empty() {
            return Submission {
                outcomes: outcomes.finish(),
                exchanges,
                retry_after,
            };
        }
        let token = match self.token.get(&self.http, &mut exchanges).await {
            Ok(token) => token,
            Err(reason) => {
                for (index, _) in &items {
                    outcomes.set(*index, retry(format!("no Entra ID token: {reason}")));
                }
                return Submission {
                    outcomes: outcomes.finish(),
                    exchanges,
                    retry_after,
                };
            }
        };
        let mut unauthorized = false;
        for batch in crate::batches(
            items,
            self.rules.max_records_per_request,
            self.rules.max_request_bytes,
        ) {
            let result = self
                .send_batch(
                    records,
                    &batch,
                    token.expose(),
                    &mut outcomes,
                    &mut exchanges,
                )
                .await;
            retry_after = longest(retry_after, result.retry_after);
            unauthorized |= result.unauthorized;
        }
        if unauthorized {
            self.token.clear().await;
        }
        Submission {
            outcomes: outcomes.finish(),
            exchanges,
            retry_after,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageEvent<'a> {
    resource_id: &'a str,
    /// The decimal's exact text as a JSON number (the contract's `number`/`double`).
    quantity: Box<RawValue>,
    dimension: &'a str,
    effective_start_time: String,
    plan_id: &'a str,
}

/// The batch item for a record, `Ok(None)` for a record of another marketplace, or a
/// refusal for a quantity Azure never takes (zero or negative: `InvalidQuantity`,
/// "quantity must be greater than zero" on the metering API page), decided here
/// without a request.
pub(crate) fn usage_event(record: &UsageRecord) -> Result<Option<String>, RecordOutcome> {
    let Binding::Azure {
        resource_id,
        plan_id,
    } = &record.binding
    else {
        return Ok(None);
    };
    if record.quantity <= Decimal::ZERO {
        return Err(refused(
            "InvalidQuantity",
            format!(
                "Azure takes only quantities above zero, this is {} (not sent)",
                record.quantity
            ),
        ));
    }
    let quantity = RawValue::from_string(record.quantity.normalize().to_string())
        .map_err(|e| refused("InvalidQuantity", e.to_string()))?;
    let event = UsageEvent {
        resource_id,
        quantity,
        dimension: &record.marketplace_dimension,
        effective_start_time: record.hour.to_string(),
        plan_id,
    };
    serde_json::to_string(&event)
        .map(Some)
        .map_err(|e| refused("invalid_record", e.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchResponse {
    #[serde(default)]
    result: Vec<BatchItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchItem {
    #[serde(default)]
    usage_event_id: Option<String>,
    #[serde(default)]
    status: String,
    #[serde(default)]
    resource_id: Option<String>,
    #[serde(default)]
    dimension: Option<String>,
    #[serde(default)]
    effective_start_time: Option<String>,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemError {
    #[serde(default)]
    additional_info: Option<AdditionalInfo>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdditionalInfo {
    #[serde(default)]
    accepted_message: Option<AcceptedMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AcceptedMessage {
    #[serde(default)]
    usage_event_id: Option<String>,
    #[serde(default)]
    quantity: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct BadRequest {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Maps one `batchUsageEvent` answer onto its records.
fn classify_batch(
    records: &[UsageRecord],
    batch: &[usize],
    answer: &Answer,
    outcomes: &mut Outcomes,
) -> BatchResult {
    let mut result = BatchResult {
        retry_after: answer.retry_after(),
        unauthorized: false,
    };
    let set_all = |outcomes: &mut Outcomes, outcome: RecordOutcome| {
        for i in batch {
            outcomes.set(*i, outcome.clone());
        }
    };
    match answer.status {
        200..=299 => {}
        // The contract's 400: "Bad request" (more than 25 events, missing or invalid
        // data, or expired): nothing in it was taken, and resending it unchanged gets
        // the same answer.
        400 => {
            let bad = serde_json::from_str::<BadRequest>(&answer.body).ok();
            let message = bad
                .as_ref()
                .and_then(|b| b.message.clone())
                .unwrap_or_else(|| answer.body.chars().take(500).collect());
            let code = bad
                .and_then(|b| b.code)
                .unwrap_or_else(|| "BadArgument".into());
            if mentions_expiry(&message) {
                set_all(outcomes, RecordOutcome::Expired { message });
            } else {
                set_all(outcomes, refused(code, message));
            }
            return result;
        }
        // 401/403: the token is invalid or expired, or belongs to another Entra app
        // (the contract's 403 description): fetch a new one and send again.
        401 | 403 => {
            result.unauthorized = true;
            set_all(
                outcomes,
                retry(format!(
                    "batchUsageEvent: HTTP {} (token refused, renewed)",
                    answer.status
                )),
            );
            return result;
        }
        // 429: throttled, nothing taken.
        429 => {
            set_all(outcomes, retry("batchUsageEvent: HTTP 429 (throttled)"));
            return result;
        }
        // 5xx: the request reached Azure and may have been partly applied; a resend is
        // answered Duplicate for what was, which is read as AlreadyAccepted.
        status if status >= 500 => {
            set_all(
                outcomes,
                retry_maybe_applied(format!("batchUsageEvent: HTTP {status}")),
            );
            return result;
        }
        status => {
            set_all(
                outcomes,
                retry(format!(
                    "batchUsageEvent: unexpected HTTP {status}: {}",
                    answer.body.chars().take(300).collect::<String>()
                )),
            );
            return result;
        }
    }
    let response: BatchResponse = match serde_json::from_str(&answer.body) {
        Ok(r) => r,
        Err(e) => {
            set_all(
                outcomes,
                retry_maybe_applied(format!("batchUsageEvent answer unreadable: {e}")),
            );
            return result;
        }
    };
    // Results name their event by resource, dimension and start time; match on those
    // (the contract does not promise the order), and fall back to the position.
    let mut used = HashSet::new();
    for (position, index) in batch.iter().enumerate() {
        let record = &records[*index];
        let found = response
            .result
            .iter()
            .enumerate()
            .find(|(n, item)| !used.contains(n) && item_matches(item, record))
            .or_else(|| {
                response
                    .result
                    .get(position)
                    .filter(|item| {
                        !used.contains(&position)
                            && item.resource_id.is_none()
                            && item.dimension.is_none()
                    })
                    .map(|item| (position, item))
            });
        match found {
            Some((n, item)) => {
                used.insert(n);
                outcomes.set(*index, classify_item(item, record));
            }
            None => outcomes.set(
                *index,
                retry("batchUsageEvent: the answer has no result for this event"),
            ),
        }
    }
    result
}

fn item_matches(item: &BatchItem, record: &UsageRecord) -> bool {
    let Binding::Azure { resource_id, .. } = &record.binding else {
        return false;
    };
    let same_resource = item
        .resource_id
        .as_deref()
        .is_some_and(|r| r.eq_ignore_ascii_case(resource_id));
    let same_dimension = item.dimension.as_deref() == Some(record.marketplace_dimension.as_str());
    let same_hour = item
        .effective_start_time
        .as_deref()
        .and_then(parse_azure_time)
        .is_some_and(|t| t == record.hour);
    same_resource && same_dimension && same_hour
}

/// One item's status (the StatusEnum of contracts/azure/meteringapi.v1.json; meanings
/// from the metering API page's batch response).
fn classify_item(item: &BatchItem, record: &UsageRecord) -> RecordOutcome {
    let message = item
        .error
        .as_ref()
        .and_then(|e| e.message.clone())
        .unwrap_or_else(|| item.status.clone());
    match item.status.as_str() {
        "Accepted" => RecordOutcome::Accepted {
            marketplace_id: item.usage_event_id.clone(),
        },
        // "Duplicate": an event for this resource, dimension and hour was accepted
        // before; error.additionalInfo.acceptedMessage is that event. Same quantity
        // (by value: 17 = 17.0) is our earlier attempt; another is a conflict.
        "Duplicate" => {
            let accepted = item
                .error
                .as_ref()
                .and_then(|e| e.additional_info.as_ref())
                .and_then(|a| a.accepted_message.as_ref());
            let quantity = accepted
                .and_then(|a| a.quantity.as_ref())
                .and_then(|q| decimal_from_json(q.get()));
            match quantity {
                Some(q) if q == record.quantity => RecordOutcome::AlreadyAccepted {
                    marketplace_id: accepted.and_then(|a| a.usage_event_id.clone()),
                },
                Some(q) => RecordOutcome::Conflict {
                    accepted_quantity: Some(q),
                    message: format!(
                        "Azure holds {q} for this resource, dimension and hour; Purser has {}",
                        record.quantity
                    ),
                },
                None => RecordOutcome::Conflict {
                    accepted_quantity: None,
                    message: format!(
                        "Azure answered Duplicate without the accepted quantity: {message}"
                    ),
                },
            }
        }
        // effectiveStartTime more than 24 hours back.
        "Expired" => RecordOutcome::Expired { message },
        "ResourceNotFound"
        | "ResourceNotAuthorized"
        | "ResourceNotActive"
        | "InvalidDimension"
        | "InvalidQuantity"
        | "BadArgument" => refused(item.status.clone(), message),
        // "Error" and anything the contract does not list: not taken, send again.
        other => {
            let code = item
                .error
                .as_ref()
                .and_then(|e| e.code.clone())
                .unwrap_or_default();
            retry(format!("batchUsageEvent item {other} {code}: {message}"))
        }
    }
}

/// A JSON number's text as a decimal, exactly.
pub(crate) fn decimal_from_json(text: &str) -> Option<Decimal> {
    let text = text.trim();
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str(text).ok()
    }
}

/// Azure writes times with an offset, with `Z`, or without either (UTC); the listing
/// may give a date alone.
pub(crate) fn parse_azure_time(text: &str) -> Option<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Some(t);
    }
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        return dt
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp());
    }
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUsageEvent {
    usage_date: Option<String>,
    usage_resource_id: Option<String>,
    dimension: Option<String>,
    plan_id: Option<String>,
    plan_name: Option<String>,
    offer_id: Option<String>,
    offer_name: Option<String>,
    offer_type: Option<String>,
    azure_subscription_id: Option<String>,
    recon_status: Option<String>,
    submitted_quantity: Option<Box<RawValue>>,
    processed_quantity: Option<Box<RawValue>>,
    submitted_count: Option<Box<RawValue>>,
}

pub(crate) fn parse_usage_events(body: &str) -> Result<Vec<AzureUsageEvent>, String> {
    let rows: Vec<RawUsageEvent> = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let number = |v: &Option<Box<RawValue>>| v.as_ref().and_then(|r| decimal_from_json(r.get()));
    Ok(rows
        .into_iter()
        .map(|r| AzureUsageEvent {
            usage_date: r.usage_date.as_deref().and_then(parse_azure_time),
            submitted_quantity: number(&r.submitted_quantity),
            processed_quantity: number(&r.processed_quantity),
            submitted_count: number(&r.submitted_count),
            usage_resource_id: r.usage_resource_id,
            dimension: r.dimension,
            plan_id: r.plan_id,
            plan_name: r.plan_name,
            offer_id: r.offer_id,
            offer_name: r.offer_name,
            offer_type: r.offer_type,
            azure_subscription_id: r.azure_subscription_id,
            recon_status: r.recon_status,
        })
        .collect())
}

#[cfg(test)]
#[allow(dead_code)]
pub(crate) fn test_client(base: &str, login: &str) -> AzureClient {
    let mut config = AzureConfig::new(
        "tenant-1",
        "client-1",
        SecretSource::Inline(crate::Secret::new("s3cret")),
    );
    config.base_url = base.into();
    config.login_base = login.into();
    AzureClient::new(&config).expect("client")
}

//! Azure SaaS Fulfillment API v2 (api-version 2018-08-31): resolving the landing page's
//! token, activating, reading and listing SaaS subscriptions, and the operations API
//! with which webhook notifications are checked and plan or quantity changes answered
//! (contracts/azure/saasapi.v2.json; prose: learn.microsoft.com
//! partner-center/marketplace/partner-center-portal/pc-saas-fulfillment-subscription-api,
//! pc-saas-fulfillment-operations-api and pc-saas-fulfillment-webhook, read 2026-12-01).
//!
//! The webhook's payload is only a claim: Microsoft asks publishers to read the operation
//! with [`FulfillmentClient::get_operation`] before acting on it.

use purser_core::account::Marketplace;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::{self, BearerApi, Request};
use crate::auth::BearerToken;
use crate::azure::{AzureConfig, entra_token_source};
use crate::http;
use crate::{ClientError, MalformedNotification};

const API_VERSION: &str = "2018-08-31";

/// The contract's paths (under its server, `https://marketplaceapi.microsoft.com/api`).
pub(crate) const RESOLVE: &str = "/saas/subscriptions/resolve";
pub(crate) const SUBSCRIPTIONS: &str = "/saas/subscriptions/";
pub(crate) const SUBSCRIPTION: &str = "/saas/subscriptions/{subscriptionId}";
pub(crate) const ACTIVATE: &str = "/saas/subscriptions/{subscriptionId}/activate";
pub(crate) const OPERATIONS: &str = "/saas/subscriptions/{subscriptionId}/operations";
pub(crate) const OPERATION: &str = "/saas/subscriptions/{subscriptionId}/operations/{operationId}";

/// A contract path with its parameters filled in (GUIDs: nothing to escape).
fn fill(template: &str, subscription_id: Option<Uuid>, operation_id: Option<Uuid>) -> String {
    let mut path = template.to_owned();
    if let Some(id) = subscription_id {
        path = path.replace("{subscriptionId}", &id.to_string());
    }
    if let Some(id) = operation_id {
        path = path.replace("{operationId}", &id.to_string());
    }
    path
}

open_enum! {
    /// `saasSubscriptionStatus` (the contract's SubscriptionStatusEnum).
    SaasSubscriptionStatus {
        NotStarted => "NotStarted",
        /// Bought, not yet activated by the publisher: not billed.
        PendingFulfillmentStart => "PendingFulfillmentStart",
        Subscribed => "Subscribed",
        Suspended => "Suspended",
        Unsubscribed => "Unsubscribed",
    }
}

open_enum! {
    /// An operation's and a webhook's `action` (the contract's OperationActionEnum).
    OperationAction {
        Unsubscribe => "Unsubscribe",
        ChangePlan => "ChangePlan",
        ChangeQuantity => "ChangeQuantity",
        Suspend => "Suspend",
        Reinstate => "Reinstate",
        Renew => "Renew",
    }
}

open_enum! {
    /// An operation's `status` (the contract's OperationStatusEnum).
    OperationStatus {
        NotStarted => "NotStarted",
        InProgress => "InProgress",
        Succeeded => "Succeeded",
        Failed => "Failed",
        Conflict => "Conflict",
    }
}

open_enum! {
    /// `term.termUnit` (the contract's TermUnitEnum).
    TermUnit {
        Month => "P1M",
        Year => "P1Y",
        TwoYears => "P2Y",
        ThreeYears => "P3Y",
        FourYears => "P4Y",
        FiveYears => "P5Y",
    }
}

/// Azure's times: RFC 3339 with or without an offset, or a date alone (the subscription
/// API page's examples write `term.startDate` as `2019-05-31`), read as UTC.
mod azure_time {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) if text.is_empty() => Ok(None),
            Some(text) => crate::azure::parse_azure_time(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a date or time"))),
        }
    }

    pub fn serialize<S: Serializer>(value: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(t) => s.serialize_str(&t.to_string()),
            None => s.serialize_none(),
        }
    }
}

/// A publisher's answer to an operation (`UpdateOperation.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OperationOutcome {
    Success,
    Failure,
}

/// `AadIdentifier`: who bought (purchaser) and who uses (beneficiary).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AadIdentifier {
    pub email_id: Option<String>,
    pub object_id: Option<String>,
    pub tenant_id: Option<String>,
    pub puid: Option<String>,
}

/// `Subscription.term`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionTerm {
    pub term_unit: Option<TermUnit>,
    #[serde(default, with = "azure_time")]
    pub start_date: Option<jiff::Timestamp>,
    #[serde(default, with = "azure_time")]
    pub end_date: Option<jiff::Timestamp>,
    pub charge_duration: Option<String>,
}

/// A SaaS subscription (`Subscription`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaasSubscription {
    pub id: Uuid,
    pub publisher_id: Option<String>,
    pub offer_id: Option<String>,
    pub name: Option<String>,
    pub saas_subscription_status: Option<SaasSubscriptionStatus>,
    pub beneficiary: Option<AadIdentifier>,
    pub purchaser: Option<AadIdentifier>,
    pub plan_id: Option<String>,
    /// Seats, for per-user plans; absent for flat-rate plans.
    pub quantity: Option<u64>,
    pub term: Option<SubscriptionTerm>,
    pub auto_renew: Option<bool>,
    pub is_test: Option<bool>,
    pub is_free_trial: Option<bool>,
    #[serde(default)]
    pub allowed_customer_operations: Vec<String>,
    pub sandbox_type: Option<String>,
    #[serde(default, with = "azure_time")]
    pub created: Option<jiff::Timestamp>,
    pub session_mode: Option<String>,
}

/// What `resolve` answers (`ResolvedSubscription`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedSubscription {
    /// The SaaS subscription id.
    pub id: Uuid,
    pub subscription_name: Option<String>,
    pub offer_id: Option<String>,
    pub plan_id: Option<String>,
    pub quantity: Option<u64>,
    pub subscription: Option<SaasSubscription>,
}

/// An operation on a subscription (`SaaSOperation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaasOperation {
    pub id: Uuid,
    pub activity_id: Option<Uuid>,
    pub subscription_id: Option<Uuid>,
    pub offer_id: Option<String>,
    pub publisher_id: Option<String>,
    pub plan_id: Option<String>,
    pub quantity: Option<u64>,
    pub action: Option<OperationAction>,
    #[serde(default, with = "azure_time")]
    pub time_stamp: Option<jiff::Timestamp>,
    pub status: Option<OperationStatus>,
}

#[derive(Deserialize)]
struct SubscriptionsPage {
    #[serde(default)]
    subscriptions: Vec<SaasSubscription>,
    #[serde(rename = "@nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct OperationList {
    #[serde(default)]
    operations: Vec<SaasOperation>,
}

/// The SaaS Fulfillment client. Configured like the metering client ([`AzureConfig`]):
/// the same endpoint and the same Entra ID application and resource.
pub struct FulfillmentClient {
    api: BearerApi,
    base: String,
}

/// More pages than this is a loop, not a listing (100 subscriptions a page).
const MAX_PAGES: usize = 10_000;

impl FulfillmentClient {
    pub fn new(config: &AzureConfig) -> Result<FulfillmentClient, ClientError> {
        Ok(FulfillmentClient {
            api: BearerApi {
                http: http::build_client(config.request_timeout_ms)?,
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
                marketplace: Marketplace::Azure,
            },
            base: http::trim_base(&config.base_url),
        })
    }

    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: &str,
        extra_headers: &[(&'static str, String)],
        body: Option<Value>,
        with_version: bool,
    ) -> Result<String, ClientError> {
        let mut headers = vec![
            // A new id per request; the contract makes both optional GUIDs.
            ("x-ms-requestid", Uuid::new_v4().to_string()),
            ("x-ms-correlationid", Uuid::new_v4().to_string()),
        ];
        headers.extend(extra_headers.iter().cloned());
        let query = [("api-version", API_VERSION.to_owned())];
        self.api
            .call(Request {
                operation,
                method,
                url,
                query: if with_version { &query } else { &[] },
                headers: &headers,
                body: body.map(|b| b.to_string()),
            })
            .await
            .map(|answer| answer.body)
    }

    /// `POST /saas/subscriptions/resolve` with the landing page's `token` query
    /// parameter, URL-decoded, in `x-ms-marketplace-token` (the contract's parameter
    /// description). The token is usually valid for 24 hours (subscription API page).
    pub async fn resolve(
        &self,
        marketplace_token: &str,
    ) -> Result<ResolvedSubscription, ClientError> {
        if marketplace_token.is_empty() {
            return Err(ClientError::InvalidArgument {
                operation: "resolve",
                message: "the marketplace token is empty".into(),
            });
        }
        let url = format!("{}{RESOLVE}", self.base);
        let body = self
            .call(
                "resolve",
                Method::POST,
                &url,
                &[("x-ms-marketplace-token", marketplace_token.to_owned())],
                None,
                true,
            )
            .await?;
        api::decode("resolve", &body)
    }

    /// `POST /saas/subscriptions/{id}/activate` with `{planId, quantity}`: "the customer
    /// won't be billed unless this API call is successful".
    pub async fn activate(
        &self,
        subscription_id: Uuid,
        plan_id: &str,
        quantity: Option<u64>,
    ) -> Result<(), ClientError> {
        let url = format!(
            "{}{}",
            self.base,
            fill(ACTIVATE, Some(subscription_id), None)
        );
        self.call(
            "activate",
            Method::POST,
            &url,
            &[],
            Some(subscriber_plan(plan_id, quantity)),
            true,
        )
        .await
        .map(|_| ())
    }

    /// `GET /saas/subscriptions/{id}`.
    pub async fn get_subscription(
        &self,
        subscription_id: Uuid,
    ) -> Result<SaasSubscription, ClientError> {
        let url = format!(
            "{}{}",
            self.base,
            fill(SUBSCRIPTION, Some(subscription_id), None)
        );
        let body = self
            .call("getSubscription", Method::GET, &url, &[], None, true)
            .await?;
        api::decode("getSubscription", &body)
    }

    /// `GET /saas/subscriptions/`, every page: `@nextLink` is followed as given (it
    /// carries its own api-version and continuationToken), but only to this client's
    /// own endpoint, so the bearer token never goes elsewhere.
    pub async fn list_subscriptions(&self) -> Result<Vec<SaasSubscription>, ClientError> {
        let mut all = Vec::new();
        let mut url = format!("{}{SUBSCRIPTIONS}", self.base);
        let mut with_version = true;
        for _ in 0..MAX_PAGES {
            let body = self
                .call(
                    "listSubscriptions",
                    Method::GET,
                    &url,
                    &[],
                    None,
                    with_version,
                )
                .await?;
            let page: SubscriptionsPage = api::decode("listSubscriptions", &body)?;
            all.extend(page.subscriptions);
            match page.next_link.filter(|l| !l.is_empty()) {
                None => return Ok(all),
                Some(next) => {
                    if !same_origin(&next, &self.base) {
                        return Err(ClientError::Decode {
                            operation: "listSubscriptions",
                            message: format!(
                                "@nextLink {next:?} is not under {} (not followed)",
                                self.base
                            ),
                        });
                    }
                    url = next;
                    with_version = false;
                }
            }
        }
        Err(ClientError::Decode {
            operation: "listSubscriptions",
            message: format!("more than {MAX_PAGES} pages: @nextLink loops"),
        })
    }

    /// `GET /saas/subscriptions/{id}/operations`: the outstanding operations.
    pub async fn list_operations(
        &self,
        subscription_id: Uuid,
    ) -> Result<Vec<SaasOperation>, ClientError> {
        let url = format!(
            "{}{}",
            self.base,
            fill(OPERATIONS, Some(subscription_id), None)
        );
        let body = self
            .call("listOperations", Method::GET, &url, &[], None, true)
            .await?;
        let list: OperationList = api::decode("listOperations", &body)?;
        Ok(list.operations)
    }

    /// `GET /saas/subscriptions/{id}/operations/{operationId}`.
    pub async fn get_operation(
        &self,
        subscription_id: Uuid,
        operation_id: Uuid,
    ) -> Result<SaasOperation, ClientError> {
        let url = format!(
            "{}{}",
            self.base,
            fill(OPERATION, Some(subscription_id), Some(operation_id))
        );
        let body = self
            .call("getOperation", Method::GET, &url, &[], None, true)
            .await?;
        api::decode("getOperation", &body)
    }

    /// `PATCH /saas/subscriptions/{id}/operations/{operationId}` with `{status, planId,
    /// quantity}` (the contract's UpdateOperation): accepts or refuses a ChangePlan or
    /// ChangeQuantity in progress. 409 means a newer update was already fulfilled.
    pub async fn update_operation(
        &self,
        subscription_id: Uuid,
        operation_id: Uuid,
        outcome: OperationOutcome,
        plan_id: Option<&str>,
        quantity: Option<u64>,
    ) -> Result<(), ClientError> {
        let url = format!(
            "{}{}",
            self.base,
            fill(OPERATION, Some(subscription_id), Some(operation_id))
        );
        self.call(
            "updateOperation",
            Method::PATCH,
            &url,
            &[],
            Some(update_operation_body(outcome, plan_id, quantity)),
            true,
        )
        .await
        .map(|_| ())
    }
}

pub(crate) fn subscriber_plan(plan_id: &str, quantity: Option<u64>) -> Value {
    let mut body = json!({ "planId": plan_id });
    if let Some(q) = quantity {
        body["quantity"] = json!(q);
    }
    body
}

pub(crate) fn update_operation_body(
    outcome: OperationOutcome,
    plan_id: Option<&str>,
    quantity: Option<u64>,
) -> Value {
    let status = match outcome {
        OperationOutcome::Success => "Success",
        OperationOutcome::Failure => "Failure",
    };
    let mut body = json!({ "status": status });
    if let Some(p) = plan_id {
        body["planId"] = json!(p);
    }
    if let Some(q) = quantity {
        body["quantity"] = json!(q);
    }
    body
}

/// Whether `link` is under `base` (same scheme, host, port and path prefix).
fn same_origin(link: &str, base: &str) -> bool {
    link.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

/// A webhook notification from Microsoft (pc-saas-fulfillment-webhook, read 2026-12-01):
/// `{id, activityId, subscriptionId, publisherId, offerId, planId, quantity, timeStamp,
/// action, status, operationRequestSource, subscription: {...}, purchaseToken}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookNotification {
    /// The operation id: read it with `get_operation` before acting.
    pub operation_id: Uuid,
    pub activity_id: Option<Uuid>,
    pub subscription_id: Uuid,
    pub publisher_id: Option<String>,
    pub offer_id: Option<String>,
    pub plan_id: Option<String>,
    pub quantity: Option<u64>,
    #[serde(default, with = "azure_time")]
    pub time_stamp: Option<jiff::Timestamp>,
    /// An action this version does not know is kept as `Other`.
    pub action: OperationAction,
    pub status: Option<OperationStatus>,
    /// `Azure` or `Partner`.
    pub operation_request_source: Option<String>,
    /// The subscription as Microsoft sent it (not read further: `get_subscription` is
    /// the source to trust).
    pub subscription: Option<Value>,
    /// The payload as received.
    pub raw: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireWebhook {
    id: Uuid,
    activity_id: Option<Uuid>,
    subscription_id: Uuid,
    publisher_id: Option<String>,
    offer_id: Option<String>,
    plan_id: Option<String>,
    quantity: Option<u64>,
    #[serde(default, with = "azure_time")]
    time_stamp: Option<jiff::Timestamp>,
    action: OperationAction,
    status: Option<OperationStatus>,
    operation_request_source: Option<String>,
    subscription: Option<Value>,
}

/// Reads a webhook's body. Unknown actions and statuses are kept; a body without an
/// operation id, subscription id or action (or not JSON) is malformed.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookNotification, MalformedNotification> {
    let malformed = |reason: String| MalformedNotification::new("azure webhook", reason, body);
    let text = std::str::from_utf8(body).map_err(|e| malformed(format!("not UTF-8: {e}")))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let w: WireWebhook = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| malformed(format!("{} (at {})", e.inner(), e.path())))?;
    Ok(WebhookNotification {
        operation_id: w.id,
        activity_id: w.activity_id,
        subscription_id: w.subscription_id,
        publisher_id: w.publisher_id,
        offer_id: w.offer_id,
        plan_id: w.plan_id,
        quantity: w.quantity,
        time_stamp: w.time_stamp,
        action: w.action,
        status: w.status,
        operation_request_source: w.operation_request_source,
        subscription: w.subscription,
        raw: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_are_read_and_unknown_actions_kept() {
        let body = br#"{"id":"74dfb4db-c193-4891-827d-eb05fbdc64b0","activityId":"5e7a1b1e-3b7d-4f4b-9d0a-6a3c2a1b0c9d","subscriptionId":"6c7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d01","publisherId":"contoso","offerId":"storage","planId":"gold","quantity":20,"timeStamp":"2026-12-01T10:05:29.9799053Z","action":"ChangeQuantity","status":"InProgress","operationRequestSource":"Azure","subscription":{"id":"6c7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d01"},"purchaseToken":null}"#;
        let w = parse_webhook(body).expect("parsed");
        assert_eq!(w.action, OperationAction::ChangeQuantity);
        assert_eq!(w.quantity, Some(20));
        assert_eq!(w.status, Some(OperationStatus::InProgress));
        assert_eq!(
            w.time_stamp,
            Some("2026-12-01T10:05:29.9799053Z".parse().expect("t"))
        );
        let other = String::from_utf8_lossy(body).replace("ChangeQuantity", "Transmogrify");
        let w = parse_webhook(other.as_bytes()).expect("unknown action kept");
        assert_eq!(w.action, OperationAction::Other("Transmogrify".into()));
    }

    #[test]
    fn malformed_webhooks_keep_their_bytes() {
        for (body, needle) in [
            (&br#"{"subscriptionId":"6c7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d01","action":"Renew"}"#[..], "id"),
            (br#"{"id":"not-a-guid","subscriptionId":"6c7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d01","action":"Renew"}"#, "id"),
            (br#"{"id":"74dfb4db-c193-4891-827d-eb05fbdc64b0","subscriptionId":"6c7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d01","action":"Renew","quantity":-1}"#, "quantity"),
            (b"<html>", "expected"),
        ] {
            let err = parse_webhook(body).expect_err("malformed");
            assert_eq!(err.raw, body);
            assert!(err.reason.contains(needle), "{needle}: {}", err.reason);
        }
    }

    #[test]
    fn subscriptions_take_dates_alone_and_unknown_statuses() {
        let s: SaasSubscription = serde_json::from_str(
            r#"{"id":"6c7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d01","saasSubscriptionStatus":"Frozen","term":{"termUnit":"P1M","startDate":"2019-05-31","endDate":"2019-06-29T00:00:00"},"created":"2019-05-31T10:00:00.1234567Z","newField":1}"#,
        )
        .expect("parsed");
        assert_eq!(
            s.saas_subscription_status,
            Some(SaasSubscriptionStatus::Other("Frozen".into()))
        );
        let term = s.term.expect("term");
        assert_eq!(
            term.start_date,
            Some("2019-05-31T00:00:00Z".parse().expect("t"))
        );
        assert_eq!(term.term_unit, Some(TermUnit::Month));
        let bad = serde_json::from_str::<SaasSubscription>(
            r#"{"id":"6c7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d01","created":"yesterday"}"#,
        );
        assert!(bad.expect_err("bad").to_string().contains("yesterday"));
    }

    #[test]
    fn next_links_stay_on_the_endpoint() {
        let base = "https://marketplaceapi.microsoft.com/api";
        assert!(same_origin(
            "https://marketplaceapi.microsoft.com/api/saas/subscriptions/?continuationToken=x",
            base
        ));
        assert!(!same_origin(
            "https://marketplaceapi.microsoft.com.evil.example/api/x",
            base
        ));
        assert!(!same_origin("https://evil.example/api/saas", base));
    }
}

//! Google Cloud Commerce Partner Procurement API v1: the accounts and entitlements
//! Google creates when a customer buys through Cloud Marketplace, and the provider's
//! approvals (contracts/gcp/cloudcommerceprocurement.v1.json, revision 20251012; prose:
//! https://cloud.google.com/marketplace/docs/partners/integrated-saas/manage-entitlements
//! and .../partners/offers/manage-entitlements, read 2026-12-01).
//!
//! Notifications arrive on the seller's Pub/Sub topic ([`crate::pubsub`]); they are thin
//! (an event type and an id), so [`parse_notification`] only reads them and the
//! entitlement is read again with [`ProcurementClient::get_entitlement`] before acting,
//! as Google's codelab and the manage-entitlements page advise.

use std::collections::BTreeMap;

use jiff::Timestamp;
use purser_core::account::Marketplace;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{self, BearerApi, Request};
use crate::auth::BearerToken;
use crate::gcp::{GcpCredentials, token_source};
use crate::http;
use crate::{ClientError, MalformedNotification};

/// The Partner Procurement endpoint and the provider (partner) id Google assigned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcurementConfig {
    /// The discovery document's `rootUrl`, `https://cloudcommerceprocurement.googleapis.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// `providers/{provider_id}`: the partner id in Producer Portal.
    pub provider_id: String,
    pub credentials: GcpCredentials,
    #[serde(default = "crate::default_timeout_ms")]
    pub request_timeout_ms: u64,
}

fn default_base_url() -> String {
    "https://cloudcommerceprocurement.googleapis.com".into()
}

impl ProcurementConfig {
    pub fn new(provider_id: &str, credentials: GcpCredentials) -> ProcurementConfig {
        ProcurementConfig {
            base_url: default_base_url(),
            provider_id: provider_id.into(),
            credentials,
            request_timeout_ms: crate::default_timeout_ms(),
        }
    }
}

open_enum! {
    /// `Entitlement.state` (the contract's enum).
    EntitlementState {
        Unspecified => "ENTITLEMENT_STATE_UNSPECIFIED",
        /// Created, waiting for the provider's approval (`approve` / `reject`).
        ActivationRequested => "ENTITLEMENT_ACTIVATION_REQUESTED",
        Active => "ENTITLEMENT_ACTIVE",
        /// Ends at the end of its term; usable until then.
        PendingCancellation => "ENTITLEMENT_PENDING_CANCELLATION",
        Cancelled => "ENTITLEMENT_CANCELLED",
        /// A plan change approved, waiting for the billing cycle to end.
        PendingPlanChange => "ENTITLEMENT_PENDING_PLAN_CHANGE",
        /// A plan change waiting for the provider (`approvePlanChange` / `rejectPlanChange`).
        PendingPlanChangeApproval => "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL",
        Suspended => "ENTITLEMENT_SUSPENDED",
    }
}

open_enum! {
    /// `Account.state` (the contract's enum; ACTIVATION_REQUESTED is deprecated: accounts
    /// are now active at once).
    AccountState {
        Unspecified => "ACCOUNT_STATE_UNSPECIFIED",
        ActivationRequested => "ACCOUNT_ACTIVATION_REQUESTED",
        Active => "ACCOUNT_ACTIVE",
    }
}

open_enum! {
    /// `Approval.state` (the contract's enum).
    ApprovalState {
        Unspecified => "STATE_UNSPECIFIED",
        Pending => "PENDING",
        Approved => "APPROVED",
        Rejected => "REJECTED",
    }
}

open_enum! {
    /// `eventType` of a Procurement notification. The core set is in the
    /// manage-entitlements pages and Google's integrated-SaaS codelab; OFFER_ACCEPTED,
    /// CANCELLING, RENEWED and OFFER_ENDED from the private-offer pages (read 2026-12-01).
    ProcurementEventType {
        AccountCreationRequested => "ACCOUNT_CREATION_REQUESTED",
        AccountActive => "ACCOUNT_ACTIVE",
        AccountDeleted => "ACCOUNT_DELETED",
        EntitlementCreationRequested => "ENTITLEMENT_CREATION_REQUESTED",
        EntitlementOfferAccepted => "ENTITLEMENT_OFFER_ACCEPTED",
        EntitlementActive => "ENTITLEMENT_ACTIVE",
        EntitlementPlanChangeRequested => "ENTITLEMENT_PLAN_CHANGE_REQUESTED",
        EntitlementPlanChanged => "ENTITLEMENT_PLAN_CHANGED",
        EntitlementPlanChangeCancelled => "ENTITLEMENT_PLAN_CHANGE_CANCELLED",
        EntitlementPendingCancellation => "ENTITLEMENT_PENDING_CANCELLATION",
        EntitlementCancellationReverted => "ENTITLEMENT_CANCELLATION_REVERTED",
        EntitlementCancelling => "ENTITLEMENT_CANCELLING",
        EntitlementCancelled => "ENTITLEMENT_CANCELLED",
        EntitlementRenewed => "ENTITLEMENT_RENEWED",
        EntitlementOfferEnded => "ENTITLEMENT_OFFER_ENDED",
        EntitlementDeleted => "ENTITLEMENT_DELETED",
    }
}

/// An account approval (`Approval`): the `signup` approval is the one a provider grants
/// once the customer has signed up on its page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    #[serde(default)]
    pub name: String,
    #[serde(default = "unspecified_approval")]
    pub state: ApprovalState,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub update_time: Option<Timestamp>,
}

fn unspecified_approval() -> ApprovalState {
    ApprovalState::Unspecified
}

/// A Procurement account (`Account`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcurementAccount {
    /// `providers/{provider}/accounts/{id}` (or `accounts/{id}`, as the schema's
    /// description writes it).
    pub name: String,
    /// The last segment of the name, the id notifications carry.
    pub id: String,
    pub provider: Option<String>,
    pub state: AccountState,
    pub approvals: Vec<Approval>,
    pub create_time: Option<Timestamp>,
    pub update_time: Option<Timestamp>,
    pub input_properties: Option<Value>,
}

impl ProcurementAccount {
    /// The approval called `name` (e.g. `signup`).
    pub fn approval(&self, name: &str) -> Option<&Approval> {
        self.approvals.iter().find(|a| a.name == name)
    }
}

/// A Procurement entitlement (`Entitlement`): what the customer bought.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcurementEntitlement {
    /// `providers/{provider}/entitlements/{id}`.
    pub name: String,
    pub id: String,
    /// The account's resource name.
    pub account: Option<String>,
    pub provider: Option<String>,
    pub product: Option<String>,
    pub product_external_name: Option<String>,
    pub quote_external_name: Option<String>,
    pub plan: Option<String>,
    /// The plan a pending change moves to.
    pub new_pending_plan: Option<String>,
    pub state: EntitlementState,
    /// The consumerId for Service Control (present for usage-based products).
    pub usage_reporting_id: Option<String>,
    /// `projects/{p}/services/{s}/privateOffers/{o}` or `.../standardOffers/{o}`.
    pub offer: Option<String>,
    pub offer_duration: Option<String>,
    pub offer_end_time: Option<Timestamp>,
    pub new_pending_offer: Option<String>,
    pub new_pending_offer_duration: Option<String>,
    pub new_offer_start_time: Option<Timestamp>,
    pub new_offer_end_time: Option<Timestamp>,
    pub subscription_end_time: Option<Timestamp>,
    /// "unknown", "expired", "user-cancelled", "account-closed", "billing-disabled",
    /// "user-aborted", "migrated", … (the contract says the values may change: kept as text).
    pub cancellation_reason: Option<String>,
    pub message_to_user: Option<String>,
    pub order_id: Option<String>,
    pub consumers: Vec<String>,
    pub entitlement_benefit_ids: Vec<String>,
    pub create_time: Option<Timestamp>,
    pub update_time: Option<Timestamp>,
    pub input_properties: Option<Value>,
}

impl ProcurementEntitlement {
    /// The account id (last segment of `account`).
    pub fn account_id(&self) -> Option<&str> {
        self.account.as_deref().map(last_segment)
    }
}

fn last_segment(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn empty_is_none(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAccount {
    #[serde(default)]
    name: String,
    provider: Option<String>,
    state: Option<AccountState>,
    #[serde(default)]
    approvals: Vec<Approval>,
    create_time: Option<Timestamp>,
    update_time: Option<Timestamp>,
    input_properties: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireConsumer {
    project: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEntitlement {
    #[serde(default)]
    name: String,
    account: Option<String>,
    provider: Option<String>,
    product: Option<String>,
    product_external_name: Option<String>,
    quote_external_name: Option<String>,
    plan: Option<String>,
    new_pending_plan: Option<String>,
    state: Option<EntitlementState>,
    usage_reporting_id: Option<String>,
    offer: Option<String>,
    offer_duration: Option<String>,
    offer_end_time: Option<Timestamp>,
    new_pending_offer: Option<String>,
    new_pending_offer_duration: Option<String>,
    new_offer_start_time: Option<Timestamp>,
    new_offer_end_time: Option<Timestamp>,
    subscription_end_time: Option<Timestamp>,
    cancellation_reason: Option<String>,
    message_to_user: Option<String>,
    order_id: Option<String>,
    #[serde(default)]
    consumers: Vec<WireConsumer>,
    #[serde(default)]
    entitlement_benefit_ids: Vec<String>,
    create_time: Option<Timestamp>,
    update_time: Option<Timestamp>,
    input_properties: Option<Value>,
}

impl From<WireEntitlement> for ProcurementEntitlement {
    fn from(w: WireEntitlement) -> ProcurementEntitlement {
        ProcurementEntitlement {
            id: last_segment(&w.name).to_owned(),
            name: w.name,
            account: empty_is_none(w.account),
            provider: empty_is_none(w.provider),
            product: empty_is_none(w.product),
            product_external_name: empty_is_none(w.product_external_name),
            quote_external_name: empty_is_none(w.quote_external_name),
            plan: empty_is_none(w.plan),
            new_pending_plan: empty_is_none(w.new_pending_plan),
            state: w.state.unwrap_or(EntitlementState::Unspecified),
            usage_reporting_id: empty_is_none(w.usage_reporting_id),
            offer: empty_is_none(w.offer),
            offer_duration: empty_is_none(w.offer_duration),
            offer_end_time: w.offer_end_time,
            new_pending_offer: empty_is_none(w.new_pending_offer),
            new_pending_offer_duration: empty_is_none(w.new_pending_offer_duration),
            new_offer_start_time: w.new_offer_start_time,
            new_offer_end_time: w.new_offer_end_time,
            subscription_end_time: w.subscription_end_time,
            cancellation_reason: empty_is_none(w.cancellation_reason),
            message_to_user: empty_is_none(w.message_to_user),
            order_id: empty_is_none(w.order_id),
            consumers: w.consumers.into_iter().filter_map(|c| c.project).collect(),
            entitlement_benefit_ids: w.entitlement_benefit_ids,
            create_time: w.create_time,
            update_time: w.update_time,
            input_properties: w.input_properties,
        }
    }
}

/// The Partner Procurement client.
pub struct ProcurementClient {
    api: BearerApi,
    base: String,
    provider_id: String,
}

impl ProcurementClient {
    pub fn new(config: &ProcurementConfig) -> Result<ProcurementClient, ClientError> {
        api::segment("procurement", "provider_id", &config.provider_id)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(ProcurementClient {
            api: BearerApi {
                http: http::build_client(config.request_timeout_ms)?,
                token: BearerToken::new(Marketplace::Gcp, token_source(&config.credentials)?),
                marketplace: Marketplace::Gcp,
            },
            base: http::trim_base(&config.base_url),
            provider_id: config.provider_id.clone(),
        })
    }

    /// `providers/{provider}/accounts/{id}` for an id, or the name itself when given one
    /// of this provider's names (what `Entitlement.account` holds).
    pub fn account_name(&self, id_or_name: &str) -> Result<String, ClientError> {
        self.name("accounts", id_or_name)
    }

    /// `providers/{provider}/entitlements/{id}` for an id or a name.
    pub fn entitlement_name(&self, id_or_name: &str) -> Result<String, ClientError> {
        self.name("entitlements", id_or_name)
    }

    fn name(&self, collection: &'static str, id_or_name: &str) -> Result<String, ClientError> {
        let id = match id_or_name.strip_prefix("providers/") {
            Some(rest) => {
                let prefix = format!("{}/{collection}/", self.provider_id);
                rest.strip_prefix(&prefix)
                    .ok_or_else(|| ClientError::InvalidArgument {
                        operation: "procurement",
                        message: format!(
                            "{id_or_name:?} is not one of provider {}'s {collection}",
                            self.provider_id
                        ),
                    })?
            }
            // The schema describes account names as `accounts/{account_id}`.
            None => id_or_name
                .strip_prefix(&format!("{collection}/"))
                .unwrap_or(id_or_name),
        };
        api::segment("procurement", collection, id)?;
        Ok(format!("providers/{}/{collection}/{id}", self.provider_id))
    }

    fn url(&self, name: &str, method: Option<&str>) -> String {
        format!("{}/{}", self.base, path(name, method))
    }

    /// `accounts.get`.
    pub async fn get_account(&self, account: &str) -> Result<ProcurementAccount, ClientError> {
        let name = self.account_name(account)?;
        let answer = self
            .api
            .call(Request {
                operation: "accounts.get",
                method: Method::GET,
                url: &self.url(&name, None),
                query: &[],
                headers: &[],
                body: None,
            })
            .await?;
        let w: WireAccount = api::decode("accounts.get", &answer.body)?;
        Ok(ProcurementAccount {
            id: last_segment(&w.name).to_owned(),
            name: w.name,
            provider: empty_is_none(w.provider),
            state: w.state.unwrap_or(AccountState::Unspecified),
            approvals: w.approvals,
            create_time: w.create_time,
            update_time: w.update_time,
            input_properties: w.input_properties,
        })
    }

    /// `accounts.approve` with `approvalName` (`signup` for the sign-up approval).
    pub async fn approve_account(
        &self,
        account: &str,
        approval_name: &str,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut body = json!({ "approvalName": approval_name });
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        self.post(
            "accounts.approve",
            &self.account_name(account)?,
            "approve",
            body,
        )
        .await
    }

    /// `accounts.reject` with `approvalName` and a reason (at most 256 bytes: Google
    /// truncates longer ones).
    pub async fn reject_account(
        &self,
        account: &str,
        approval_name: &str,
        reason: &str,
    ) -> Result<(), ClientError> {
        let body = json!({ "approvalName": approval_name, "reason": reason });
        self.post(
            "accounts.reject",
            &self.account_name(account)?,
            "reject",
            body,
        )
        .await
    }

    /// `entitlements.get`.
    pub async fn get_entitlement(
        &self,
        entitlement: &str,
    ) -> Result<ProcurementEntitlement, ClientError> {
        let name = self.entitlement_name(entitlement)?;
        let answer = self
            .api
            .call(Request {
                operation: "entitlements.get",
                method: Method::GET,
                url: &self.url(&name, None),
                query: &[],
                headers: &[],
                body: None,
            })
            .await?;
        let w: WireEntitlement = api::decode("entitlements.get", &answer.body)?;
        Ok(w.into())
    }

    /// `entitlements.approve`: only for an entitlement in ENTITLEMENT_ACTIVATION_REQUESTED
    /// (the method's description); Google refuses others.
    pub async fn approve_entitlement(&self, entitlement: &str) -> Result<(), ClientError> {
        let name = self.entitlement_name(entitlement)?;
        self.post("entitlements.approve", &name, "approve", json!({}))
            .await
    }

    /// `entitlements.reject`, with a reason shown to the customer.
    pub async fn reject_entitlement(
        &self,
        entitlement: &str,
        reason: &str,
    ) -> Result<(), ClientError> {
        let name = self.entitlement_name(entitlement)?;
        self.post(
            "entitlements.reject",
            &name,
            "reject",
            json!({ "reason": reason }),
        )
        .await
    }

    /// `entitlements.approvePlanChange`: `pending_plan_name` is required and must be the
    /// entitlement's `newPendingPlan`.
    pub async fn approve_plan_change(
        &self,
        entitlement: &str,
        pending_plan_name: &str,
    ) -> Result<(), ClientError> {
        let name = self.entitlement_name(entitlement)?;
        let body = plan_change_body(pending_plan_name, None);
        self.post(
            "entitlements.approvePlanChange",
            &name,
            "approvePlanChange",
            body,
        )
        .await
    }

    /// `entitlements.rejectPlanChange`.
    pub async fn reject_plan_change(
        &self,
        entitlement: &str,
        pending_plan_name: &str,
        reason: &str,
    ) -> Result<(), ClientError> {
        let name = self.entitlement_name(entitlement)?;
        let body = plan_change_body(pending_plan_name, Some(reason));
        self.post(
            "entitlements.rejectPlanChange",
            &name,
            "rejectPlanChange",
            body,
        )
        .await
    }

    async fn post(
        &self,
        operation: &'static str,
        name: &str,
        method: &str,
        body: Value,
    ) -> Result<(), ClientError> {
        self.api
            .call(Request {
                operation,
                method: Method::POST,
                url: &self.url(name, Some(method)),
                query: &[],
                headers: &[],
                body: Some(body.to_string()),
            })
            .await
            .map(|_| ())
    }
}

/// A method's path as the discovery document writes it: `v1/{+name}`, `v1/{+name}:approve`.
pub(crate) fn path(name: &str, method: Option<&str>) -> String {
    match method {
        Some(m) => format!("v1/{name}:{m}"),
        None => format!("v1/{name}"),
    }
}

pub(crate) fn approve_account_body(approval_name: &str, reason: Option<&str>) -> Value {
    let mut body = json!({ "approvalName": approval_name });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    body
}

pub(crate) fn reject_account_body(approval_name: &str, reason: &str) -> Value {
    json!({ "approvalName": approval_name, "reason": reason })
}

pub(crate) fn reject_entitlement_body(reason: &str) -> Value {
    json!({ "reason": reason })
}

pub(crate) fn plan_change_body(pending_plan_name: &str, reason: Option<&str>) -> Value {
    let mut body = json!({ "pendingPlanName": pending_plan_name });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    body
}

/// What a Procurement notification is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum NotificationSubject {
    Entitlement(EntitlementRef),
    Account(AccountRef),
    /// Neither object: an event type this version does not know may carry something else.
    Neither,
}

/// `entitlement` of a notification: the id and what the message says about the offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntitlementRef {
    pub id: String,
    /// As sent (`"..."` in Google's examples: kept as text, parsed by the caller if needed).
    pub update_time: Option<String>,
    pub new_offer_duration: Option<String>,
    pub new_pending_offer_duration: Option<String>,
    pub new_offer_start_time: Option<String>,
    pub new_offer_end_time: Option<String>,
    /// Members this version does not read.
    pub other: BTreeMap<String, Value>,
}

/// `account` of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountRef {
    pub id: String,
    pub update_time: Option<String>,
    pub other: BTreeMap<String, Value>,
}

/// A Procurement notification, the JSON in a Pub/Sub message's `data`:
/// `{"eventId", "eventType", "providerId", "entitlement": {"id", "updateTime", …}}` or
/// `{…, "account": {"id", …}}` (manage-entitlements page, read 2026-12-01).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcurementNotification {
    /// Google's id of the event: the key for processing it once.
    pub event_id: String,
    pub event_type: ProcurementEventType,
    /// Absent in some of Google's examples (private offers).
    pub provider_id: Option<String>,
    pub subject: NotificationSubject,
    /// The JSON as received, to keep beside what was done with it.
    pub raw: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireNotification {
    event_id: String,
    event_type: ProcurementEventType,
    provider_id: Option<String>,
    entitlement: Option<WireRef>,
    account: Option<WireRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRef {
    id: String,
    update_time: Option<String>,
    new_offer_duration: Option<String>,
    new_pending_offer_duration: Option<String>,
    new_offer_start_time: Option<String>,
    new_offer_end_time: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Reads a notification from the Pub/Sub message's data (already base64-decoded, as
/// [`crate::pubsub::ReceivedMessage::data`] holds it). An unknown `eventType` is kept
/// as [`ProcurementEventType::Other`]; only bytes that are not such a JSON object (no
/// `eventId`, no `eventType`, an `entitlement` without `id`, …) are malformed.
pub fn parse_notification(data: &[u8]) -> Result<ProcurementNotification, MalformedNotification> {
    let malformed = |reason: String| MalformedNotification::new("procurement", reason, data);
    let text = std::str::from_utf8(data).map_err(|e| malformed(format!("not UTF-8: {e}")))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let wire: WireNotification = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| malformed(format!("{} (at {})", e.inner(), e.path())))?;
    if wire.event_id.is_empty() {
        return Err(malformed("eventId is empty".into()));
    }
    let subject = match (wire.entitlement, wire.account) {
        (Some(e), _) => NotificationSubject::Entitlement(EntitlementRef {
            id: e.id,
            update_time: empty_is_none(e.update_time),
            new_offer_duration: empty_is_none(e.new_offer_duration),
            new_pending_offer_duration: empty_is_none(e.new_pending_offer_duration),
            new_offer_start_time: empty_is_none(e.new_offer_start_time),
            new_offer_end_time: empty_is_none(e.new_offer_end_time),
            other: e.other,
        }),
        (None, Some(a)) => NotificationSubject::Account(AccountRef {
            id: a.id,
            update_time: empty_is_none(a.update_time),
            other: a.other,
        }),
        (None, None) => NotificationSubject::Neither,
    };
    Ok(ProcurementNotification {
        event_id: wire.event_id,
        event_type: wire.event_type,
        provider_id: empty_is_none(wire.provider_id),
        subject,
        raw: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_read_and_unknown_event_types_kept() {
        let n = parse_notification(
            br#"{"eventId":"e-1","eventType":"ENTITLEMENT_CREATION_REQUESTED","providerId":"acme","entitlement":{"id":"ent-1","updateTime":"2026-12-01T10:00:00Z","newPendingOfferDuration":"P2Y3M"}}"#,
        )
        .expect("parsed");
        assert_eq!(
            n.event_type,
            ProcurementEventType::EntitlementCreationRequested
        );
        let NotificationSubject::Entitlement(e) = &n.subject else {
            panic!("entitlement expected: {n:?}");
        };
        assert_eq!(e.id, "ent-1");
        assert_eq!(e.new_pending_offer_duration.as_deref(), Some("P2Y3M"));

        let n = parse_notification(
            br#"{"eventId":"e-2","eventType":"ENTITLEMENT_TELEPORTED","account":{"id":"acc-1"},"extra":1}"#,
        )
        .expect("unknown type kept");
        assert_eq!(
            n.event_type,
            ProcurementEventType::Other("ENTITLEMENT_TELEPORTED".into())
        );
        assert!(matches!(n.subject, NotificationSubject::Account(ref a) if a.id == "acc-1"));
    }

    #[test]
    fn malformed_notifications_say_what_and_keep_the_bytes() {
        for (bytes, needle) in [
            (&b"not json"[..], "expected"),
            (br#"{"eventType":"ACCOUNT_ACTIVE"}"#, "eventId"),
            (
                br#"{"eventId":"e","eventType":"ENTITLEMENT_ACTIVE","entitlement":{}}"#,
                "id",
            ),
            (br#"{"eventId":"e","eventType":7}"#, "eventType"),
            (&[0xff, 0xfe][..], "UTF-8"),
        ] {
            let err = parse_notification(bytes).expect_err("malformed");
            assert_eq!(err.raw, bytes);
            assert!(err.reason.contains(needle), "{needle}: {}", err.reason);
        }
    }
}

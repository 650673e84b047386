//! The HTTP clients Purser reports hourly usage with: Google Service Control
//! ([`gcp`]), Azure Marketplace metering ([`azure`]) and AWS Marketplace Metering
//! ([`aws`]), and Tackle.io's metering API ([`tackle`]) for accounts whose seller
//! routes through Tackle, behind one trait, [`MeteringClient`].
//!
//! A client takes the ledger's [`UsageRecord`]s for its marketplace, splits them into
//! requests the marketplace takes (batch size, body limit, grouping), sends them and
//! gives back one [`RecordOutcome`] per record and every [`Exchange`] it made. What an
//! outcome means for the ledger is decided in `purser-core`; the clients only read
//! the marketplaces' answers, each mapping commented with its source.
//!
//! Beside metering, the clients of the marketplaces' subscription APIs and the parsers
//! of their notifications: Google's Partner Procurement ([`procurement`]) and the
//! Pub/Sub subscription its notifications arrive on ([`pubsub`]), Azure's SaaS
//! Fulfillment API v2 and its webhook ([`fulfillment`]), AWS's ResolveCustomer and
//! GetEntitlements ([`aws_saas`]) and the SNS deliveries of its notifications, with
//! their signatures verified ([`sns`]). An unknown event type or action is kept as
//! such; a malformed notification is a [`MalformedNotification`] holding the bytes.
//!
//! Exchanges are Purser's evidence of what was sent and answered: the URL, the body
//! and the answer, never a credential (no Authorization header, token, client secret
//! or signature).

#[macro_use]
mod names;
mod api;
mod auth;
pub mod aws;
pub mod aws_saas;
pub mod azure;
pub mod fulfillment;
pub mod gcp;
mod http;
pub mod jwt;
pub mod limiter;
pub mod procurement;
pub mod pubsub;
pub mod secret;
pub mod sns;
pub mod tackle;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use purser_core::account::Marketplace;
/// The exchange type is the core's, so the ledger chains exactly what a client made.
pub use purser_core::marketplace::exchange::Exchange;
use purser_core::marketplace::rules::Rules;
pub use purser_core::marketplace::{Binding, RecordOutcome, Route, UsageRecord};
use serde::Serialize;
use uuid::Uuid;

pub use aws::{AwsClient, AwsConfig};
pub use azure::{AzureClient, AzureConfig, AzureUsageEvent};
pub use gcp::{GcpClient, GcpConfig, GcpCredentials};
pub use secret::{Secret, SecretSource};
pub use tackle::{TackleClient, TackleConfig};

/// A marketplace's metering API.
#[async_trait::async_trait]
pub trait MeteringClient: Send + Sync {
    fn marketplace(&self) -> Marketplace;
    /// Whether the client reports to the marketplace directly or through Tackle: it
    /// is given only the ledger records of its own route.
    fn route(&self) -> Route {
        Route::Direct
    }
    fn rules(&self) -> &Rules;
    /// Sends `records` (all of this client's marketplace) in as many requests as the
    /// marketplace's batch size, body limit and grouping rules need, and returns one
    /// outcome per record (in the order given) with every exchange made. Never fails
    /// as a whole: what could not be sent is [`RecordOutcome::Retry`].
    async fn submit(&self, records: &[UsageRecord]) -> Submission;
}

/// What one [`MeteringClient::submit`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Submission {
    /// One per record passed in, in the same order.
    pub outcomes: Vec<(Uuid, RecordOutcome)>,
    /// Every HTTP exchange made, token requests included, in the order they started.
    pub exchanges: Vec<Exchange>,
    /// The longest `Retry-After` any answer asked for.
    pub retry_after: Option<Duration>,
}

impl Submission {
    /// The outcome of the record with `key` (the first, should a key repeat).
    pub fn outcome(&self, key: Uuid) -> Option<&RecordOutcome> {
        self.outcomes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, o)| o)
    }
}

/// Why a client could not be built, or a call that is not a submission failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("marketplace client configuration: {0}")]
    Config(String),
    #[error("{operation}: no answer: {message}")]
    Transport {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: HTTP {status}: {message}")]
    Status {
        operation: &'static str,
        status: u16,
        message: String,
    },
    #[error("{operation}: unreadable answer: {message}")]
    Decode {
        operation: &'static str,
        message: String,
    },
    #[error("credentials: {0}")]
    Auth(String),
    /// The marketplace answered and refused the call, with its own error code (Google's
    /// `error.status`, Azure's `error.code`, AWS's `__type`): e.g. approving an
    /// entitlement that is not pending, an unknown subscription, an expired token.
    #[error("{operation}: refused (HTTP {status}, {code}): {message}")]
    Refused {
        operation: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// A call the marketplace's contract does not allow, refused before sending.
    #[error("{operation}: {message} (not sent)")]
    InvalidArgument {
        operation: &'static str,
        message: String,
    },
}

impl ClientError {
    /// The marketplace's error code, when it refused the call.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether sending the same call again later may succeed: no answer, a 5xx, a 429,
    /// or a refusal the marketplace calls throttling or an internal error. Anything else
    /// (a refusal of the call itself) will be refused again.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => *status == 429 || *status >= 500,
            ClientError::Refused { status, code, .. } => {
                *status == 429
                    || *status >= 500
                    || matches!(
                        code.as_str(),
                        "ThrottlingException"
                            | "InternalServiceErrorException"
                            | "RESOURCE_EXHAUSTED"
                            | "UNAVAILABLE"
                            | "ABORTED"
                    )
            }
            ClientError::Decode { .. } => false,
            ClientError::Auth(_) => true,
            ClientError::Config(_) | ClientError::InvalidArgument { .. } => false,
        }
    }

    /// The HTTP status of the answer, when one came.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } | ClientError::Status { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

/// A notification that could not be read (not JSON, a required field missing or of the
/// wrong type): kept whole, so it can be stored and shown rather than dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {source_name} notification: {reason}")]
pub struct MalformedNotification {
    /// Which kind of notification it was meant to be (`procurement`, `azure webhook`,
    /// `sns`, `aws marketplace message`).
    pub source_name: &'static str,
    /// What is wrong and where (serde's path and position).
    pub reason: String,
    /// The bytes as received.
    pub raw: Vec<u8>,
}

impl MalformedNotification {
    pub(crate) fn new(
        source_name: &'static str,
        reason: impl Into<String>,
        raw: &[u8],
    ) -> MalformedNotification {
        MalformedNotification {
            source_name,
            reason: reason.into(),
            raw: raw.to_vec(),
        }
    }
}

/// Where a client reads the time, for deciding what has expired. Tests set it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub(crate) fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_concurrency() -> usize {
    4
}

/// Collects outcomes by record position while a submission runs, so every record ends
/// with exactly one.
pub(crate) struct Outcomes {
    keys: Vec<Uuid>,
    slots: Vec<Option<RecordOutcome>>,
}

impl Outcomes {
    pub(crate) fn new(records: &[UsageRecord]) -> Outcomes {
        Outcomes {
            keys: records.iter().map(|r| r.key).collect(),
            slots: vec![None; records.len()],
        }
    }

    pub(crate) fn set(&mut self, index: usize, outcome: RecordOutcome) {
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(outcome);
        }
    }

    /// Every record still without an outcome gets `Retry`: nothing is lost by a path
    /// that forgot one.
    pub(crate) fn finish(self) -> Vec<(Uuid, RecordOutcome)> {
        self.keys
            .into_iter()
            .zip(self.slots)
            .map(|(key, slot)| {
                (
                    key,
                    slot.unwrap_or_else(|| retry("no answer was read for this record")),
                )
            })
            .collect()
    }
}

/// Not taken, and certainly not applied (throttled, refused before processing,
/// never sent).
pub(crate) fn retry(reason: impl Into<String>) -> RecordOutcome {
    RecordOutcome::Retry {
        reason: reason.into(),
        may_have_applied: false,
    }
}

/// Not known to be taken, but the request reached the marketplace and may have been
/// applied (a timeout, a lost answer, a 5xx).
pub(crate) fn retry_maybe_applied(reason: impl Into<String>) -> RecordOutcome {
    RecordOutcome::Retry {
        reason: reason.into(),
        may_have_applied: true,
    }
}

pub(crate) fn refused(code: impl Into<String>, message: impl Into<String>) -> RecordOutcome {
    RecordOutcome::Refused {
        code: code.into(),
        message: message.into(),
    }
}

pub(crate) fn wrong_marketplace(record: &UsageRecord, client: Marketplace) -> RecordOutcome {
    refused(
        "wrong_marketplace",
        format!(
            "the record is bound to {}, not {} (not sent)",
            record.binding.marketplace(),
            client
        ),
    )
}

/// Whether a marketplace's message says the record's time window has closed.
pub(crate) fn mentions_expiry(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "expired",
        "too old",
        "time window",
        "out of bounds",
        "outside the allowed",
        "in the past",
        "stale",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

pub(crate) fn longest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Splits serialised items into requests of at most `max` items whose bodies stay
/// under `bytes` (with room for the envelope).
pub(crate) fn batches(
    items: Vec<(usize, String)>,
    max: usize,
    bytes: usize,
) -> Vec<Vec<(usize, String)>> {
    let mut out: Vec<Vec<(usize, String)>> = Vec::new();
    let mut current: Vec<(usize, String)> = Vec::new();
    let mut size = 0usize;
    // Room for the envelope (`{"request":[` … `]}`, AWS's ProductCode of up to 255).
    let budget = bytes.saturating_sub(512);
    for (index, item) in items {
        if !current.is_empty() && (current.len() >= max || size + item.len() + 1 > budget) {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += item.len() + 1;
        current.push((index, item));
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Request bodies as the clients build them, for contract tests; not for production.
#[doc(hidden)]
pub mod testing {
    use crate::UsageRecord;

    /// The BatchMeterUsage bodies `records` would be sent in.
    pub fn aws_bodies(records: &[UsageRecord]) -> Vec<String> {
        crate::aws::bodies(records)
    }

    /// The batchUsageEvent bodies `records` would be sent in.
    pub fn azure_bodies(records: &[UsageRecord]) -> Vec<String> {
        let items: Vec<(usize, String)> = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| crate::azure::usage_event(r).ok().flatten().map(|b| (i, b)))
            .collect();
        crate::batches(items, 25, 1_000_000)
            .into_iter()
            .map(|batch| {
                let items: Vec<&str> = batch.iter().map(|(_, b)| b.as_str()).collect();
                format!("{{\"request\":[{}]}}", items.join(","))
            })
            .collect()
    }

    /// The check body of the first record and the report body of all of them.
    pub fn gcp_bodies(records: &[UsageRecord]) -> (String, String) {
        crate::gcp::bodies(records)
    }

    /// Partner Procurement bodies by method id (`entitlements.approvePlanChange`), as the
    /// client sends them.
    pub fn procurement_bodies() -> Vec<(&'static str, serde_json::Value)> {
        use crate::procurement::*;
        vec![
            (
                "accounts.approve",
                approve_account_body("signup", Some("signed up")),
            ),
            ("accounts.reject", reject_account_body("signup", "no")),
            ("entitlements.approve", serde_json::json!({})),
            (
                "entitlements.reject",
                reject_entitlement_body("not eligible"),
            ),
            (
                "entitlements.approvePlanChange",
                plan_change_body("gold", None),
            ),
            (
                "entitlements.rejectPlanChange",
                plan_change_body("gold", Some("no")),
            ),
        ]
    }

    /// The Partner Procurement methods the client calls: (method id, HTTP method, path
    /// template as the client builds it).
    pub fn procurement_paths() -> Vec<(&'static str, &'static str, String)> {
        use crate::procurement::path;
        let name = "{+name}";
        vec![
            ("accounts.get", "GET", path(name, None)),
            ("accounts.approve", "POST", path(name, Some("approve"))),
            ("accounts.reject", "POST", path(name, Some("reject"))),
            ("entitlements.get", "GET", path(name, None)),
            ("entitlements.approve", "POST", path(name, Some("approve"))),
            ("entitlements.reject", "POST", path(name, Some("reject"))),
            (
                "entitlements.approvePlanChange",
                "POST",
                path(name, Some("approvePlanChange")),
            ),
            (
                "entitlements.rejectPlanChange",
                "POST",
                path(name, Some("rejectPlanChange")),
            ),
        ]
    }

    /// The Pub/Sub calls: (resource.method, HTTP method, path template, request schema,
    /// body as sent).
    pub fn pubsub_requests() -> Vec<(
        &'static str,
        &'static str,
        String,
        &'static str,
        serde_json::Value,
    )> {
        use crate::pubsub::{path, pull_body, push_subscription_body};
        use serde_json::json;
        let sub = "{+subscription}";
        vec![
            (
                "subscriptions.pull",
                "POST",
                path(sub, Some("pull")),
                "PullRequest",
                pull_body(10, false),
            ),
            (
                "subscriptions.pull",
                "POST",
                path(sub, Some("pull")),
                "PullRequest",
                pull_body(10, true),
            ),
            (
                "subscriptions.acknowledge",
                "POST",
                path(sub, Some("acknowledge")),
                "AcknowledgeRequest",
                json!({ "ackIds": ["a"] }),
            ),
            (
                "subscriptions.modifyAckDeadline",
                "POST",
                path(sub, Some("modifyAckDeadline")),
                "ModifyAckDeadlineRequest",
                json!({ "ackIds": ["a"], "ackDeadlineSeconds": 0 }),
            ),
            (
                "subscriptions.create",
                "PUT",
                path("{+name}", None),
                "Subscription",
                json!({ "topic": "projects/p/topics/t", "ackDeadlineSeconds": 10 }),
            ),
            (
                "subscriptions.create",
                "PUT",
                path("{+name}", None),
                "Subscription",
                push_subscription_body(
                    "projects/p/topics/t",
                    10,
                    "https://purser.example/hooks/gcp/pubsub",
                    Some((
                        "push@p.iam.gserviceaccount.com",
                        "https://purser.example/hooks/gcp/pubsub",
                    )),
                ),
            ),
            (
                "topics.create",
                "PUT",
                path("{+name}", None),
                "Topic",
                json!({}),
            ),
            (
                "topics.publish",
                "POST",
                path("{+topic}", Some("publish")),
                "PublishRequest",
                json!({ "messages": [{ "data": "aGk=", "attributes": {} }] }),
            ),
        ]
    }

    /// The SaaS Fulfillment calls: (HTTP method, the contract's path).
    pub fn fulfillment_paths() -> Vec<(&'static str, &'static str)> {
        use crate::fulfillment::*;
        vec![
            ("post", RESOLVE),
            ("get", SUBSCRIPTIONS),
            ("get", SUBSCRIPTION),
            ("post", ACTIVATE),
            ("get", OPERATIONS),
            ("get", OPERATION),
            ("patch", OPERATION),
        ]
    }

    /// The X-Amz-Target values and signing name of the AWS SaaS calls.
    pub fn aws_saas_targets() -> (&'static str, &'static str, &'static str) {
        crate::aws_saas::TARGETS
    }

    /// SaaS Fulfillment bodies by the contract's schema name.
    pub fn fulfillment_bodies() -> Vec<(&'static str, serde_json::Value)> {
        use crate::fulfillment::*;
        vec![
            ("SubscriberPlan", subscriber_plan("gold", Some(5))),
            ("SubscriberPlan", subscriber_plan("gold", None)),
            (
                "UpdateOperation",
                update_operation_body(OperationOutcome::Success, Some("gold"), Some(5)),
            ),
            (
                "UpdateOperation",
                update_operation_body(OperationOutcome::Failure, None, None),
            ),
        ]
    }

    /// The ResolveCustomer body and a GetEntitlements body with every filter key and a
    /// NextToken.
    pub fn aws_saas_bodies() -> (String, String) {
        let resolve = serde_json::json!({ "RegistrationToken": "token-1" }).to_string();
        let filter = crate::aws_saas::EntitlementFilter {
            customer_identifier: Vec::new(),
            customer_aws_account_id: vec!["123456789012".into()],
            license_arn: vec!["arn:aws:license-manager::123456789012:license:l-1".into()],
            dimension: vec!["storage".into()],
        };
        let filter = filter.to_json().ok().flatten();
        let entitlements =
            crate::aws_saas::entitlements_body("prod-1", filter.as_ref(), Some("next"));
        (resolve, entitlements)
    }
}

//! Google Cloud Marketplace's desk: Partner Procurement notifications from the
//! seller's Pub/Sub subscription (pulled by the job, or pushed to
//! `/hooks/gcp/pubsub` where a push subscription is configured), entitlements re-read
//! from the Procurement API, and the seller's approvals.

use jiff::Timestamp;
use purser_core::Marketplace;
use purser_core::marketplace::Binding;
use purser_core::marketplace::subscription::{SellerCall, SubscriptionSnapshot, SubscriptionState};
use purser_marketplace::ClientError;
use purser_marketplace::jwt::{
    GOOGLE_ISSUERS, GOOGLE_JWKS_URL, JwksVerifier, JwtPolicy, RequiredClaim,
};
use purser_marketplace::procurement::{
    ApprovalState, EntitlementState, NotificationSubject, ProcurementClient, ProcurementConfig,
    ProcurementEventType, parse_notification,
};
use purser_marketplace::pubsub::{PubSubClient, PubSubConfig, parse_push};
use purser_store::Store;
use purser_store::subscriptions::Channel;
use serde::Deserialize;

use super::{DeskError, Pushed, Reading, SubscriptionDesk, store_delivery};

/// `[subscriptions.gcp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSubscriptionsConfig {
    pub procurement: ProcurementConfig,
    pub pubsub: PubSubConfig,
    /// `projects/{project}/subscriptions/{subscription}`: the seller's subscription to
    /// the topic Google publishes Procurement notifications on.
    pub subscription: String,
    /// The Service Control service usage is reported to; the entitlement's `product`
    /// when not set.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Messages taken per pull.
    #[serde(default = "default_pull_max")]
    pub pull_max_messages: u32,
    /// `[subscriptions.gcp.push]`: a push subscription delivering to
    /// `/hooks/gcp/pubsub`. Without it, pushed deliveries are refused (401): Purser
    /// could not tell Google's from a stranger's.
    #[serde(default)]
    pub push: Option<GcpPushConfig>,
}

fn default_pull_max() -> u32 {
    100
}

/// `[subscriptions.gcp.push]`: how a Pub/Sub push delivery proves it is Google's. The
/// push subscription is created with an OIDC token (`pushConfig.oidcToken`: a service
/// account and an audience); Pub/Sub then signs a JWT per delivery
/// (https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions, read
/// 2026-12-01).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpPushConfig {
    /// The `aud` set on the push subscription's OIDC token (Google uses the push
    /// endpoint's URL when none was set).
    #[serde(default)]
    pub audience: Option<String>,
    /// The service account Pub/Sub signs as (`email`, which must be verified).
    #[serde(default)]
    pub service_account_email: Option<String>,
    #[serde(default = "default_google_jwks")]
    pub jwks_url: String,
    /// `false` only where nothing can sign: the Pub/Sub emulator sends no token. Then
    /// any caller can make Purser re-read entitlements (never more: decisions come
    /// from Procurement's word), so it is for tests and local set-ups.
    #[serde(default = "default_true")]
    pub verify_token: bool,
    #[serde(default = "default_jwks_timeout")]
    pub request_timeout_ms: u64,
}

fn default_google_jwks() -> String {
    GOOGLE_JWKS_URL.into()
}

pub(crate) fn default_true() -> bool {
    true
}

pub(crate) fn default_jwks_timeout() -> u64 {
    10_000
}

impl GcpPushConfig {
    /// Push verified against Google's keys for this audience and service account.
    pub fn verified(audience: &str, service_account_email: &str) -> GcpPushConfig {
        GcpPushConfig {
            audience: Some(audience.into()),
            service_account_email: Some(service_account_email.into()),
            jwks_url: default_google_jwks(),
            verify_token: true,
            request_timeout_ms: default_jwks_timeout(),
        }
    }

    /// Push without a token (the emulator's).
    pub fn unverified() -> GcpPushConfig {
        GcpPushConfig {
            audience: None,
            service_account_email: None,
            jwks_url: default_google_jwks(),
            verify_token: false,
            request_timeout_ms: default_jwks_timeout(),
        }
    }

    /// The verifier, or none when verification is explicitly off.
    fn verifier(&self) -> Result<Option<JwksVerifier>, ClientError> {
        if !self.verify_token {
            return Ok(None);
        }
        let missing = |what: &str| {
            ClientError::Config(format!(
                "push.{what} is required unless push.verify_token = false"
            ))
        };
        let audience = self.audience.clone().ok_or_else(|| missing("audience"))?;
        let email = self
            .service_account_email
            .clone()
            .ok_or_else(|| missing("service_account_email"))?;
        JwksVerifier::new(
            JwtPolicy {
                jwks_url: self.jwks_url.clone(),
                issuers: GOOGLE_ISSUERS.iter().map(|i| (*i).to_owned()).collect(),
                audience,
                required: vec![
                    RequiredClaim {
                        name: "email".into(),
                        value: serde_json::Value::String(email),
                    },
                    RequiredClaim {
                        name: "email_verified".into(),
                        value: serde_json::Value::Bool(true),
                    },
                ],
            },
            self.request_timeout_ms,
        )
        .map(Some)
    }
}

/// Whether and how pushed deliveries are taken.
enum PushIntake {
    /// No push subscription is configured: refused.
    Off,
    /// Verification explicitly off (the emulator).
    Unverified,
    Verified(JwksVerifier),
}

/// A delivery's key, the same whether it was pulled or pushed, so that one message
/// delivered both ways is stored once: Google's eventId where the message reads; the
/// Pub/Sub message id (the same on every redelivery) otherwise.
fn delivery_key(data: &[u8], message_id: &str) -> String {
    parse_notification(data)
        .map(|n| n.event_id)
        .unwrap_or_else(|_| format!("message:{message_id}"))
}

/// The approval Google's signup flow asks the provider to grant on the account.
const SIGNUP_APPROVAL: &str = "signup";

pub struct GcpDesk {
    procurement: ProcurementClient,
    pubsub: PubSubClient,
    subscription: String,
    service_name: Option<String>,
    pull_max: u32,
    push: PushIntake,
}

impl GcpDesk {
    pub fn new(config: &GcpSubscriptionsConfig) -> Result<GcpDesk, ClientError> {
        Ok(GcpDesk {
            procurement: ProcurementClient::new(&config.procurement)?,
            pubsub: PubSubClient::new(&config.pubsub)?,
            subscription: config.subscription.clone(),
            service_name: config.service_name.clone(),
            pull_max: config.pull_max_messages.max(1),
            push: match &config.push {
                None => PushIntake::Off,
                Some(push) => match push.verifier()? {
                    None => PushIntake::Unverified,
                    Some(verifier) => PushIntake::Verified(verifier),
                },
            },
        })
    }
}

fn desk_error(error: ClientError) -> DeskError {
    match error.status() {
        Some(404) => DeskError::Unknown(error.to_string()),
        Some(400 | 409 | 412) if !error.is_retryable() => DeskError::Refused(error.to_string()),
        _ => DeskError::Unavailable(error.to_string()),
    }
}

/// Procurement's entitlement states in Purser's terms. A plan change the provider
/// must answer keeps the entitlement active, with the plan asked for pending.
fn state_of(state: &EntitlementState) -> Result<SubscriptionState, DeskError> {
    Ok(match state {
        EntitlementState::ActivationRequested => SubscriptionState::Requested,
        EntitlementState::Active
        | EntitlementState::PendingPlanChange
        | EntitlementState::PendingPlanChangeApproval => SubscriptionState::Active,
        EntitlementState::PendingCancellation => SubscriptionState::PendingCancellation,
        EntitlementState::Cancelled => SubscriptionState::Cancelled,
        EntitlementState::Suspended => SubscriptionState::Suspended,
        other => {
            return Err(DeskError::Unavailable(format!(
                "entitlement state {other:?} is not one Purser knows how to bill"
            )));
        }
    })
}

#[async_trait::async_trait]
impl SubscriptionDesk for GcpDesk {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Gcp
    }

    fn read(&self, body: &str) -> Reading {
        match parse_notification(body.as_bytes()) {
            Err(malformed) => Reading::Malformed {
                reason: malformed.reason.clone(),
            },
            Ok(notification) => {
                let kind = notification.event_type.as_str().to_string();
                match (&notification.event_type, notification.subject) {
                    (ProcurementEventType::Other(_), _) => Reading::Unrecognised {
                        kind: Some(kind.clone()),
                        reason: format!("event type {kind} is not one Purser acts on"),
                    },
                    (_, NotificationSubject::Entitlement(entitlement)) => Reading::Subscription {
                        kind,
                        external_id: entitlement.id,
                    },
                    (_, NotificationSubject::Account(account)) => Reading::Unrecognised {
                        kind: Some(kind),
                        reason: format!(
                            "account {} changed; Purser acts on entitlements, and approves the account's signup with its first entitlement",
                            account.id
                        ),
                    },
                    (_, NotificationSubject::Neither) => Reading::Malformed {
                        reason: format!("{kind} names neither an entitlement nor an account"),
                    },
                }
            }
        }
    }

    async fn snapshot(&self, external_id: &str) -> Result<SubscriptionSnapshot, DeskError> {
        let entitlement = self
            .procurement
            .get_entitlement(external_id)
            .await
            .map_err(desk_error)?;
        let state = state_of(&entitlement.state)?;
        let plan = entitlement.plan.clone().unwrap_or_default();
        let pending_plan = match entitlement.state {
            EntitlementState::PendingPlanChangeApproval => entitlement.new_pending_plan.clone(),
            _ => None,
        };
        let service_name = self
            .service_name
            .clone()
            .or_else(|| entitlement.product.clone());
        let binding = match (service_name, entitlement.usage_reporting_id.clone()) {
            (Some(service_name), Some(usage_reporting_id)) => Some(Binding::Gcp {
                service_name,
                usage_reporting_id,
            }),
            _ => None,
        };
        Ok(SubscriptionSnapshot {
            state,
            plan,
            quantity: None,
            pending_plan,
            binding,
            effective_at: entitlement
                .update_time
                .or(entitlement.create_time)
                .unwrap_or_else(Timestamp::now),
            term_end: entitlement.offer_end_time,
        })
    }

    async fn call(&self, external_id: &str, call: &SellerCall) -> Result<(), DeskError> {
        match call {
            SellerCall::Approve { .. } => {
                // The account's signup approval comes first: Google activates an
                // entitlement only for an approved account.
                let entitlement = self
                    .procurement
                    .get_entitlement(external_id)
                    .await
                    .map_err(desk_error)?;
                if let Some(account_id) = entitlement.account_id() {
                    let account = self
                        .procurement
                        .get_account(account_id)
                        .await
                        .map_err(desk_error)?;
                    let pending = account
                        .approval(SIGNUP_APPROVAL)
                        .is_some_and(|a| a.state == ApprovalState::Pending);
                    if pending {
                        self.procurement
                            .approve_account(account_id, SIGNUP_APPROVAL, None)
                            .await
                            .map_err(desk_error)?;
                    }
                }
                self.procurement
                    .approve_entitlement(external_id)
                    .await
                    .map_err(desk_error)
            }
            SellerCall::ApprovePlanChange { plan } => self
                .procurement
                .approve_plan_change(external_id, plan)
                .await
                .map_err(desk_error),
        }
    }

    /// A push delivery's OIDC token, checked before anything is stored: an
    /// unauthenticated delivery is not Google's.
    async fn authenticate(&self, authorization: Option<&str>) -> Result<(), DeskError> {
        match &self.push {
            PushIntake::Off => Err(DeskError::Unauthenticated(
                "Pub/Sub push is not configured here ([subscriptions.gcp.push])".into(),
            )),
            PushIntake::Unverified => Ok(()),
            PushIntake::Verified(verifier) => super::verify_bearer(verifier, authorization).await,
        }
    }

    /// The push envelope opened: the message's data is stored as a pulled one is,
    /// under the same key.
    fn unwrap_push(&self, body: &str) -> Result<Pushed, DeskError> {
        let push = parse_push(body.as_bytes()).map_err(|m| DeskError::Refused(m.reason))?;
        Ok(Pushed {
            key: Some(delivery_key(&push.data, &push.message_id)),
            body: String::from_utf8_lossy(&push.data).into_owned(),
        })
    }

    async fn pull(&self, store: &Store) -> Result<usize, DeskError> {
        let messages = self
            .pubsub
            .pull(&self.subscription, self.pull_max, true)
            .await
            .map_err(desk_error)?;
        let mut acked = Vec::with_capacity(messages.len());
        for message in &messages {
            let body = String::from_utf8_lossy(&message.data).into_owned();
            let key = delivery_key(&message.data, &message.message_id);
            store_delivery(store, self, Channel::Pubsub, &key, &body)
                .await
                .map_err(|e| {
                    DeskError::Unavailable(format!("could not store a notification: {e}"))
                })?;
            // Acknowledged only once stored: a crash before this redelivers it.
            acked.push(message.ack_id.clone());
        }
        if !acked.is_empty() {
            self.pubsub
                .acknowledge(&self.subscription, &acked)
                .await
                .map_err(desk_error)?;
        }
        Ok(acked.len())
    }
}

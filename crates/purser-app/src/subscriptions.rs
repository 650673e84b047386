//! Subscriptions from the marketplaces, wired: each marketplace's *desk* (how its
//! notifications are read, how a subscription is re-read, how the seller answers),
//! and the `marketplace.subscriptions` job's run: take in what waits at the
//! marketplace (Google's Pub/Sub subscription), then act on every stored
//! notification through its desk and the store's `settle_subscription`.
//!
//! Deliveries that come to Purser (Azure's webhook, SNS, Pub/Sub push) are stored by
//! the HTTP intake before it answers; the job acts on them. Either way a notification
//! is durable before it is acknowledged, and acted on once.

pub mod aws;
pub mod azure;
pub mod gcp;

use std::collections::HashMap;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use purser_core::Marketplace;
use purser_core::audit::Actor;
use purser_core::marketplace::subscription::{SellerCall, SubscriptionSnapshot};
use purser_store::subscriptions::{NewNotification, NotificationStatus};
use purser_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// `[subscriptions]`: the marketplaces Purser takes subscriptions from. A marketplace
/// left out has no desk: its notifications (pushed ones included) are stored and
/// wait, shown, until it is configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriptionsConfig {
    pub gcp: Option<gcp::GcpSubscriptionsConfig>,
    /// The SaaS Fulfillment API: the same endpoint and Entra application as metering,
    /// and how webhook calls are verified.
    pub azure: Option<azure::AzureSubscriptionsConfig>,
    pub aws: Option<aws::AwsSubscriptionsConfig>,
}

/// Secrets never leave through the configuration's display: only what is configured.
impl Serialize for SubscriptionsConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("SubscriptionsConfig", 3)?;
        s.serialize_field("gcp", &self.gcp.as_ref().map(|_| "configured"))?;
        s.serialize_field("azure", &self.azure.as_ref().map(|_| "configured"))?;
        s.serialize_field("aws", &self.aws.as_ref().map(|_| "configured"))?;
        s.end()
    }
}

impl PartialEq for SubscriptionsConfig {
    fn eq(&self, other: &Self) -> bool {
        // Compared in tests of the layering only: which marketplaces are configured.
        self.gcp.is_some() == other.gcp.is_some()
            && self.azure.is_some() == other.azure.is_some()
            && self.aws.is_some() == other.aws.is_some()
    }
}

impl Eq for SubscriptionsConfig {}

/// Why a desk could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    /// The marketplace did not answer, or answered with a failure worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// The marketplace says the subscription does not exist (or not for this seller).
    #[error("{0}")]
    Unknown(String),
    /// The marketplace refused the seller's call (a state that no longer allows it).
    #[error("{0}")]
    Refused(String),
    /// A pushed delivery did not prove it is the marketplace's (its JWT): nothing of
    /// it is stored.
    #[error("{0}")]
    Unauthenticated(String),
}

/// What a pushed body holds for storing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The delivery's key; the body's digest when none.
    pub key: Option<String>,
    /// The notification as stored and read later.
    pub body: String,
}

/// How a notification's body reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// It names a subscription to re-read.
    Subscription { kind: String, external_id: String },
    /// Well formed, but nothing Purser acts on (an unknown event type; an account-level
    /// event with no subscription in it).
    Unrecognised {
        kind: Option<String>,
        reason: String,
    },
    /// Not readable at all.
    Malformed { reason: String },
}

/// A marketplace's subscription API, as processing needs it.
#[async_trait::async_trait]
pub trait SubscriptionDesk: Send + Sync {
    fn marketplace(&self) -> Marketplace;
    /// Reads a stored notification's body.
    fn read(&self, body: &str) -> Reading;
    /// The marketplace's current word on a subscription.
    async fn snapshot(&self, external_id: &str) -> Result<SubscriptionSnapshot, DeskError>;
    /// Makes a seller call (approve, approve a plan change).
    async fn call(&self, external_id: &str, call: &SellerCall) -> Result<(), DeskError>;
    /// The id a marketplace gives a delivery, stable across its redeliveries (Azure's
    /// operation and action); the body's digest when it has none.
    fn delivery_key(&self, _body: &str) -> Option<String> {
        None
    }
    /// Checks who sent a pushed delivery, from its `Authorization` header (the JWT
    /// Google's Pub/Sub push and Microsoft's webhook calls carry), before anything of
    /// it is stored: `Unauthenticated` when it is not the marketplace's,
    /// `Unavailable` when it cannot be told now (the keys could not be fetched).
    async fn authenticate(&self, _authorization: Option<&str>) -> Result<(), DeskError> {
        Ok(())
    }
    /// Opens a pushed body: its delivery key and the notification to store (Pub/Sub
    /// push wraps the message in an envelope). By default the body itself, under
    /// [`Self::delivery_key`]; `Refused` when the envelope cannot be read.
    fn unwrap_push(&self, body: &str) -> Result<Pushed, DeskError> {
        Ok(Pushed {
            key: self.delivery_key(body),
            body: body.to_owned(),
        })
    }
    /// Checks that a pushed delivery is the marketplace's (SNS's signature) and does
    /// what its protocol asks on receipt (SNS's subscription confirmation).
    async fn accept(&self, _body: &str) -> Result<(), DeskError> {
        Ok(())
    }
    /// The subscription a buyer's landing-page token stands for, where the
    /// marketplace sends buyers with one (Azure).
    async fn resolve_landing(&self, _token: &str) -> Result<String, DeskError> {
        Err(DeskError::Refused(format!(
            "{} does not send buyers with a landing token",
            self.marketplace()
        )))
    }
    /// Takes in what waits at the marketplace (Google's Pub/Sub pull): stores each
    /// delivery, then acknowledges it. Desks whose notifications are pushed to Purser
    /// have nothing to pull.
    async fn pull(&self, _store: &Store) -> Result<usize, DeskError> {
        Ok(0)
    }
}

/// Checks a pushed delivery's bearer JWT: `Unavailable` when the keys could not be
/// had (the sender tries again), `Unauthenticated` for any other failure.
pub(crate) async fn verify_bearer(
    verifier: &purser_marketplace::jwt::JwksVerifier,
    authorization: Option<&str>,
) -> Result<(), DeskError> {
    verifier
        .verify_header(authorization)
        .await
        .map(drop)
        .map_err(|e| {
            if e.is_unavailable() {
                DeskError::Unavailable(e.to_string())
            } else {
                DeskError::Unauthenticated(e.to_string())
            }
        })
}

/// Stores a delivery as its desk reads it: to act on, or kept aside with the reason.
/// Used by every intake (pull, webhook, SNS), so each keeps what it cannot read.
pub async fn store_delivery(
    store: &Store,
    desk: &dyn SubscriptionDesk,
    channel: purser_store::subscriptions::Channel,
    delivery_key: &str,
    body: &str,
) -> Result<purser_store::subscriptions::Stored, StoreError> {
    let (kind, external_id, status, error) = match desk.read(body) {
        Reading::Subscription { kind, external_id } => (
            Some(kind),
            Some(external_id),
            NotificationStatus::Received,
            None,
        ),
        Reading::Unrecognised { kind, reason } => {
            (kind, None, NotificationStatus::Unrecognised, Some(reason))
        }
        Reading::Malformed { reason } => (None, None, NotificationStatus::Malformed, Some(reason)),
    };
    store
        .store_notification(NewNotification {
            marketplace: desk.marketplace(),
            delivery_key: delivery_key.to_string(),
            channel,
            body: body.to_string(),
            kind,
            external_id,
            status,
            error,
        })
        .await
}

/// The HTTP intake's view of the desks: what the marketplaces push is read by its
/// marketplace's desk and stored before the answer.
pub struct DeskIntake {
    pub processor: SubscriptionProcessor,
}

#[async_trait::async_trait]
impl purser_http::intake::NotificationIntake for DeskIntake {
    async fn take(
        &self,
        store: &Store,
        marketplace: Marketplace,
        channel: purser_store::subscriptions::Channel,
        authorization: Option<&str>,
        body: &str,
    ) -> Result<purser_store::subscriptions::Stored, purser_http::intake::IntakeError> {
        use purser_http::intake::IntakeError;
        let desk = self
            .processor
            .desk(marketplace)
            .ok_or(IntakeError::NotConfigured(marketplace))?;
        // Who sent it comes first: what a stranger sends is not kept at all.
        desk.authenticate(authorization)
            .await
            .map_err(|e| match e {
                DeskError::Unavailable(reason) => IntakeError::Unavailable(reason),
                other => IntakeError::Unauthenticated(other.to_string()),
            })?;
        let digest = || {
            use sha2::Digest;
            format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(body.as_bytes()))
            )
        };
        let opened = match desk.accept(body).await {
            Ok(()) => desk.unwrap_push(body),
            Err(e) => Err(e),
        };
        let key = match &opened {
            Ok(Pushed { key: Some(key), .. }) => key.clone(),
            _ => desk.delivery_key(body).unwrap_or_else(digest),
        };
        match opened {
            Ok(pushed) => store_delivery(store, desk.as_ref(), channel, &key, &pushed.body)
                .await
                .map_err(|e| IntakeError::Unavailable(e.to_string())),
            // Not the marketplace's: kept, shown with why, never acted on.
            Err(DeskError::Refused(reason) | DeskError::Unknown(reason)) => {
                store
                    .store_notification(NewNotification {
                        marketplace,
                        delivery_key: format!("refused:{key}"),
                        channel,
                        body: body.to_string(),
                        kind: None,
                        external_id: None,
                        status: NotificationStatus::Malformed,
                        error: Some(reason.clone()),
                    })
                    .await
                    .map_err(|e| IntakeError::Unavailable(e.to_string()))?;
                Err(IntakeError::Refused(reason))
            }
            Err(DeskError::Unavailable(reason)) => Err(IntakeError::Unavailable(reason)),
            Err(DeskError::Unauthenticated(reason)) => Err(IntakeError::Unauthenticated(reason)),
        }
    }

    async fn land(
        &self,
        store: &Store,
        marketplace: Marketplace,
        token: &str,
    ) -> Result<String, purser_http::intake::IntakeError> {
        use purser_http::intake::IntakeError;
        let desk = self
            .processor
            .desk(marketplace)
            .ok_or(IntakeError::NotConfigured(marketplace))?;
        let external_id = desk.resolve_landing(token).await.map_err(|e| match e {
            DeskError::Unavailable(reason) => IntakeError::Unavailable(reason),
            DeskError::Unknown(reason)
            | DeskError::Refused(reason)
            | DeskError::Unauthenticated(reason) => IntakeError::Refused(reason),
        })?;
        store
            .store_notification(NewNotification {
                marketplace,
                delivery_key: format!("landing:{external_id}"),
                channel: purser_store::subscriptions::Channel::Landing,
                body: serde_json::json!({ "landed": external_id }).to_string(),
                kind: Some("landing".into()),
                external_id: Some(external_id.clone()),
                status: NotificationStatus::Received,
                error: None,
            })
            .await
            .map_err(|e| IntakeError::Unavailable(e.to_string()))?;
        Ok(external_id)
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessReport {
    pub pulled: usize,
    pub processed: usize,
    pub calls: usize,
    pub failed_calls: usize,
    pub retrying: usize,
    pub set_aside: usize,
    pub needing_attention: usize,
}

impl ProcessReport {
    pub fn summary(&self) -> String {
        format!(
            "pulled {}, processed {} notifications ({} seller calls, {} refused or failed), {} to retry, {} set aside, {} needing attention",
            self.pulled,
            self.processed,
            self.calls,
            self.failed_calls,
            self.retrying,
            self.set_aside,
            self.needing_attention
        )
    }
}

/// Acts on stored notifications through the configured desks.
#[derive(Clone, Default)]
pub struct SubscriptionProcessor {
    desks: HashMap<Marketplace, Arc<dyn SubscriptionDesk>>,
}

/// At most this many notifications in one run; the next run carries on.
const NOTIFICATIONS_PER_RUN: usize = 500;

/// A seller call can change what the marketplace says at once (Azure's activate):
/// re-read after it, a bounded number of times.
const REREADS_AFTER_A_CALL: usize = 2;

impl SubscriptionProcessor {
    /// The desks of the configured marketplaces.
    pub fn from_config(config: &SubscriptionsConfig) -> Result<Self, crate::AppError> {
        let mut desks: Vec<Arc<dyn SubscriptionDesk>> = Vec::new();
        if let Some(gcp) = &config.gcp {
            desks.push(Arc::new(gcp::GcpDesk::new(gcp).map_err(|e| {
                crate::AppError::Invalid(format!("subscriptions.gcp: {e}"))
            })?));
        }
        if let Some(azure) = &config.azure {
            desks.push(Arc::new(azure::AzureDesk::new(azure).map_err(|e| {
                crate::AppError::Invalid(format!("subscriptions.azure: {e}"))
            })?));
        }
        if let Some(aws) = &config.aws {
            desks.push(Arc::new(aws::AwsDesk::new(aws).map_err(|e| {
                crate::AppError::Invalid(format!("subscriptions.aws: {e}"))
            })?));
        }
        Ok(Self::new(desks))
    }

    /// Which marketplaces subscriptions come from.
    pub fn marketplaces(&self) -> Vec<Marketplace> {
        let mut marketplaces: Vec<Marketplace> = self.desks.keys().copied().collect();
        marketplaces.sort_by_key(|m| m.as_str());
        marketplaces
    }

    pub fn new(desks: Vec<Arc<dyn SubscriptionDesk>>) -> Self {
        Self {
            desks: desks.into_iter().map(|d| (d.marketplace(), d)).collect(),
        }
    }

    pub fn desk(&self, marketplace: Marketplace) -> Option<&Arc<dyn SubscriptionDesk>> {
        self.desks.get(&marketplace)
    }

    pub fn is_empty(&self) -> bool {
        self.desks.is_empty()
    }

    /// One run of `marketplace.subscriptions` at `now`.
    pub async fn run(&self, store: &Store, now: Timestamp) -> Result<ProcessReport, StoreError> {
        let mut report = ProcessReport::default();
        for desk in self.desks.values() {
            match desk.pull(store).await {
                Ok(n) => report.pulled += n,
                Err(error) => {
                    tracing::warn!(marketplace = %desk.marketplace(), %error, "could not pull notifications")
                }
            }
        }
        let actor = Actor::new("system:marketplace-subscriptions", None);
        for notification in store
            .pending_notifications(now, NOTIFICATIONS_PER_RUN)
            .await?
        {
            let Some(desk) = self.desks.get(&notification.marketplace) else {
                // Kept for when the marketplace is configured; tried again in an hour.
                store
                    .notification_failed(
                        &notification.id,
                        &format!("{} is not configured", notification.marketplace),
                        now + SignedDuration::from_hours(1),
                    )
                    .await?;
                report.retrying += 1;
                continue;
            };
            let Some(external_id) = notification.external_id.clone() else {
                store
                    .notification_set_aside(
                        &notification.id,
                        NotificationStatus::Malformed,
                        "it names no subscription",
                    )
                    .await?;
                report.set_aside += 1;
                continue;
            };
            let snapshot = match desk.snapshot(&external_id).await {
                Ok(snapshot) => snapshot,
                Err(DeskError::Unknown(reason)) => {
                    store
                        .notification_set_aside(
                            &notification.id,
                            NotificationStatus::Unrecognised,
                            &format!(
                                "the marketplace does not know subscription {external_id}: {reason}"
                            ),
                        )
                        .await?;
                    report.set_aside += 1;
                    continue;
                }
                Err(error) => {
                    let retry_at = now + backoff(notification.attempts);
                    store
                        .notification_failed(&notification.id, &error.to_string(), retry_at)
                        .await?;
                    report.retrying += 1;
                    continue;
                }
            };
            let decision = self
                .act(
                    store,
                    desk.as_ref(),
                    &actor,
                    &external_id,
                    snapshot,
                    Some(&notification.id),
                    &mut report,
                )
                .await?;
            report.processed += 1;
            if decision.attention.is_some() {
                report.needing_attention += 1;
            }
        }
        Ok(report)
    }
}

impl SubscriptionProcessor {
    /// Settles a fresh read, then makes the seller call it asks for and settles what
    /// the marketplace says after it.
    #[allow(clippy::too_many_arguments)]
    async fn act(
        &self,
        store: &Store,
        desk: &dyn SubscriptionDesk,
        actor: &Actor,
        external_id: &str,
        snapshot: SubscriptionSnapshot,
        notification_id: Option<&str>,
        report: &mut ProcessReport,
    ) -> Result<purser_core::marketplace::subscription::Decision, StoreError> {
        let marketplace = desk.marketplace();
        let mut decision = store
            .settle_subscription(actor, marketplace, external_id, &snapshot, notification_id)
            .await?;
        for _ in 0..REREADS_AFTER_A_CALL {
            let Some(call) = decision.call.clone() else {
                break;
            };
            let result = desk.call(external_id, &call).await;
            report.calls += 1;
            let error = result.err().map(|e| e.to_string());
            if error.is_some() {
                report.failed_calls += 1;
            }
            store
                .record_seller_call(
                    marketplace,
                    external_id,
                    &call,
                    error.as_deref().map_or(Ok(()), Err),
                )
                .await?;
            if error.is_some() {
                // The next notification (or the marketplace's retry) re-reads.
                break;
            }
            match desk.snapshot(external_id).await {
                Ok(snapshot) => {
                    decision = store
                        .settle_subscription(actor, marketplace, external_id, &snapshot, None)
                        .await?;
                }
                Err(_) => break,
            }
        }
        Ok(decision)
    }
}

/// 30 s, doubling, at most an hour: the marketplace keeps the subscription, Purser
/// keeps the notification; there is no window to miss, only a delay.
fn backoff(attempts: i64) -> SignedDuration {
    let exponent = attempts.clamp(0, 7) as u32;
    SignedDuration::from_secs((30_i64 << exponent).min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_subscriptions_are_configured_from_toml_without_showing_secrets() {
        let config: crate::Config = toml::from_str(
            r#"
            [subscriptions.gcp]
            subscription = "projects/vendor/subscriptions/procurement"
            [subscriptions.gcp.procurement]
            provider_id = "vendor"
            credentials = { kind = "token", token = "ya29.very-secret" }
            [subscriptions.gcp.pubsub]
            base_url = "http://127.0.0.1:8085"
            "#,
        )
        .expect("a valid configuration");
        let processor = SubscriptionProcessor::from_config(&config.subscriptions).expect("desks");
        assert_eq!(processor.marketplaces(), vec![Marketplace::Gcp]);
        let shown = serde_json::to_string(&config.subscriptions).expect("shown");
        assert_eq!(shown, r#"{"gcp":"configured","azure":null,"aws":null}"#);
        assert!(!format!("{:?}", config.subscriptions).contains("very-secret"));
        let unknown: Result<crate::Config, _> =
            toml::from_str("[subscriptions.gcp]\nsubscriptoin = \"x\"\n");
        assert!(unknown.is_err(), "a misspelt key is refused");
    }

    #[test]
    fn push_and_webhook_verification_are_configured_and_on_by_default() {
        let config: crate::Config = toml::from_str(
            r#"
            [subscriptions.azure]
            tenant_id = "t-1"
            client_id = "app-1"
            client_secret = "very-secret"
            [subscriptions.gcp]
            subscription = "projects/vendor/subscriptions/procurement"
            [subscriptions.gcp.procurement]
            provider_id = "vendor"
            credentials = { kind = "token", token = "ya29.x" }
            [subscriptions.gcp.pubsub]
            base_url = "http://127.0.0.1:8085"
            [subscriptions.gcp.push]
            audience = "https://purser.example/hooks/gcp/pubsub"
            service_account_email = "push@vendor.iam.gserviceaccount.com"
            "#,
        )
        .expect("a valid configuration");
        let azure = config.subscriptions.azure.as_ref().expect("azure");
        assert!(azure.webhook.verify_token, "verified unless turned off");
        assert_eq!(
            azure.webhook.jwks_url,
            purser_marketplace::jwt::ENTRA_JWKS_URL
        );
        assert_eq!(azure.api.client_id, "app-1");
        let push = config
            .subscriptions
            .gcp
            .as_ref()
            .and_then(|g| g.push.clone())
            .expect("push");
        assert!(push.verify_token);
        assert_eq!(push.jwks_url, purser_marketplace::jwt::GOOGLE_JWKS_URL);
        SubscriptionProcessor::from_config(&config.subscriptions).expect("desks");

        // The escape hatch is explicit; a misspelt key is refused in either table.
        let off: crate::Config = toml::from_str(
            "[subscriptions.azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[subscriptions.azure.webhook]\nverify_token = false\n",
        )
        .expect("opt-out");
        assert!(!off.subscriptions.azure.expect("azure").webhook.verify_token);
        for bad in [
            "[subscriptions.azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[subscriptions.azure.webhook]\nverify = false\n",
            "[subscriptions.azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\ntenantid = \"x\"\n",
        ] {
            assert!(toml::from_str::<crate::Config>(bad).is_err(), "{bad}");
        }
        // Verification on without an audience cannot start.
        let mut gcp = config.subscriptions.clone();
        if let Some(g) = gcp.gcp.as_mut()
            && let Some(p) = g.push.as_mut()
        {
            p.audience = None;
        }
        assert!(SubscriptionProcessor::from_config(&gcp).is_err());
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        assert_eq!(backoff(0), SignedDuration::from_secs(30));
        assert_eq!(backoff(1), SignedDuration::from_secs(60));
        assert_eq!(backoff(6), SignedDuration::from_secs(1920));
        assert_eq!(backoff(7), SignedDuration::from_secs(3600));
        assert_eq!(backoff(1000), SignedDuration::from_secs(3600));
    }
}

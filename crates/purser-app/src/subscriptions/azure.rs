//! Azure Marketplace's desk: the SaaS Fulfillment API v2. Webhooks (stored by the
//! HTTP intake before it answers) and landing-page tokens name a SaaS subscription;
//! the subscription and its operations are re-read before anything is done, as
//! Microsoft asks of webhook handlers. A webhook call's Entra ID JWT is verified
//! before anything of it is stored.

use jiff::Timestamp;
use purser_core::Marketplace;
use purser_core::marketplace::Binding;
use purser_core::marketplace::subscription::{SellerCall, SubscriptionSnapshot, SubscriptionState};
use purser_marketplace::fulfillment::{
    FulfillmentClient, OperationAction, OperationOutcome, OperationStatus, SaasSubscriptionStatus,
    parse_webhook,
};
use purser_marketplace::jwt::{ENTRA_JWKS_URL, JwksVerifier, JwtPolicy, entra_issuers};
use purser_marketplace::{AzureConfig, ClientError};
use serde::Deserialize;
use uuid::Uuid;

use super::gcp::{default_jwks_timeout, default_true};
use super::{DeskError, Reading, SubscriptionDesk};

/// `[subscriptions.azure]`: the keys of `[marketplaces.azure]` (the SaaS Fulfillment
/// API shares metering's endpoint and Entra application), and
/// `[subscriptions.azure.webhook]`.
#[derive(Debug, Clone)]
pub struct AzureSubscriptionsConfig {
    pub api: AzureConfig,
    pub webhook: AzureWebhookConfig,
}

impl AzureSubscriptionsConfig {
    /// Webhook calls verified against Entra's published keys.
    pub fn new(api: AzureConfig) -> AzureSubscriptionsConfig {
        AzureSubscriptionsConfig {
            api,
            webhook: AzureWebhookConfig::default(),
        }
    }
}

/// `webhook` is taken out before the rest is read as an `AzureConfig`, so both keep
/// refusing unknown keys (serde's `flatten` would silently accept them).
impl<'de> Deserialize<'de> for AzureSubscriptionsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(deserializer)?;
        let webhook = match table.remove("webhook") {
            None => AzureWebhookConfig::default(),
            Some(value) => AzureWebhookConfig::deserialize(value)
                .map_err(|e| D::Error::custom(format!("webhook: {e}")))?,
        };
        let api = AzureConfig::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        Ok(AzureSubscriptionsConfig { api, webhook })
    }
}

/// `[subscriptions.azure.webhook]`: how a webhook call proves it is Microsoft's. The
/// call carries `Authorization: Bearer <JWT>` issued by Entra ID for the offer's
/// technical configuration (its tenant and Entra application id), which the publisher
/// validates
/// (https://learn.microsoft.com/partner-center/marketplace-offers/pc-saas-fulfillment-webhook,
/// read 2026-12-01): signature against Entra's keys, `aud` the application (client)
/// id — `client_id` here —, `iss` of the tenant — `tenant_id` here — (v1 or v2), and
/// `exp`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureWebhookConfig {
    /// Entra's common keys; a tenant's own list works too.
    #[serde(default = "default_entra_jwks")]
    pub jwks_url: String,
    /// `false` only where nothing can sign (a local fake without an issuer): then any
    /// caller can make Purser re-read subscriptions (never more: decisions come from
    /// the Fulfillment API's word).
    #[serde(default = "default_true")]
    pub verify_token: bool,
    #[serde(default = "default_jwks_timeout")]
    pub request_timeout_ms: u64,
}

fn default_entra_jwks() -> String {
    ENTRA_JWKS_URL.into()
}

impl Default for AzureWebhookConfig {
    fn default() -> Self {
        AzureWebhookConfig {
            jwks_url: default_entra_jwks(),
            verify_token: true,
            request_timeout_ms: default_jwks_timeout(),
        }
    }
}

pub struct AzureDesk {
    fulfillment: FulfillmentClient,
    /// None when verification is explicitly off.
    webhook: Option<JwksVerifier>,
}

impl AzureDesk {
    pub fn new(config: &AzureSubscriptionsConfig) -> Result<AzureDesk, ClientError> {
        let webhook = &config.webhook;
        let verifier = if webhook.verify_token {
            Some(JwksVerifier::new(
                JwtPolicy {
                    jwks_url: webhook.jwks_url.clone(),
                    issuers: entra_issuers(&config.api.tenant_id),
                    audience: config.api.client_id.clone(),
                    required: vec![],
                },
                webhook.request_timeout_ms,
            )?)
        } else {
            None
        };
        Ok(AzureDesk {
            fulfillment: FulfillmentClient::new(&config.api)?,
            webhook: verifier,
        })
    }
}

fn desk_error(error: ClientError) -> DeskError {
    match error.status() {
        Some(404) => DeskError::Unknown(error.to_string()),
        Some(400 | 403 | 409) if !error.is_retryable() => DeskError::Refused(error.to_string()),
        _ => DeskError::Unavailable(error.to_string()),
    }
}

fn subscription_id(external_id: &str) -> Result<Uuid, DeskError> {
    external_id
        .parse::<Uuid>()
        .map_err(|_| DeskError::Unknown(format!("`{external_id}` is not a SaaS subscription id")))
}

/// The delivery key of a webhook: its operation and action (Microsoft retries a
/// webhook with the same operation id).
fn webhook_key(body: &str) -> Option<String> {
    parse_webhook(body.as_bytes())
        .ok()
        .map(|w| format!("{}:{}", w.operation_id, w.action.as_str()))
}

#[async_trait::async_trait]
impl SubscriptionDesk for AzureDesk {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Azure
    }

    fn delivery_key(&self, body: &str) -> Option<String> {
        webhook_key(body)
    }

    async fn authenticate(&self, authorization: Option<&str>) -> Result<(), DeskError> {
        let Some(verifier) = &self.webhook else {
            return Ok(());
        };
        super::verify_bearer(verifier, authorization).await
    }

    /// `resolve`: the landing page's token, URL-decoded by the query's parsing.
    async fn resolve_landing(&self, token: &str) -> Result<String, DeskError> {
        self.fulfillment
            .resolve(token)
            .await
            .map(|resolved| resolved.id.to_string())
            .map_err(desk_error)
    }

    fn read(&self, body: &str) -> Reading {
        match parse_webhook(body.as_bytes()) {
            Err(malformed) => Reading::Malformed {
                reason: malformed.reason.clone(),
            },
            Ok(webhook) => match &webhook.action {
                OperationAction::Other(action) => Reading::Unrecognised {
                    kind: Some(action.clone()),
                    reason: format!("webhook action {action} is not one Purser acts on"),
                },
                action => Reading::Subscription {
                    kind: action.as_str().to_string(),
                    external_id: webhook.subscription_id.to_string(),
                },
            },
        }
    }

    async fn snapshot(&self, external_id: &str) -> Result<SubscriptionSnapshot, DeskError> {
        let id = subscription_id(external_id)?;
        let subscription = self
            .fulfillment
            .get_subscription(id)
            .await
            .map_err(desk_error)?;
        let state = match subscription.saas_subscription_status {
            Some(
                SaasSubscriptionStatus::PendingFulfillmentStart
                | SaasSubscriptionStatus::NotStarted,
            ) => SubscriptionState::Requested,
            Some(SaasSubscriptionStatus::Subscribed) => SubscriptionState::Active,
            Some(SaasSubscriptionStatus::Suspended) => SubscriptionState::Suspended,
            Some(SaasSubscriptionStatus::Unsubscribed) => SubscriptionState::Cancelled,
            other => {
                return Err(DeskError::Unavailable(format!(
                    "subscription status {other:?} is not one Purser knows how to bill"
                )));
            }
        };
        let operations = self
            .fulfillment
            .list_operations(id)
            .await
            .map_err(desk_error)?;
        // A plan change the buyer started that waits for the publisher's answer.
        let pending_plan = operations
            .iter()
            .filter(|o| o.status == Some(OperationStatus::InProgress))
            .find(|o| o.action == Some(OperationAction::ChangePlan))
            .and_then(|o| o.plan_id.clone());
        // The subscription carries no time of its last change; its latest operation does.
        let effective_at = operations
            .iter()
            .filter(|o| o.status == Some(OperationStatus::Succeeded))
            .filter_map(|o| o.time_stamp)
            .max()
            .or(subscription.created)
            .unwrap_or_else(Timestamp::now);
        let plan = subscription.plan_id.clone().unwrap_or_default();
        Ok(SubscriptionSnapshot {
            state,
            binding: Some(Binding::Azure {
                resource_id: id.to_string(),
                plan_id: plan.clone(),
            }),
            plan,
            quantity: subscription.quantity.map(Into::into),
            pending_plan,
            effective_at,
            term_end: subscription.term.and_then(|t| t.end_date),
        })
    }

    async fn call(&self, external_id: &str, call: &SellerCall) -> Result<(), DeskError> {
        let id = subscription_id(external_id)?;
        match call {
            SellerCall::Approve { plan, quantity } => {
                let quantity = quantity.and_then(|q| u64::try_from(q).ok());
                self.fulfillment
                    .activate(id, plan, quantity)
                    .await
                    .map_err(desk_error)
            }
            SellerCall::ApprovePlanChange { plan } => {
                let operations = self
                    .fulfillment
                    .list_operations(id)
                    .await
                    .map_err(desk_error)?;
                let operation = operations
                    .iter()
                    .find(|o| {
                        o.status == Some(OperationStatus::InProgress)
                            && o.action == Some(OperationAction::ChangePlan)
                            && o.plan_id.as_deref() == Some(plan.as_str())
                    })
                    .ok_or_else(|| {
                        DeskError::Refused(format!("no plan change to {plan} is in progress"))
                    })?;
                self.fulfillment
                    .update_operation(
                        id,
                        operation.id,
                        OperationOutcome::Success,
                        Some(plan),
                        operation.quantity,
                    )
                    .await
                    .map_err(desk_error)
            }
        }
    }
}

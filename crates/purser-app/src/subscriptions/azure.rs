//! Azure Marketplace's desk: the SaaS Fulfillment API v2. Webhooks (stored by the
//! HTTP intake before it answers) and landing-page tokens name a SaaS subscription;
//! the subscription and its operations are re-read before anything is done, as
//! Microsoft asks of webhook handlers.

use jiff::Timestamp;
use purser_core::Marketplace;
use purser_core::marketplace::Binding;
use purser_core::marketplace::subscription::{SellerCall, SubscriptionSnapshot, SubscriptionState};
use purser_marketplace::fulfillment::{
    FulfillmentClient, OperationAction, OperationOutcome, OperationStatus, SaasSubscriptionStatus,
    parse_webhook,
};
use purser_marketplace::{AzureConfig, ClientError};
use uuid::Uuid;

use super::{DeskError, Reading, SubscriptionDesk};

pub struct AzureDesk {
    fulfillment: FulfillmentClient,
}

impl AzureDesk {
    pub fn new(config: &AzureConfig) -> Result<AzureDesk, ClientError> {
        Ok(AzureDesk {
            fulfillment: FulfillmentClient::new(config)?,
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

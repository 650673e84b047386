//! AWS Marketplace's desk: the registration token a buyer brings (ResolveCustomer),
//! SNS notifications verified by their signature, and entitlements re-read with
//! GetEntitlements.
//!
//! AWS has no subscription status to read and no seller approval to give: what a
//! buyer is entitled to now is the marketplace's word. An entitlement in force means
//! billed — after `unsubscribe-pending` too, which opens the window for final usage —
//! and none means over (`unsubscribe-success`, `subscribe-fail`).

use jiff::Timestamp;
use purser_core::Marketplace;
use purser_core::marketplace::Binding;
use purser_core::marketplace::subscription::{SellerCall, SubscriptionSnapshot, SubscriptionState};
use purser_marketplace::ClientError;
use purser_marketplace::aws_saas::{AwsSaasClient, AwsSaasConfig, EntitlementFilter};
use purser_marketplace::sns::{
    MarketplaceAction, SnsMessageType, SnsTrust, SnsVerifier, is_sns_certificate_url,
    parse_envelope, parse_marketplace_message,
};
use serde::Deserialize;

use super::{DeskError, Reading, SubscriptionDesk};

/// `[subscriptions.aws]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSubscriptionsConfig {
    /// Region, endpoints and credentials of the metering and entitlement services.
    pub api: AwsSaasConfig,
    /// The product whose entitlements are read.
    pub product_code: String,
    /// The SNS topics (and, in tests only, certificate URL prefixes) trusted.
    #[serde(default)]
    pub sns: SnsTrust,
}

pub struct AwsDesk {
    client: AwsSaasClient,
    verifier: SnsVerifier,
    trust: SnsTrust,
    product_code: String,
    http: reqwest::Client,
}

impl AwsDesk {
    pub fn new(config: &AwsSubscriptionsConfig) -> Result<AwsDesk, ClientError> {
        Ok(AwsDesk {
            client: AwsSaasClient::new(&config.api)?,
            verifier: SnsVerifier::new(config.sns.clone())?,
            trust: config.sns.clone(),
            product_code: config.product_code.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| ClientError::Config(e.to_string()))?,
        })
    }

    /// Whether a SubscribeURL may be visited: SNS's own host over HTTPS, or a prefix
    /// the configuration trusts (tests).
    fn may_visit(&self, url: &str) -> bool {
        is_sns_certificate_url(url)
            || self
                .trust
                .extra_cert_url_prefixes
                .iter()
                .any(|prefix| url.starts_with(prefix.as_str()))
    }
}

fn desk_error(error: ClientError) -> DeskError {
    match error.status() {
        Some(400) if !error.is_retryable() => DeskError::Refused(error.to_string()),
        _ => DeskError::Unavailable(error.to_string()),
    }
}

/// Concurrent Agreements name the buyer by license; legacy products by customer.
fn filter_for(external_id: &str) -> EntitlementFilter {
    if external_id.starts_with("arn:") {
        EntitlementFilter::license(external_id)
    } else {
        EntitlementFilter::customer(external_id)
    }
}

#[async_trait::async_trait]
impl SubscriptionDesk for AwsDesk {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Aws
    }

    fn delivery_key(&self, body: &str) -> Option<String> {
        parse_envelope(body.as_bytes())
            .ok()
            .map(|envelope| format!("sns:{}", envelope.message_id))
    }

    async fn accept(&self, body: &str) -> Result<(), DeskError> {
        let envelope = parse_envelope(body.as_bytes())
            .map_err(|e| DeskError::Refused(format!("not an SNS delivery: {}", e.reason)))?;
        self.verifier
            .verify(&envelope)
            .await
            .map_err(|e| DeskError::Refused(format!("the SNS signature does not verify: {e}")))?;
        // A new subscription of the endpoint is confirmed by visiting its URL (only
        // once the message is proven to be SNS's).
        if envelope.message_type == SnsMessageType::SubscriptionConfirmation
            && let Some(url) = &envelope.subscribe_url
        {
            if !self.may_visit(url) {
                return Err(DeskError::Refused(format!(
                    "SubscribeURL {url} is not SNS's"
                )));
            }
            self.http
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| {
                    DeskError::Unavailable(format!("confirming the SNS subscription: {e}"))
                })?;
        }
        Ok(())
    }

    fn read(&self, body: &str) -> Reading {
        let envelope = match parse_envelope(body.as_bytes()) {
            Ok(envelope) => envelope,
            Err(malformed) => {
                return Reading::Malformed {
                    reason: malformed.reason.clone(),
                };
            }
        };
        if envelope.message_type != SnsMessageType::Notification {
            return Reading::Unrecognised {
                kind: Some(envelope.message_type.as_str().to_string()),
                reason: "an SNS control message, handled on receipt".into(),
            };
        }
        match parse_marketplace_message(&envelope.message) {
            Err(malformed) => Reading::Malformed {
                reason: malformed.reason.clone(),
            },
            Ok(message) => {
                let kind = message.action.as_str().to_string();
                if let MarketplaceAction::Other(_) = message.action {
                    return Reading::Unrecognised {
                        reason: format!("action {kind} is not one Purser acts on"),
                        kind: Some(kind),
                    };
                }
                match message.license_arn.or(message.customer_identifier) {
                    Some(external_id) => Reading::Subscription { kind, external_id },
                    None => Reading::Malformed {
                        reason: format!("{kind} names neither a license nor a customer"),
                    },
                }
            }
        }
    }

    async fn resolve_landing(&self, token: &str) -> Result<String, DeskError> {
        let customer = self
            .client
            .resolve_customer(token)
            .await
            .map_err(|e| match e.code() {
                Some(_) => DeskError::Refused(e.to_string()),
                None => DeskError::Unavailable(e.to_string()),
            })?;
        customer
            .license_arn
            .or(customer.customer_identifier)
            .ok_or_else(|| DeskError::Refused("AWS named neither a license nor a customer".into()))
    }

    async fn snapshot(&self, external_id: &str) -> Result<SubscriptionSnapshot, DeskError> {
        let now = Timestamp::now();
        let entitlements = self
            .client
            .get_entitlements(&self.product_code, &filter_for(external_id))
            .await
            .map_err(desk_error)?;
        let in_force: Vec<_> = entitlements
            .iter()
            .filter(|e| e.expiration_date.is_none_or(|end| end > now))
            .collect();
        let mut dimensions: Vec<&str> = in_force
            .iter()
            .filter_map(|e| e.dimension.as_deref())
            .collect();
        dimensions.sort_unstable();
        dimensions.dedup();
        let binding = in_force.first().and_then(|e| {
            match (
                &e.customer_aws_account_id,
                &e.license_arn,
                &e.customer_identifier,
            ) {
                (Some(account), Some(license), _) => Some(Binding::Aws {
                    customer_aws_account_id: account.clone(),
                    license_arn: license.clone(),
                }),
                (_, _, Some(customer)) => Some(Binding::AwsLegacy {
                    customer_identifier: customer.clone(),
                    product_code: self.product_code.clone(),
                }),
                _ => None,
            }
        });
        Ok(SubscriptionSnapshot {
            state: if in_force.is_empty() {
                SubscriptionState::Cancelled
            } else {
                SubscriptionState::Active
            },
            // The plan is the set of contract dimensions the buyer is entitled to.
            plan: dimensions.join(","),
            quantity: None,
            pending_plan: None,
            binding,
            // GetEntitlements tells no time of change: the change is heard of now.
            effective_at: now,
            term_end: in_force.iter().filter_map(|e| e.expiration_date).min(),
        })
    }

    async fn call(&self, _external_id: &str, _call: &SellerCall) -> Result<(), DeskError> {
        // AWS asks for no approval: a subscription is in force when AWS entitles it.
        Ok(())
    }
}

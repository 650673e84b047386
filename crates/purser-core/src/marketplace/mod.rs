//! Billing through the marketplaces: who a marketplace bills (an entitlement's
//! binding), what is due for each account × dimension × hour, and what a
//! marketplace's answer means for it. No I/O: the clients speak HTTP, storage keeps
//! the ledger; the decisions are here so that both backends and every client agree.
//!
//! Reading order: [`rules`] (each marketplace's contract, with sources), this module
//! (bindings, records, outcomes, retries), [`planning`] (from rated hours to records).

pub mod exchange;
pub mod planning;
pub mod rules;
pub mod subscription;

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::account::Marketplace;
use crate::validation::ValidationErrors;

/// Whom a marketplace bills for an entitlement, in the marketplace's own identifiers.
/// It comes with the subscription (Google's entitlement, Azure's SaaS subscription,
/// AWS's agreement) and is kept on the entitlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Binding {
    /// Google Cloud Marketplace: usage goes to Service Control for `service_name`,
    /// with the entitlement's usage reporting id as `consumerId`.
    Gcp {
        service_name: String,
        usage_reporting_id: String,
    },
    /// Azure Marketplace SaaS: the SaaS subscription (resource) id and its plan.
    Azure {
        resource_id: String,
        plan_id: String,
    },
    /// AWS Marketplace with Concurrent Agreements (every new product since
    /// 2026-06-01): the buyer's AWS account and the agreement's license.
    Aws {
        customer_aws_account_id: String,
        license_arn: String,
    },
    /// AWS Marketplace products integrated before Concurrent Agreements: the customer
    /// identifier from ResolveCustomer and the product code.
    AwsLegacy {
        customer_identifier: String,
        product_code: String,
    },
    /// Any of the three clouds, reported through Tackle.io's metering API rather than
    /// to the cloud directly, for sellers who route their listings through Tackle:
    /// Tackle's product and customer ids, and the cloud Tackle forwards to. The ledger
    /// keys a record by the cloud (see [`Binding::marketplace`]), so moving an account
    /// between the direct route and Tackle can never bill an hour twice.
    Tackle {
        cloud: Marketplace,
        product_id: String,
        customer_id: String,
    },
}

/// How a record reaches its marketplace: straight to the cloud's metering API, or
/// through Tackle.io, which forwards it. Stored with each ledger record, so that a
/// client claims only the records of its own route.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    Direct,
    Tackle,
}

impl Route {
    pub const ALL: [Route; 2] = [Route::Direct, Route::Tackle];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Tackle => "tackle",
        }
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == value)
            .ok_or_else(|| format!("`{value}` is not a route (direct or tackle)"))
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest Tackle product or customer id Purser takes. Tackle publishes no limit
/// (developers.tackle.io, read 2026-12-01); the clouds' own ids are at most 255
/// characters (AWS's CustomerIdentifier and ProductCode, botocore), so anything longer
/// is a mistake in the data, not an id.
const TACKLE_ID_MAX: usize = 255;

impl Binding {
    pub fn marketplace(&self) -> Marketplace {
        match self {
            Binding::Gcp { .. } => Marketplace::Gcp,
            Binding::Azure { .. } => Marketplace::Azure,
            Binding::Aws { .. } | Binding::AwsLegacy { .. } => Marketplace::Aws,
            // The cloud Tackle forwards to bills the buyer, and its rules (window,
            // month-end cutoff) still bind; the record key is the cloud's too.
            Binding::Tackle { cloud, .. } => *cloud,
        }
    }

    /// Whether the record goes to the cloud directly or through Tackle.
    pub fn route(&self) -> Route {
        match self {
            Binding::Tackle { .. } => Route::Tackle,
            Binding::Gcp { .. }
            | Binding::Azure { .. }
            | Binding::Aws { .. }
            | Binding::AwsLegacy { .. } => Route::Direct,
        }
    }

    /// Who is billed, for pages and messages: one line, no secrets.
    pub fn billed_party(&self) -> String {
        match self {
            Binding::Gcp {
                usage_reporting_id, ..
            } => format!("consumer {usage_reporting_id}"),
            Binding::Azure { resource_id, .. } => format!("SaaS subscription {resource_id}"),
            Binding::Aws {
                customer_aws_account_id,
                ..
            } => format!("AWS account {customer_aws_account_id}"),
            Binding::AwsLegacy {
                customer_identifier,
                ..
            } => format!("customer {customer_identifier}"),
            Binding::Tackle { customer_id, .. } => format!("Tackle customer {customer_id}"),
        }
    }

    /// Checks the identifiers against the shapes the marketplaces publish, naming the
    /// failing fields under `field` (`marketplace_binding.license_arn`).
    pub fn validate(&self, field: &str, errors: &mut ValidationErrors) {
        let at = |name: &str| format!("{field}.{name}");
        let no_space = |value: &str| !value.is_empty() && !value.contains(char::is_whitespace);
        match self {
            Binding::Gcp {
                service_name,
                usage_reporting_id,
            } => {
                // Service names are DNS names (`example.endpoints.project.cloud.goog`).
                if !(no_space(service_name) && service_name.contains('.')) {
                    errors.add(at("service_name"), "a Service Control service name is a DNS name such as product.endpoints.project.cloud.goog");
                }
                if !no_space(usage_reporting_id) {
                    errors.add(
                        at("usage_reporting_id"),
                        "the entitlement's usage reporting id is required and has no spaces",
                    );
                }
            }
            Binding::Azure {
                resource_id,
                plan_id,
            } => {
                if !crate::account::is_guid(resource_id) {
                    errors.add(
                        at("resource_id"),
                        "an Azure SaaS subscription id is a GUID (8-4-4-4-12 hexadecimal digits)",
                    );
                }
                if !no_space(plan_id) {
                    errors.add(at("plan_id"), "the plan id is required and has no spaces");
                }
            }
            Binding::Aws {
                customer_aws_account_id,
                license_arn,
            } => {
                if !(customer_aws_account_id.len() == 12
                    && customer_aws_account_id.chars().all(|c| c.is_ascii_digit()))
                {
                    errors.add(
                        at("customer_aws_account_id"),
                        "an AWS account id is 12 digits",
                    );
                }
                if !is_license_arn(license_arn) {
                    errors.add(at("license_arn"), "a license ARN looks like arn:aws:license-manager::123456789012:license:l-0123456789abcdef");
                }
            }
            Binding::AwsLegacy {
                customer_identifier,
                product_code,
            } => {
                if customer_identifier.is_empty() || customer_identifier.len() > 255 {
                    errors.add(at("customer_identifier"), "the customer identifier from ResolveCustomer is required (at most 255 characters)");
                }
                let code_ok = !product_code.is_empty()
                    && product_code.len() <= 255
                    && product_code
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-/=:_.@".contains(c));
                if !code_ok {
                    errors.add(
                        at("product_code"),
                        "a product code is letters, digits and -/=:_.@ (at most 255)",
                    );
                }
            }
            Binding::Tackle {
                cloud,
                product_id,
                customer_id,
            } => {
                // Tackle's body takes `cloud` as aws, gcp or azure only.
                if !matches!(
                    cloud,
                    Marketplace::Aws | Marketplace::Gcp | Marketplace::Azure
                ) {
                    errors.add(at("cloud"), "Tackle forwards to aws, gcp or azure only");
                }
                // Tackle publishes no shape for its ids (read 2026-12-01): required,
                // no whitespace, at most TACKLE_ID_MAX characters.
                for (name, value) in [("product_id", product_id), ("customer_id", customer_id)] {
                    if !(no_space(value) && value.chars().count() <= TACKLE_ID_MAX) {
                        errors.add(
                            at(name),
                            format!("Tackle's {name} is required, has no spaces and is at most {TACKLE_ID_MAX} characters"),
                        );
                    }
                }
            }
        }
    }
}

/// The shape botocore's model gives `LicenseArn`: `arn:aws…:service:region:account:resource`.
fn is_license_arn(value: &str) -> bool {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && !parts[2].is_empty()
        && !parts[5].is_empty()
        && value.len() <= 1300
        && !value.contains(char::is_whitespace)
}

/// The stable identity of one account × dimension × hour on its marketplace: a UUID
/// version 5, so a retry after any failure sends the same id (Google's operationId;
/// the ledger's key everywhere).
pub fn record_key(
    marketplace: Marketplace,
    account_id: &str,
    dimension: &str,
    hour: Timestamp,
) -> Uuid {
    // A fixed namespace of Purser's own, so keys never collide with another system's.
    const NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_2a57_93c4_4b8e_a1f0_5c2e_7d90_b3a4);
    let name = format!(
        "{}/{account_id}/{dimension}/{}",
        marketplace.as_str(),
        hour.as_second()
    );
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// What one account owes on a marketplace for one dimension and hour: the unit the
/// ledger tracks and the clients send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub key: Uuid,
    pub account_id: String,
    /// The offer's dimension key (`capacity_tib_hours`).
    pub dimension: String,
    /// What the marketplace calls it (its dimension or metric name).
    pub marketplace_dimension: String,
    /// The start of the hour.
    pub hour: Timestamp,
    pub quantity: Decimal,
    /// Whether the offer reports the dimension in whole units (Google's metric is then
    /// an INT64 one; otherwise DOUBLE).
    pub whole_units: bool,
    pub binding: Binding,
}

/// What a marketplace's answer means for one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordOutcome {
    /// Taken now.
    Accepted { marketplace_id: Option<String> },
    /// The marketplace already holds this record with the same quantity: proof that an
    /// earlier attempt (whose answer was lost) succeeded.
    AlreadyAccepted { marketplace_id: Option<String> },
    /// The marketplace holds this account, dimension and hour with another quantity.
    /// It will not take ours: an alert, never resent.
    Conflict {
        accepted_quantity: Option<Decimal>,
        message: String,
    },
    /// Not taken this time, may be taken later (throttled, unavailable, unprocessed,
    /// no answer): sent again with the same key. `may_have_applied` says the request
    /// reached the marketplace and its answer was lost (a timeout, a dropped
    /// connection, a 5xx): such a record is never billed again elsewhere, only resent
    /// under its own key, which the marketplace deduplicates.
    Retry {
        reason: String,
        #[serde(default)]
        may_have_applied: bool,
    },
    /// Refused for good (unknown customer, not subscribed, invalid dimension).
    Refused { code: String, message: String },
    /// Its window has closed.
    Expired { message: String },
    /// Tackle answered 409 Conflict: it already forwarded a record for this product,
    /// dimension, customer and hour to the cloud, and will not take another; it does
    /// not say with what quantity. What that means depends on whether an earlier
    /// attempt of ours may have reached Tackle ([`DeliveryState::after_given`]).
    AlreadyForwarded { message: String },
}

impl RecordOutcome {
    /// Whether the marketplace now holds the record as Purser sent it.
    pub fn is_accepted(&self) -> bool {
        matches!(
            self,
            RecordOutcome::Accepted { .. } | RecordOutcome::AlreadyAccepted { .. }
        )
    }
}

/// Where a ledger record stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet sent, or to be sent again.
    Due,
    /// Claimed by a submitter that may have sent it; taken over when its lease ends.
    Sending,
    Accepted,
    Refused,
    /// The marketplace holds another quantity for it.
    Conflict,
    /// Missed its window; its quantity is carried where the marketplace allows.
    Expired,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 6] = [
        DeliveryState::Due,
        DeliveryState::Sending,
        DeliveryState::Accepted,
        DeliveryState::Refused,
        DeliveryState::Conflict,
        DeliveryState::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Due => "due",
            DeliveryState::Sending => "sending",
            DeliveryState::Accepted => "accepted",
            DeliveryState::Refused => "refused",
            DeliveryState::Conflict => "conflict",
            DeliveryState::Expired => "expired",
        }
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| format!("`{value}` is not a delivery state"))
    }

    /// Whether nothing more will be sent for the record.
    pub fn is_final(self) -> bool {
        !matches!(self, DeliveryState::Due | DeliveryState::Sending)
    }

    /// The state an outcome leads to, for a record no earlier attempt of which may
    /// have reached the marketplace (see [`DeliveryState::after_given`]).
    pub fn after(outcome: &RecordOutcome) -> DeliveryState {
        DeliveryState::after_given(outcome, false)
    }

    /// The state an outcome leads to, given whether an earlier attempt of the record
    /// may have reached the marketplace (the ledger's `uncertain`).
    ///
    /// Only Tackle's 409 needs it. Tackle holds one record per product, dimension,
    /// customer and hour and forwards it; once forwarded, a PUT for that hour is
    /// answered 409 (developers.tackle.io "Create a metering record", read
    /// 2026-12-01). If an earlier PUT of ours may have reached Tackle, the record it
    /// forwarded is ours, sent under the same hour with the same quantity: accepted.
    /// If none can have (this is the first attempt that got anywhere), what Tackle
    /// forwarded is someone else's — almost surely the zero record Tackle sends itself
    /// for every hour it received nothing for (developers.tackle.io "Metering best
    /// practices", read 2026-12-01), because Purser was late: the hour is billed
    /// with another quantity, which is a conflict, final and alerted, never resent.
    pub fn after_given(outcome: &RecordOutcome, uncertain: bool) -> DeliveryState {
        match outcome {
            RecordOutcome::Accepted { .. } | RecordOutcome::AlreadyAccepted { .. } => {
                DeliveryState::Accepted
            }
            RecordOutcome::AlreadyForwarded { .. } if uncertain => DeliveryState::Accepted,
            RecordOutcome::AlreadyForwarded { .. } | RecordOutcome::Conflict { .. } => {
                DeliveryState::Conflict
            }
            RecordOutcome::Retry { .. } => DeliveryState::Due,
            RecordOutcome::Refused { .. } => DeliveryState::Refused,
            RecordOutcome::Expired { .. } => DeliveryState::Expired,
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long to wait before sending a record again: exponential from one second,
/// capped at five minutes, with full jitter (`jitter` in `[0, 1)`, drawn by the
/// caller) so that many submitters do not retry in step; never sooner than the
/// marketplace's `Retry-After`.
pub fn retry_delay(attempt: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
    let cap = Duration::from_secs(300);
    let base = Duration::from_secs(1)
        .saturating_mul(1u32 << attempt.min(16))
        .min(cap);
    // Full jitter: uniformly in [base/2, base), so a retry is never immediate.
    let jitter = jitter.clamp(0.0, 1.0);
    let delay = base.mul_f64(0.5 + jitter / 2.0);
    match retry_after {
        Some(after) => delay.max(after.min(cap)),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn record_keys_are_stable_and_distinct() {
        let hour = ts("2026-11-10T13:00:00Z");
        let a = record_key(Marketplace::Gcp, "acc-1", "capacity", hour);
        assert_eq!(a, record_key(Marketplace::Gcp, "acc-1", "capacity", hour));
        assert_eq!(a.get_version_num(), 5);
        for other in [
            record_key(Marketplace::Aws, "acc-1", "capacity", hour),
            record_key(Marketplace::Gcp, "acc-2", "capacity", hour),
            record_key(Marketplace::Gcp, "acc-1", "written", hour),
            record_key(
                Marketplace::Gcp,
                "acc-1",
                "capacity",
                ts("2026-11-10T14:00:00Z"),
            ),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn retries_back_off_with_jitter_and_honour_retry_after() {
        assert!(retry_delay(0, 0.0, None) >= Duration::from_millis(500));
        assert!(retry_delay(0, 0.999, None) < Duration::from_secs(1));
        assert!(retry_delay(3, 0.0, None) >= Duration::from_secs(4));
        assert!(retry_delay(30, 0.999, None) <= Duration::from_secs(300));
        assert_eq!(
            retry_delay(0, 0.0, Some(Duration::from_secs(20))),
            Duration::from_secs(20)
        );
    }

    #[test]
    fn bindings_are_checked_against_the_published_shapes() {
        let check = |b: Binding| {
            let mut errors = ValidationErrors::default();
            b.validate("marketplace_binding", &mut errors);
            errors
                .errors
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert!(
            check(Binding::Aws {
                customer_aws_account_id: "123456789012".into(),
                license_arn: "arn:aws:license-manager::123456789012:license:l-0abc".into(),
            })
            .is_empty()
        );
        assert_eq!(
            check(Binding::Aws {
                customer_aws_account_id: "1234".into(),
                license_arn: "not an arn".into(),
            }),
            vec![
                "marketplace_binding.customer_aws_account_id".to_owned(),
                "marketplace_binding.license_arn".to_owned()
            ]
        );
        assert_eq!(
            check(Binding::Azure {
                resource_id: "nope".into(),
                plan_id: "gold".into()
            }),
            vec!["marketplace_binding.resource_id".to_owned()]
        );
        assert_eq!(
            check(Binding::Gcp {
                service_name: "svc".into(),
                usage_reporting_id: "".into()
            })
            .len(),
            2
        );
        assert_eq!(
            Binding::AwsLegacy {
                customer_identifier: "c".into(),
                product_code: "p".into()
            }
            .marketplace(),
            Marketplace::Aws
        );
    }

    #[test]
    fn tackle_bindings_bill_the_cloud_they_forward_to_and_are_checked() {
        let check = |b: &Binding| {
            let mut errors = ValidationErrors::default();
            b.validate("marketplace_binding", &mut errors);
            errors
                .errors
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        let good = Binding::Tackle {
            cloud: Marketplace::Azure,
            product_id: "prod-7d1a".into(),
            customer_id: "cust-91".into(),
        };
        assert!(check(&good).is_empty());
        assert_eq!(good.marketplace(), Marketplace::Azure);
        assert_eq!(good.route(), Route::Tackle);
        assert_eq!(good.billed_party(), "Tackle customer cust-91");
        assert_eq!(
            Binding::Gcp {
                service_name: "a.b".into(),
                usage_reporting_id: "c".into()
            }
            .route(),
            Route::Direct
        );
        // The same account × dimension × hour has the same key on either route.
        let hour = ts("2026-11-10T13:00:00Z");
        assert_eq!(
            record_key(good.marketplace(), "acc-1", "capacity", hour),
            record_key(Marketplace::Azure, "acc-1", "capacity", hour)
        );
        assert_eq!(
            check(&Binding::Tackle {
                cloud: Marketplace::Direct,
                product_id: "has space".into(),
                customer_id: "x".repeat(256),
            }),
            vec![
                "marketplace_binding.cloud".to_owned(),
                "marketplace_binding.product_id".to_owned(),
                "marketplace_binding.customer_id".to_owned(),
            ]
        );
        // The serde tag is `tackle`, with the cloud in lower case.
        let json = serde_json::to_value(&good).expect("json");
        assert_eq!(json["kind"], "tackle");
        assert_eq!(json["cloud"], "azure");
        assert_eq!(
            serde_json::from_value::<Binding>(json).expect("binding"),
            good
        );
        for r in Route::ALL {
            assert_eq!(Route::parse(r.as_str()), Ok(r));
        }
        assert!(Route::parse("post").is_err());
    }

    #[test]
    fn a_409_from_tackle_is_ours_only_if_an_earlier_attempt_may_have_reached_it() {
        let forwarded = RecordOutcome::AlreadyForwarded {
            message: "already sent".into(),
        };
        assert_eq!(
            DeliveryState::after_given(&forwarded, true),
            DeliveryState::Accepted
        );
        assert_eq!(
            DeliveryState::after_given(&forwarded, false),
            DeliveryState::Conflict
        );
        assert_eq!(DeliveryState::after(&forwarded), DeliveryState::Conflict);
        // Other outcomes do not depend on it.
        let refused = RecordOutcome::Refused {
            code: "400".into(),
            message: "bad".into(),
        };
        assert_eq!(
            DeliveryState::after_given(&refused, true),
            DeliveryState::Refused
        );
        assert!(!forwarded.is_accepted());
    }

    #[test]
    fn outcomes_lead_to_states() {
        assert_eq!(
            DeliveryState::after(&RecordOutcome::AlreadyAccepted {
                marketplace_id: None
            }),
            DeliveryState::Accepted
        );
        assert_eq!(
            DeliveryState::after(&RecordOutcome::Retry {
                reason: "429".into(),
                may_have_applied: false,
            }),
            DeliveryState::Due
        );
        assert!(!DeliveryState::Sending.is_final());
        assert!(DeliveryState::Conflict.is_final());
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(s.as_str()), Ok(s));
        }
    }
}

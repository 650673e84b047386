//! The demo's marketplaces: the fakes, started in process, which the demo's history is
//! reported to hour by hour on a simulated clock and which the running demo goes on
//! reporting to in real time.
//!
//! History is played the way production runs it: each hour closes 16 minutes after its
//! end (the default grace is 15), then the submission job runs, against fakes that
//! enforce each marketplace's windows on the same clock. Google's two-hour window is why
//! the hours are played one by one rather than a day at a time.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use purser_core::Marketplace;
use purser_core::marketplace::Binding;
use purser_fakes::{FakeClock, FakeConfig, FakeMarketplaces};
use purser_store::metering::{MeteringSettings, hour_start};
use purser_store::{Store, StoreError};

use crate::AppError;
use crate::marketplace::{MarketplacesConfig, Submitter, config_for_fakes, register_with_fakes};

/// The Service Control service the demo's Google offers report to.
pub const GCP_SERVICE: &str = "purser-storage.endpoints.vendor-demo.cloud.goog";
/// The service of the demo's public SaaS offer on Google (a product of its own).
pub const GCP_SAAS_SERVICE: &str = "purser-saas.endpoints.vendor-demo.cloud.goog";

/// The fake marketplaces the demo reports to, on a clock the history sets and the
/// running demo hands back to real time.
pub struct DemoMarketplaces {
    fakes: FakeMarketplaces,
    fake: FakeConfig,
    clock: FakeClock,
}

impl DemoMarketplaces {
    pub async fn start() -> Result<DemoMarketplaces, AppError> {
        let clock = FakeClock::real();
        let fake = FakeConfig {
            clock: clock.clone(),
            ..FakeConfig::default()
        };
        let fakes = FakeMarketplaces::start(fake.clone())
            .await
            .map_err(|e| AppError::Failed(format!("the demo's fake marketplaces: {e}")))?;
        Ok(DemoMarketplaces { fakes, fake, clock })
    }

    /// The configuration that points Purser's clients at these fakes.
    pub fn config(&self) -> MarketplacesConfig {
        config_for_fakes(&self.fakes, &self.fake)
    }

    pub fn fakes(&self) -> &FakeMarketplaces {
        &self.fakes
    }

    /// Registers every bound entitlement of `store` with the fakes, so that what
    /// Purser owes can be taken; returns them.
    pub async fn register(
        &self,
        store: &Store,
    ) -> Result<Vec<purser_store::marketplace::BoundEntitlement>, StoreError> {
        let bound = store.bound_entitlements().await?;
        register_with_fakes(&self.fakes, &bound);
        Ok(bound)
    }

    /// Hands the fakes' clock back to real time, for the running demo.
    pub fn run_in_real_time(&self) {
        self.clock.resume_real();
    }

    pub async fn shutdown(self) {
        self.fakes.shutdown().await;
    }

    /// A player of history from `first_hour` on.
    pub(crate) fn player(&self, first_hour: Timestamp) -> Result<Player<'_>, AppError> {
        let now = Arc::new(Mutex::new(first_hour));
        let read = {
            let now = now.clone();
            Arc::new(move || now.lock().map(|t| *t).unwrap_or_else(|p| *p.into_inner()))
                as purser_marketplace::Clock
        };
        let submitter =
            Submitter::from_config_at(&self.config(), "demo-history".into(), Some(read))?;
        Ok(Player {
            marketplaces: self,
            submitter,
            now,
            next_hour: first_hour,
        })
    }
}

/// Whom each demo account's marketplace bills, in that marketplace's identifiers, made
/// up from the account's place in the demo and its buyer id.
/// The demo account whose usage is reported through Tackle.
pub const TACKLE_ROUTED: &str = "Zephyr Airlines";

/// The SaaS offer is a product of its own on Google, so a service of its own.
pub(crate) fn demo_binding(
    account: &purser_core::Account,
    index: usize,
    saas: bool,
) -> Option<Binding> {
    let buyer = account.fields.marketplace_account_id.clone()?;
    // One seller's listing routes through Tackle: its usage goes to Tackle's metering
    // API, which forwards it to AWS.
    if account.fields.name == TACKLE_ROUTED {
        return Some(Binding::Tackle {
            cloud: account.fields.marketplace,
            product_id: "prod-purser-storage".into(),
            customer_id: format!("tkl-{buyer}"),
        });
    }
    match account.fields.marketplace {
        Marketplace::Gcp => Some(Binding::Gcp {
            service_name: if saas { GCP_SAAS_SERVICE } else { GCP_SERVICE }.into(),
            usage_reporting_id: format!("project_number:{:012}", 480_000_000_000 + index),
        }),
        Marketplace::Azure => Some(Binding::Azure {
            resource_id: buyer,
            plan_id: "capacity-seats".into(),
        }),
        Marketplace::Aws => Some(Binding::Aws {
            license_arn: format!(
                "arn:aws:license-manager::{buyer}:license:l-{:016x}",
                0x5eed_0000_u64 + index as u64
            ),
            customer_aws_account_id: buyer,
        }),
        Marketplace::Direct => None,
    }
}

/// Whom the marketplace bills for one of the demo's subscriptions: Google's
/// entitlement reports under a usage reporting id of its own, Azure's SaaS
/// subscription is its id, AWS's agreement is the license (whose account it names).
pub(crate) fn subscription_binding(
    marketplace: Marketplace,
    external_id: &str,
    plan: &str,
) -> Option<Binding> {
    match marketplace {
        Marketplace::Gcp => Some(Binding::Gcp {
            service_name: GCP_SERVICE.into(),
            usage_reporting_id: format!("project:{external_id}"),
        }),
        Marketplace::Azure => Some(Binding::Azure {
            resource_id: external_id.into(),
            plan_id: plan.into(),
        }),
        Marketplace::Aws => {
            let account = external_id.split(':').nth(4)?;
            Some(Binding::Aws {
                customer_aws_account_id: account.into(),
                license_arn: external_id.into(),
            })
        }
        Marketplace::Direct => None,
    }
}

/// Plays closed hours and submissions on the simulated clock.
pub(crate) struct Player<'a> {
    marketplaces: &'a DemoMarketplaces,
    submitter: Submitter,
    now: Arc<Mutex<Timestamp>>,
    /// The next hour to close and report.
    next_hour: Timestamp,
}

impl Player<'_> {
    fn set_now(&self, at: Timestamp) {
        if let Ok(mut now) = self.now.lock() {
            *now = at;
        }
        self.marketplaces.clock.set(at);
    }

    /// Closes and reports every hour that is due by `until`, one at a time, each at
    /// its own time.
    pub(crate) async fn play_until(
        &mut self,
        store: &Store,
        until: Timestamp,
    ) -> Result<(), AppError> {
        let settings = MeteringSettings::default();
        let after_end = SignedDuration::from_hours(1) + SignedDuration::from_mins(16);
        while self.next_hour + after_end <= until {
            let hour = self.next_hour;
            let mut at = hour + after_end;
            self.set_now(at);
            store.close_due_hours(at, &settings, 24).await?;
            // A run sends everything due; a second only when a record waits for a
            // retry (a fake's throttling), a few minutes later.
            for _ in 0..3 {
                let report = self.submitter.run(store).await?;
                if report.retrying == 0 {
                    break;
                }
                at += SignedDuration::from_mins(3);
                self.set_now(at);
            }
            self.next_hour = hour + SignedDuration::from_hours(1);
        }
        Ok(())
    }
}

/// The first hour of a history that ends at `now` and lasts `days`.
pub(crate) fn first_hour(now: Timestamp, days: i64) -> Result<Timestamp, StoreError> {
    Ok(hour_start(now)? - SignedDuration::from_hours(24 * days - 1))
}

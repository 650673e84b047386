//! What every handler shares.

use std::sync::Arc;

use jiff::SignedDuration;
use purser_store::Store;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<HttpSettings>,
    pub metrics: Arc<Metrics>,
    pub sign_in_throttle: Arc<crate::auth::SignInThrottle>,
    /// Reads what the marketplaces push (webhooks, landing tokens); none when no
    /// marketplace's subscriptions are configured.
    pub intake: Option<Arc<dyn crate::intake::NotificationIntake>>,
}

/// The HTTP surface's settings, from Purser's configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Larger bodies are refused with 413 before they are read.
    pub max_body_bytes: usize,
    /// How long a page session lasts.
    pub session_ttl: SignedDuration,
    /// Mark cookies `Secure` (behind TLS).
    pub cookie_secure: bool,
    /// The longest lifetime a new API token may have.
    pub token_max_days: i64,
    /// Grace and age limits of usage events.
    pub metering: purser_store::metering::MeteringSettings,
    /// The marketplaces' fee rates on the ERP export.
    pub erp_fees: purser_core::invoice::FeeRates,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            session_ttl: SignedDuration::from_hours(12),
            cookie_secure: false,
            token_max_days: 365,
            metering: purser_store::metering::MeteringSettings::default(),
            erp_fees: purser_core::invoice::FeeRates::default(),
        }
    }
}

impl AppState {
    pub fn new(store: Store, settings: HttpSettings) -> Self {
        Self {
            store,
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::new()),
            sign_in_throttle: Arc::default(),
            intake: None,
        }
    }

    pub fn with_intake(mut self, intake: Arc<dyn crate::intake::NotificationIntake>) -> Self {
        self.intake = Some(intake);
        self
    }
}

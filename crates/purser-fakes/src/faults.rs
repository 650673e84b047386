//! Fault injection shared by the three fakes.
//!
//! Decisions come from a seeded generator drawn exactly twice per metering request (which
//! fault, which item for a partial failure), so a given seed and request order always give
//! the same faults. Faults never change what is applied except as each variant says, so a
//! test can still prove exactly-once delivery from the fakes' records.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Probabilities (0.0..=1.0, summed over the variants at most 1) of each fault per metering
/// request. These are chances, not quantities, so floating point is fine here.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    pub seed: u64,
    /// Answer as throttled (AWS 400 ThrottlingException, Azure and Google 429); nothing applied.
    pub throttle: f64,
    /// Answer as unavailable (AWS 500 InternalServiceError, Azure and Google 503); nothing applied.
    pub unavailable: f64,
    /// Apply the request, then hold the answer for `hang` and drop the connection without
    /// answering: the client cannot know it was applied.
    pub timeout_after_apply: f64,
    /// Drop the connection before applying anything.
    pub drop_before_apply: f64,
    /// Fail one item of the batch (AWS UnprocessedRecords, Azure status `Error`, Google a
    /// reportError UNAVAILABLE); that item is not applied, the rest are.
    pub partial_batch: f64,
    /// How long a "timeout after applying" holds the answer before dropping the connection.
    pub hang: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            throttle: 0.0,
            unavailable: 0.0,
            timeout_after_apply: 0.0,
            drop_before_apply: 0.0,
            partial_batch: 0.0,
            hang: Duration::from_secs(30),
        }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Throttle,
    Unavailable,
    TimeoutAfterApply,
    DropBeforeApply,
    /// Fail the item at this index modulo the batch's length.
    Partial(usize),
}

#[derive(Debug)]
struct Injector {
    config: FaultConfig,
    rng: StdRng,
}

/// Shared by a fake's handlers; `set` replaces the configuration (and reseeds) at run time,
/// so a test can turn faults on for one phase only.
#[derive(Debug, Clone)]
pub(crate) struct FaultInjector {
    stream: u64,
    inner: Arc<Mutex<Injector>>,
}

fn rng_for(seed: u64, stream: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

impl FaultInjector {
    /// `stream` separates the marketplaces so each one's faults depend only on its own
    /// request order.
    pub(crate) fn new(config: FaultConfig, stream: u64) -> Self {
        let rng = rng_for(config.seed, stream);
        Self {
            stream,
            inner: Arc::new(Mutex::new(Injector { config, rng })),
        }
    }

    pub(crate) fn set(&self, config: FaultConfig) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.rng = rng_for(config.seed, self.stream);
        inner.config = config;
    }

    pub(crate) fn hang(&self) -> Duration {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .config
            .hang
    }

    pub(crate) fn draw(&self) -> Fault {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let pick = inner.rng.random::<f64>();
        let index = inner.rng.random::<u32>() as usize;
        let c = &inner.config;
        let mut edge = 0.0;
        for (p, fault) in [
            (c.throttle, Fault::Throttle),
            (c.unavailable, Fault::Unavailable),
            (c.timeout_after_apply, Fault::TimeoutAfterApply),
            (c.drop_before_apply, Fault::DropBeforeApply),
            (c.partial_batch, Fault::Partial(index)),
        ] {
            edge += p;
            if pick < edge {
                return fault;
            }
        }
        Fault::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_faults() {
        let config = FaultConfig {
            seed: 7,
            throttle: 0.2,
            unavailable: 0.2,
            partial_batch: 0.2,
            ..FaultConfig::default()
        };
        let a = FaultInjector::new(config.clone(), 1);
        let b = FaultInjector::new(config, 1);
        let xs: Vec<Fault> = (0..50).map(|_| a.draw()).collect();
        let ys: Vec<Fault> = (0..50).map(|_| b.draw()).collect();
        assert_eq!(xs, ys);
        assert!(xs.contains(&Fault::Throttle));
        assert!(xs.contains(&Fault::None));
    }

    #[test]
    fn no_probabilities_no_faults() {
        let injector = FaultInjector::new(FaultConfig::default(), 3);
        assert!((0..100).all(|_| injector.draw() == Fault::None));
    }
}

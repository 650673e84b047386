//! The fakes' notion of "now": real time by default, settable and advanceable by tests so
//! the marketplaces' late windows (24 hours, month-end grace, one hour) can be exercised
//! without waiting.

use std::sync::{Arc, Mutex, PoisonError};

use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Default)]
struct ClockState {
    /// When set, time stands still at this instant (advanced only by `advance`).
    fixed: Option<Timestamp>,
    /// Added to the real clock when not fixed.
    offset: SignedDuration,
}

/// A shared clock; clones see the same time. All three fakes and their token issuers read it.
#[derive(Debug, Clone, Default)]
pub struct FakeClock {
    state: Arc<Mutex<ClockState>>,
}

impl FakeClock {
    /// The real clock.
    pub fn real() -> Self {
        Self::default()
    }

    /// A clock stopped at `at`.
    pub fn fixed(at: Timestamp) -> Self {
        let clock = Self::default();
        clock.set(at);
        clock
    }

    pub fn now(&self) -> Timestamp {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.fixed {
            Some(at) => at,
            // Saturating: an offset so large it leaves jiff's range is a test bug, and the
            // real clock is the least surprising answer.
            None => Timestamp::now()
                .checked_add(state.offset)
                .unwrap_or_else(|_| Timestamp::now()),
        }
    }

    /// Stops time at `at`.
    pub fn set(&self, at: Timestamp) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.fixed = Some(at);
    }

    /// Moves time forward (or back, with a negative duration), whether stopped or running.
    pub fn advance(&self, by: SignedDuration) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.fixed {
            Some(at) => state.fixed = Some(at.checked_add(by).unwrap_or(at)),
            None => state.offset = state.offset.saturating_add(by),
        }
    }

    /// Lets time run again from the real clock (dropping any offset).
    pub fn resume_real(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = ClockState::default();
    }
}

/// The start of the UTC hour holding `at`.
pub(crate) fn hour_of(at: Timestamp) -> Timestamp {
    let secs = at.as_second().div_euclid(3600) * 3600;
    Timestamp::from_second(secs).unwrap_or(at)
}

/// The start of the UTC calendar month holding `at`.
pub(crate) fn month_start(at: Timestamp) -> Timestamp {
    let dt = at.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    jiff::civil::date(dt.year(), dt.month(), 1)
        .at(0, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_stands_still_and_advances() {
        let at: Timestamp = "2026-11-30T10:00:00Z".parse().unwrap();
        let clock = FakeClock::fixed(at);
        assert_eq!(clock.now(), at);
        clock.advance(SignedDuration::from_hours(2));
        assert_eq!(
            clock.now(),
            "2026-11-30T12:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn hours_and_months() {
        let at: Timestamp = "2026-11-30T10:59:59.9Z".parse().unwrap();
        assert_eq!(
            hour_of(at),
            "2026-11-30T10:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            month_start(at),
            "2026-11-01T00:00:00Z".parse::<Timestamp>().unwrap()
        );
    }
}

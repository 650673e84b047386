//! Time windows: the billing hour and the slots of periodic jobs.
//!
//! Instants are `jiff::Timestamp` (UTC). Windows are computed on the UTC timeline, so
//! daylight-saving changes in any zone never stretch or shrink a billing hour: a day
//! in New York may have 23 or 25 of them, each exactly 3,600 seconds.

use jiff::{SignedDuration, Timestamp};

/// A half-open window `[start, start + length)` aligned to a multiple of its length
/// since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: Timestamp,
    pub length_seconds: i64,
}

impl Window {
    /// The window of `length_seconds` containing `at`.
    ///
    /// # Panics
    /// Never for a positive length; a non-positive length is treated as one second.
    pub fn containing(at: Timestamp, length_seconds: i64) -> Window {
        let length_seconds = length_seconds.max(1);
        let start_second = at.as_second().div_euclid(length_seconds) * length_seconds;
        Window {
            // In range: flooring moves toward the epoch by less than one length.
            start: Timestamp::from_second(start_second).unwrap_or(at),
            length_seconds,
        }
    }

    /// The billing hour containing `at`.
    pub fn hour(at: Timestamp) -> Window {
        Window::containing(at, 3_600)
    }

    pub fn end(&self) -> Timestamp {
        self.start
            .checked_add(SignedDuration::from_secs(self.length_seconds))
            .unwrap_or(Timestamp::MAX)
    }

    pub fn contains(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end()
    }

    pub fn next(&self) -> Window {
        Window {
            start: self.end(),
            length_seconds: self.length_seconds,
        }
    }

    /// When a window may be closed: its end plus a grace for late data.
    pub fn closes_at(&self, grace: SignedDuration) -> Timestamp {
        self.end().checked_add(grace).unwrap_or(Timestamp::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn hours_are_aligned_half_open_windows() {
        let hour = Window::hour(ts("2026-03-08T06:59:59.999Z"));
        assert_eq!(hour.start, ts("2026-03-08T06:00:00Z"));
        assert_eq!(hour.end(), ts("2026-03-08T07:00:00Z"));
        assert!(hour.contains(ts("2026-03-08T06:00:00Z")));
        assert!(!hour.contains(ts("2026-03-08T07:00:00Z")));
        assert_eq!(hour.next().start, ts("2026-03-08T07:00:00Z"));
    }

    #[test]
    fn a_dst_change_does_not_change_the_length_of_hours() {
        // 2026-03-08 02:00 America/New_York springs forward: the local day has 23 hours.
        let start = ts("2026-03-08T05:00:00Z");
        let end = ts("2026-03-09T04:00:00Z");
        let mut hour = Window::hour(start);
        let mut n_hours = 0;
        while hour.start < end {
            n_hours += 1;
            hour = hour.next();
        }
        assert_eq!(n_hours, 23);
        let local_start = start.in_tz("America/New_York").expect("tz");
        let local_end = end.in_tz("America/New_York").expect("tz");
        assert_eq!(
            local_start.date(),
            local_end.date().yesterday().expect("date")
        );
    }

    #[test]
    fn windows_before_the_epoch_floor_downwards() {
        let window = Window::containing(ts("1969-12-31T23:59:30Z"), 60);
        assert_eq!(window.start, ts("1969-12-31T23:59:00Z"));
    }

    #[test]
    fn grace_extends_the_close() {
        let hour = Window::hour(ts("2026-01-01T10:20:00Z"));
        assert_eq!(
            hour.closes_at(SignedDuration::from_mins(15)),
            ts("2026-01-01T11:15:00Z")
        );
    }
}
